"""Axial levels: the order check, level- and slice-below-conditioned priors, stacks as NIfTI, and
the level measures (brainvq.data.levels, brainvq.priors.base, brainvq.evaluation.levels)."""

from __future__ import annotations

import gzip
import math
import shutil
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from brainvq.data import discover
from brainvq.data.levels import check_level_order, level_band, levels_per_subject, slice_below
from brainvq.data.volumes import volume_slices, write_volume
from brainvq.errors import DataError, RunError
from brainvq.evaluation.levels import (
    adjacent_ssim,
    band_accuracy,
    band_scores,
    fit_level_classifier,
    real_stacks,
    spearman,
    stack_spearman,
)
from brainvq.nn.maskgit import MaskedCodeTransformer
from brainvq.nn.transformer import CodeTransformer, LevelEmbedding
from brainvq.priors import build_prior, categorical_picker, load_prior, load_prior_file
from brainvq.runs import load_run
from brainvq.sampling import sagittal, sample_run
from brainvq.training.prior import train_prior

from ..conftest import brainvq, tiny_config
from .test_maskgit import plain_generate
from .test_priors import K, ar_prior

LEVELS = 8  # levels per fake brain


def levelled_slice(rng: np.random.Generator, z: int, n: int, size: int, wobble: float):
    """A fake axial slice at level z of n: the head outline grows then shrinks with z and an
    inner structure moves down the image, so neighbouring levels look alike."""
    t = z / max(1, n - 1)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    a = 0.42 - 0.2 * t + wobble
    outer = (xx / a) ** 2 + (yy / (a * 1.1)) ** 2 < 1
    inner = (xx / 0.12) ** 2 + ((yy + 0.25 - 0.5 * t) / 0.1) ** 2 < 1
    img = outer * 180.0 - inner * 120 + rng.normal(0, 2, (size, size)) * outer
    return np.clip(img, 0, 255).astype(np.uint8)


def write_brains(folder, subjects, size=32, levels=LEVELS, shuffle=False, seed=0):
    """Each subject's `levels` slices as case_S_slice_Z PNGs (Z shuffled with ``shuffle``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for s in subjects:
        names = rng.permutation(levels) if shuffle else np.arange(levels)
        wobble = rng.uniform(-0.03, 0.03)
        for z in range(levels):
            img = levelled_slice(rng, z, levels, size, wobble)
            Image.fromarray(img).save(folder / f"case_{s:03d}_slice_{names[z]}.nii.png")


@pytest.fixture(scope="module")
def brains(tmp_path_factory):
    """A keras layout of levelled fake brains (6 train, 1 validate, 2 test; 8 levels each)."""
    root = tmp_path_factory.mktemp("brains") / "keras"
    write_brains(root / "keras_png_slices_train", range(1, 7), seed=1)
    write_brains(root / "keras_png_slices_validate", [11], seed=2)
    write_brains(root / "keras_png_slices_test", [21, 22], seed=3)
    return root


@pytest.fixture(scope="module")
def levelled_run(brains, tmp_path_factory):
    """A tiny VQ-VAE run on the levelled brains, with a maskgit prior conditioned on the level
    and the slice below (trained for 100 steps: long enough to learn what each level looks like,
    about 15 s on 2 cores)."""
    from brainvq.training.vqvae import train_vqvae

    base = tmp_path_factory.mktemp("levelled")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINVQ_CACHE", str(base / "cache"))
        train_vqvae(str(brains), str(base / "run"), tiny_config(max_epochs=6), progress=False)
        cfg = ar_prior("maskgit", max_steps=100, max_epochs=1000)
        result = train_prior(str(base / "run"), cfg, progress=False)
    return base / "run", result


def test_slice_below_follows_each_subjects_levels():
    subjects = np.array(["a", "b", "a", "a", "", "b"], dtype=object)
    levels = np.array([3, 0, 1, 7, 2, 5])
    assert slice_below(subjects, levels).tolist() == [2, -1, -1, 0, -1, 1]
    assert levels_per_subject(subjects, levels) == 2  # a: 3 levels, b: 2 -> median 2
    assert levels_per_subject(subjects, np.full(6, -1)) == 0
    assert level_band(np.array([0.0, 0.24, 0.25, 0.99, 1.0, np.nan]), 4).tolist() == [
        0, 0, 1, 3, 3, -1,
    ]  # fmt: skip


def test_order_check_passes_anatomical_levels_and_fails_shuffled_ones(tmp_path):
    write_brains(tmp_path / "ordered", range(4))
    write_brains(tmp_path / "shuffled", range(4), shuffle=True)
    write_brains(tmp_path / "single", range(4), levels=1)
    for name, ok in [("ordered", True), ("shuffled", False), ("single", False)]:
        s = discover(tmp_path / name)
        files = s.files["train"] + s.files["validate"] + s.files["test"]
        images = np.stack([np.asarray(Image.open(f)) for f in files])
        subjects = np.concatenate([s.subjects[k] for k in ("train", "validate", "test")])
        levels = np.concatenate([s.levels[k] for k in ("train", "validate", "test")])
        check = check_level_order(images, subjects, levels)
        assert check["ok"] is ok, (name, check)
        if name == "ordered":
            assert check["neighbour_share"] > 0.9 and check["pairs"] > 10
        if name == "single":
            assert check["pairs"] == 0 and "4 or more levels" in check["reason"]


def test_level_embedding_interpolates_and_knows_unknown():
    torch.manual_seed(0)
    emb = LevelEmbedding(8, bins=5)
    w = emb.table.weight
    out = emb(torch.tensor([0.0, 1.0, 0.125, math.nan]))
    torch.testing.assert_close(out[0], w[0])
    torch.testing.assert_close(out[1], w[4])
    torch.testing.assert_close(out[2], (w[0] + w[1]) / 2)  # 0.125 is halfway to bin 1 of 0..4
    torch.testing.assert_close(out[3], w[5])


@pytest.mark.parametrize("net_kind", ["transformer", "maskgit"])
def test_conditions_change_the_logits_and_keep_the_transformer_causal(net_kind):
    torch.manual_seed(0)
    if net_kind == "maskgit":
        net = MaskedCodeTransformer(K, 36, dim=16, layers=1, heads=2, levels=True, below=True)
    else:
        net = CodeTransformer(K, 36, dim=16, layers=1, heads=2, levels=True, below=True)
    net.eval()
    codes = torch.randint(0, K, (2, 6, 6))
    below = torch.randint(0, K, (2, 6, 6))
    lv = torch.tensor([0.2, 0.9])
    base = net(codes, lv, below)
    assert not torch.allclose(base, net(codes, lv.flip(0), below))
    assert not torch.allclose(base, net(codes, lv, below.flip(0)))
    unknown = net(codes)  # no condition given: level unknown, no slice below
    assert torch.equal(unknown, net(codes, torch.full((2,), math.nan), torch.full_like(codes, K)))
    if net_kind == "transformer":  # the map below never lets a code see later codes
        changed = codes.clone().flatten(1)
        changed[:, 20] = (changed[:, 20] + 1) % K
        out = net(changed.view(2, 6, 6), lv, below).flatten(2)
        assert torch.equal(out[:, :, :21], base.flatten(2)[:, :, :21])
        runs = []
        for cache in (True, False):
            pick = categorical_picker(1.0, 0, torch.Generator().manual_seed(3))
            runs.append(net.generate(2, (6, 6), pick, cache, levels=lv, below=below))
        assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="without that condition"):
        CodeTransformer(K, 36, dim=16, layers=1, heads=2)(codes, lv)


@pytest.mark.parametrize("kind", ["maskgit", "transformer"])
def test_a_conditioned_prior_file_keeps_its_conditions(tmp_path, kind):
    cfg = ar_prior(kind)
    torch.manual_seed(0)
    prior = build_prior(cfg.prior, torch.randn(K, 4), 6, ("level", "below"))
    prior.level_info = {"quantiles": np.linspace(0, 1, 101).tolist(), "per_subject": 5}
    prior.save(tmp_path / "p.safetensors", cfg)
    loaded = load_prior_file(tmp_path / "p.safetensors")
    assert loaded.conditions == ("level", "below") and loaded.stacks
    assert loaded.level_info["per_subject"] == 5
    a = loaded.sample(3, seed=1, levels=0.25)
    assert torch.equal(a, prior.sample(3, seed=1, levels=0.25))
    assert not torch.equal(a, prior.sample(3, seed=1, levels=0.95))
    lv = loaded.draw_levels(400, seed=2)
    assert 0 <= float(lv.min()) and float(lv.max()) <= 1 and abs(float(lv.mean()) - 0.5) < 0.05
    assert torch.equal(lv, loaded.draw_levels(400, seed=2))
    stacks, levels = loaded.sample_stack(2, 3, seed=0)
    assert stacks.shape == (2, 3, 6, 6) and levels.tolist() == [0.0, 0.5, 1.0]  # of 5 drawn
    with pytest.raises(RunError, match="must be in"):
        loaded.sample(2, levels=1.5)
    # an unconditioned prior (as every file written before levels): no level, no stacks
    plain = build_prior(cfg.prior, torch.randn(K, 4), 6)
    plain.save(tmp_path / "plain.safetensors", cfg)
    plain = load_prior_file(tmp_path / "plain.safetensors")
    assert plain.conditions == () and torch.isnan(plain.draw_levels(2)).all()
    with pytest.raises(RunError, match="trained without levels"):
        plain.sample(2, levels=0.5)
    with pytest.raises(RunError, match="cannot draw stacks"):
        plain.sample_stack(1, 4)
    with pytest.raises(RunError, match="cannot be conditioned"):
        build_prior(ar_prior("pixelcnn").prior, torch.randn(K, 4), 6, ("level",))


def test_a_stack_slice_is_drawn_given_part_of_the_map_below(tmp_path):
    """Each slice of a stack is drawn given the map just drawn below it with ``hide_below`` of
    its codes replaced by "no slice below" (K); the lowest is drawn with none."""
    torch.manual_seed(0)
    prior = build_prior(ar_prior("maskgit").prior, torch.randn(K, 4), 6, ("level", "below"))
    prior.level_info = {"quantiles": np.linspace(0, 1, 101).tolist(), "per_subject": 4}
    given, real_draw = [], prior._draw

    def spy(n, pick, gen, progress, **cond):
        given.append(None if cond["below"] is None else cond["below"].clone())
        out = real_draw(n, pick, gen, progress, **cond)
        given.append(out.clone())
        return out

    prior._draw = spy
    for hide, low, high in ((0.0, 0.0, 0.0), (0.5, 0.35, 0.65), (1.0, 1.0, 1.0)):
        given.clear()
        codes, _ = prior.sample_stack(3, 4, seed=0, hide_below=hide)
        assert given[0] is None and len(given) == 8
        for below, drawn_below in zip(given[2::2], given[1:-1:2], strict=True):
            hidden = below == K
            assert low <= float(hidden.float().mean()) <= high, hide
            assert torch.equal(below[~hidden], drawn_below[~hidden])  # the rest: the map below
    a, _ = prior.sample_stack(3, 4, seed=0, hide_below=0.5)
    assert torch.equal(a, prior.sample_stack(3, 4, seed=0, hide_below=0.5)[0])
    with pytest.raises(ValueError, match="hide_below"):
        prior.sample_stack(1, 4, hide_below=1.5)


def test_write_volume_is_what_volume_slices_reads(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.uniform(0, 1, (5, 12, 12)).astype(np.float32)
    stack[:, :3, :] = 0  # anterior (top rows) dark: orientation shows
    path = write_volume(tmp_path / "v.nii.gz", stack)
    img = nib.load(str(path))
    assert img.shape == (12, 12, 5) and img.get_data_dtype() == np.uint8
    assert tuple(float(z) for z in img.header.get_zooms()) == (1.0, 1.0, 1.0)
    assert "assumption" in img.header["descrip"].item().decode()
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert int(img.header["sform_code"]) == 2 and int(img.header["qform_code"]) == 2
    back = volume_slices(path, 0.0, 1.0, 12)  # brainvq reads it back slice for slice
    u8 = np.rint(stack * 255)
    for k in range(5):
        assert np.corrcoef(back[k].ravel(), u8[k].ravel())[0, 1] > 0.99
    assert (back[:, :3, :] == 0).all()
    assert gzip.decompress(path.read_bytes())[:4] == (348).to_bytes(4, "little")
    stack3 = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert sagittal(stack3, stretch=2).tolist() == [[14, 18, 22]] * 2 + [[2, 6, 10]] * 2


def test_training_on_levelled_data_conditions_the_prior(levelled_run, brains):
    run_path, result = levelled_run
    assert result["conditions"] == ["level", "below"] and "levels checked" in result["levels"]
    prior = load_prior(load_run(run_path), "maskgit")
    assert prior.stacks and prior.level_info["per_subject"] == LEVELS
    assert prior.level_info["quantiles"][0] == 0.0 and prior.level_info["quantiles"][-1] == 1.0


def test_sample_at_a_level_and_whole_volumes(levelled_run, tmp_path):
    run_path, _ = levelled_run
    drawn = sample_run(run_path, n=4, level=0.4, out=tmp_path / "at")
    assert drawn["levels"].tolist() == pytest.approx([0.4] * 4)
    assert len(list((tmp_path / "at").glob("sample_*.png"))) == 4
    free = sample_run(run_path, n=6, out=tmp_path / "free")
    assert not np.isnan(free["levels"]).any() and np.ptp(free["levels"]) > 0
    vols = sample_run(run_path, volumes=2, slices=4, seed=1, out=tmp_path / "vol")
    assert vols["images"].shape == (2, 4, 32, 32) and vols["levels"].tolist()[0] == 0.0
    assert [p.name for p in vols["volumes"]] == ["volume_000.nii.gz", "volume_001.nii.gz"]
    img = nib.load(str(vols["volumes"][1]))
    assert img.shape == (32, 32, 4)
    assert all(p.exists() for p in vols["montages"] + vols["reslices"])
    again = sample_run(run_path, volumes=2, slices=4, seed=1, out=tmp_path / "again")
    assert np.array_equal(again["codes"].numpy(), vols["codes"].numpy())
    with pytest.raises(RunError, match="--slices: only with --volumes"):
        sample_run(run_path, slices=4)
    with pytest.raises(RunError, match="give one of them"):
        sample_run(run_path, level=0.2, volumes=1)
    for bad in ({"volumes": 2, "slices": 1}, {"volumes": -1, "slices": 4}):
        with pytest.raises(RunError, match="ask for >= 1 stacks of >= 2 slices"):
            sample_run(run_path, **bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample_run(run_path, volumes=1, slices=LEVELS + 2, out=tmp_path / "more")
    assert any("closer than it learned" in str(w.message) for w in caught)


def test_a_trained_prior_draws_what_each_level_looks_like(levelled_run, brains, tmp_path):
    """The fake brains' low slices are wide heads (bright on average), their high slices small
    ones: samples drawn at level 0 must be nearer the real level-0 slices' mean brightness than
    the level-1 slices', and the other way round. A prior that ignored the level would draw the
    same slices for the same seed at both levels, which fails one of the two."""
    run_path, _ = levelled_run
    real = {
        lv: np.mean([np.asarray(Image.open(p)) / 255 for p in brains.glob(f"*/case_*_slice_{z}.*")])
        for lv, z in ((0.0, 0), (1.0, LEVELS - 1))
    }
    assert real[0.0] - real[1.0] > 0.2  # the fake anatomy differs clearly
    for lv, other in ((0.0, 1.0), (1.0, 0.0)):
        drawn = sample_run(run_path, n=12, level=lv, seed=0, out=tmp_path / str(lv))
        mean = float(drawn["images"].mean())
        assert abs(mean - real[lv]) < abs(mean - real[other]), (lv, mean, real)


def test_shuffled_numbering_warns_and_trains_unconditioned(tmp_path, levelled_run, brains):
    run_path, _ = levelled_run
    root = tmp_path / "shuffled"
    write_brains(root / "keras_png_slices_train", range(1, 7), shuffle=True, seed=1)
    write_brains(root / "keras_png_slices_validate", [11], shuffle=True, seed=2)
    write_brains(root / "keras_png_slices_test", [21, 22], shuffle=True, seed=3)
    run = tmp_path / "run"
    shutil.copytree(run_path, run, ignore=shutil.ignore_patterns("prior-*", "state", "codes"))
    cfg = ar_prior("maskgit", max_steps=2)
    with pytest.warns(UserWarning, match="does not follow anatomy"):
        out = train_prior(str(run), cfg, data=str(root), progress=False)
    assert out["conditions"] == [] and load_prior(load_run(run), "maskgit").conditions == ()
    # its checkpoint is not resumed into a conditioned prior, nor are levels forced on it
    (run / "prior-maskgit.safetensors").unlink()
    cfg.prior.max_steps = 4
    with pytest.raises(RunError, match="other conditions"):
        train_prior(str(run), cfg, data=str(brains), progress=False)
    cfg.prior.levels = "on"
    with pytest.raises(DataError, match="fail the order check"):
        train_prior(str(run), cfg, data=str(root), progress=False)


def test_cli_level_and_volumes(levelled_run, tmp_path):
    run_path, _ = levelled_run
    r = brainvq("sample", "--run", str(run_path), "--volumes", "1", "--slices", "3", "--quiet",
                "--out", str(tmp_path))  # fmt: skip
    assert "1 volumes of 3 slices" in r.stdout and "1 mm spacing assumed" in r.stdout
    assert (tmp_path / "volume_000_sagittal.png").exists()
    bad = brainvq("sample", "--run", str(run_path), "--level", "1.5", check=False)
    assert bad.returncode == 2 and "--level" in bad.stderr


def test_level_measures_on_fake_brains(brains):
    s = discover(brains)
    load = {k: np.stack([np.asarray(Image.open(f)) for f in v]) for k, v in s.files.items()}
    rel = s.relative_levels()
    model = fit_level_classifier(load["train"], rel["train"], bands=4, steps=120, seed=0)
    assert band_accuracy(model, load["test"], rel["test"]) >= 0.75
    stacks = real_stacks(load["test"], s.subjects["test"], s.levels["test"])
    assert len(stacks) == 2 and stacks[0].shape == (LEVELS, 32, 32)
    assert (stack_spearman(model, stacks) > 0.8).all()
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    near = adjacent_ssim(stacks)
    assert len(near) == 2 * (LEVELS - 1) and 0.2 < near.mean() <= 1.0
    scores = band_scores(load["test"], rel["test"], load["train"], load["test"], rel["test"])
    assert [b["band"] for b in scores] == [0, 1, 2, 3]
    assert all(b["realism_ratio"] == pytest.approx(1.0) for b in scores)


def test_conditioned_maskgit_draws_the_same_maps_in_any_chunk():
    """MaskGIT's fast path runs maps in chunks and shares the first step between unconditioned
    maps; with levels and maps below every map has its own first step, and the chunk size still
    changes no map, while the conditions do change them."""
    torch.manual_seed(0)
    net = MaskedCodeTransformer(K, 36, dim=16, layers=1, heads=2, levels=True, below=True).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    lv = torch.linspace(0, 1, 5)
    below = torch.randint(0, K, (5, 6, 6))

    def draw(chunk, levels=lv):
        g = torch.Generator().manual_seed(4)
        pick = categorical_picker(1.0, 0, g)
        return net.generate(5, (6, 6), pick, 4, 4.5, g, levels=levels, below=below, chunk=chunk)

    one = draw(1)
    assert torch.equal(one, draw(2)) and torch.equal(one, draw(8))
    assert not torch.equal(one, draw(8, lv.flip(0)))
    g = torch.Generator().manual_seed(4)
    plain = plain_generate(
        net, 5, (6, 6), categorical_picker(1.0, 0, g), 4, 4.5, g, extra=net.condition(5, lv, below)
    )
    assert torch.equal(one, plain)  # the conditions count from the first step


def test_healing_a_conditioned_prior_reads_its_level_as_unknown():
    """Anomaly maps (CodeTransformer.heal, MaskedCodeTransformer.fill) on a prior trained with
    levels: the codes' probabilities are those of the network given an unknown level and no
    slice below, as its forward pass gives them, not of a network with the condition inputs cut."""
    torch.manual_seed(0)
    net = CodeTransformer(K, 36, dim=16, layers=1, heads=2, levels=True, below=True).eval()
    codes = torch.randint(0, K, (2, 6, 6))
    never = categorical_picker(1.0, 0, torch.Generator().manual_seed(0))
    healed, redrawn, logp = net.heal(codes, 0.0, lambda logits, pos: never(logits))
    assert torch.equal(healed, codes) and not redrawn.any()  # threshold 0 redraws nothing
    want = net(codes).log_softmax(1).gather(1, codes[:, None])[:, 0]
    torch.testing.assert_close(logp, want)
