"""End-to-end runs of the `brainvq` command on tiny models and generated data."""

import json
import re
import signal
import subprocess
import time

import pytest

from .conftest import CLI_ENV, HANG_GUARD_S, TINY_OVERRIDES, brainvq, cli_args, tiny, write_slices


def test_train_evaluate_end_to_end(keras_root, tmp_path):
    run = tmp_path / "run"
    r = brainvq(
        *tiny("train-vqvae", keras_root, run),
        "--train.max_epochs",
        "2",
    )
    assert "VQ-VAE trained" in r.stdout
    r = brainvq("evaluate", "--run", str(run))
    assert "SSIM mean" in r.stdout and "realism of recons" in r.stdout
    m = json.loads((run / "metrics.json").read_text())["vqvae"]
    assert m["n_test"] == 6 and 0 < m["ssim"]["mean"] <= 1 and m["codes_used"] >= 1
    assert 0 < m["recon_realism_ratio"] < 2
    for fig in ("reconstructions.png", "vqvae_curves.png", "codebook_usage.png"):
        assert (run / "figures" / fig).stat().st_size > 1000
    assert (run / "vqvae.safetensors").exists() and (run / "config.toml").exists()
    # a finished stage is reused, not redone
    r = brainvq(
        *tiny("train-vqvae", keras_root, run),
        "--train.max_epochs",
        "2",
    )
    assert "already trained" in r.stdout
    # a different model config is refused without --fresh
    r = brainvq(
        *tiny("train-vqvae", keras_root, run),
        "--vqvae.codebook_size",
        "16",
        check=False,
    )
    assert r.returncode == 2 and "different config" in r.stderr and "--fresh" in r.stderr


@pytest.mark.slow
def test_256_pixel_slices(tmp_path):
    root = tmp_path / "big"
    write_slices(root / "keras_png_slices_train", 6, 256)
    write_slices(root / "keras_png_slices_test", 2, 256, seed=3)
    run = tmp_path / "run256"
    over = [a if a != "32" else "256" for a in TINY_OVERRIDES[:2]] + TINY_OVERRIDES[2:]
    brainvq(
        "run",
        "--data",
        str(root),
        "--run",
        str(run),
        "--quiet",
        *over,
        "--train.max_epochs",
        "1",
        "--vqvae.downsample",
        "8",
    )
    m = json.loads((run / "metrics.json").read_text())["vqvae"]
    assert m["image_size"] == 256 and m["n_test"] == 2


def test_resume_after_kill(keras_root, tmp_path):
    run = tmp_path / "run"
    args = [
        "train-vqvae",
        "--data",
        str(keras_root),
        "--run",
        str(run),
        "--quiet",
        *TINY_OVERRIDES,
        "--train.max_epochs",
        "400",
    ]
    import torch

    last = run / "state" / "vqvae" / "last.ckpt"
    saved_epoch = -1
    for delay in (0.7, 1.9):  # two kills at different moments, the second one of a resumed run
        before = last.stat().st_mtime_ns if last.exists() else 0
        proc = subprocess.Popen(
            cli_args(*args),
            env=CLI_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + HANG_GUARD_S
        while time.time() < deadline and (not last.exists() or last.stat().st_mtime_ns == before):
            time.sleep(0.1)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert last.exists(), "no checkpoint written before the kill"
        assert not (run / "vqvae.safetensors").exists()
        ckpt = torch.load(last, map_location="cpu", weights_only=True)  # whole, never torn
        assert ckpt["epoch"] >= saved_epoch
        saved_epoch = ckpt["epoch"]
    r = brainvq(*args[:-2], "--train.max_epochs", str(saved_epoch + 3))
    assert "VQ-VAE resumed" in r.stdout
    # the killed command's lock on the run is taken over, with a note
    assert r.stderr.count("is no longer running; taking over its lock") == 1, r.stderr
    assert f"{saved_epoch + 3} epochs" in r.stdout
    # the CSV log keeps the epochs from before the kill, and its step counts run on without repeats
    import csv

    with (run / "logs" / "vqvae" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    epochs = {int(float(r["epoch"])) for r in rows if r["epoch"]}
    assert epochs == set(range(saved_epoch + 3))
    steps = [int(float(r["step"])) for r in rows if r.get("loss_step")]
    assert steps == sorted(set(steps)) and steps[0] < 6 and steps[-1] >= (saved_epoch + 2) * 6


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train-vqvae", "--data", "/nonexistent/x", "--run", "{run}"], "data folder not found"),
        (["train-vqvae", "--data", "{empty}", "--run", "{run}"], "no PNG/JPEG slices"),
        (
            ["train-vqvae", "--data", "{root}", "--run", "{run}", "--vqvae.codebook_size", "-4"],
            "vqvae.codebook_size",
        ),
        (
            ["train-vqvae", "--data", "{root}", "--run", "{run}", "--data.image_size", "30"],
            "not divisible",
        ),
        (
            ["train-vqvae", "--data", "{root}", "--run", "{run}", "--config", "{badcfg}"],
            "unknown key",
        ),
        (["evaluate", "--run", "{empty}"], "config.toml: missing"),
        (
            ["train-vqvae", "--data", "{trunc}", "--run", "{run}", *TINY_OVERRIDES],
            "case_900_trunc.png",
        ),
    ],
)
def test_bad_input_one_line_exit_2(args, needle, tmp_path, keras_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    trunc = tmp_path / "trunc"
    good = write_slices(trunc, 4, 32)[0]
    (trunc / "case_900_trunc.png").write_bytes(good.read_bytes()[:50])
    badcfg = tmp_path / "bad.toml"
    badcfg.write_text("[train]\nlearning_rate = 1\n")
    fill = dict(
        run=str(tmp_path / "run"),
        empty=str(empty),
        root=str(keras_root),
        badcfg=str(badcfg),
        trunc=str(trunc),
    )
    r = brainvq(*[a.format(**fill) for a in args], "--quiet", check=False)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in err[0]


def test_run_end_to_end_with_prior_and_repeatable_sampling(keras_root, tmp_path):
    run = tmp_path / "run"
    r = brainvq(*tiny("run", keras_root, run), "--train.max_epochs", "1", "--kind", "dcgan")
    assert r.stdout.startswith("data: ") and "train 24, validate 4, test 6 slices" in r.stdout
    assert "NN-SSIM" in r.stdout and "realism ratio" in r.stdout
    # the subjects line, from train-vqvae and from evaluate: keras_root's splits share no subject
    subjects = "subjects: train 24, validate 4, test 6; 0 subjects in more than one split"
    assert r.stdout.count(subjects) == 2
    m = json.loads((run / "metrics.json").read_text())
    assert m["data"]["subjects_in_more_than_one_split"] == 0
    s = m["samples-dcgan"]
    # `run` scores the 64 samples it wrote (not eval.n_samples new ones), listed in the manifest
    assert s["n_samples"] == 64 and 0 < s["nn_ssim_mean"] <= 1 and s["copies"] >= 0
    assert s["manifest"] == str(run / "samples" / "manifest.csv")
    assert len((run / "samples" / "manifest.csv").read_text().splitlines()) == 65
    assert 0 <= s["code_hist_distance"] <= 1
    for fig in (
        "dcgan_best_vs_nearest.png",
        "dcgan_samples.png",
        "dcgan_code_map.png",
        "prior_dcgan_curves.png",
        "dcgan_nn_ssim.png",
        "real_nearest_pairs.png",
    ):
        assert (run / "figures" / fig).exists(), fig
    assert not (run / "figures" / "dcgan_neighbour_profile.png").exists()  # a bench figure now
    assert "share >= lowest real NN-SSIM" in r.stdout and 0 <= s["share_in_real_range"] <= 1
    assert len(list((run / "samples").glob("sample_*.png"))) == 64
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 7 and "realism_ratio" in page
    assert (run / "codes" / "train.npy").exists()
    assert len(list((run / "state" / "evaluate").glob("real-*.npz"))) == 1  # for later evaluates
    # every stage is reused on a second run
    r = brainvq(
        "run", "--data", str(keras_root), "--run", str(run), "--quiet", *TINY_OVERRIDES,
        "--kind", "dcgan",
    )  # fmt: skip
    assert "already trained" in r.stdout and "prior already trained" in r.stdout
    # sampling is repeatable under a seed, and another seed gives other slices
    outs = []
    for seed, name in ((3, "a"), (3, "b"), (4, "c")):
        brainvq(
            "sample",
            "--run",
            str(run),
            "-n",
            "4",
            "--seed",
            str(seed),
            "--out",
            str(tmp_path / name),
        )
        outs.append([(tmp_path / name / f"sample_{i:04d}.png").read_bytes() for i in range(4)])
    assert outs[0] == outs[1] and outs[0] != outs[2]
    # a run with only a GAN prior has no likelihood to score slices with: one line, exit 2
    one = next((keras_root / "keras_png_slices_test").glob("*.png"))
    bad = brainvq("score", "--run", str(run), str(one), check=False)
    assert bad.returncode == 2 and "no trained autoregressive prior" in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_tensorboard_logging_beside_csv(keras_root, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    brainvq(
        *tiny("train-vqvae", keras_root, run),
        "--train.max_epochs",
        "1",
        "--train.tensorboard",
        "true",
    )
    assert list((run / "logs" / "vqvae" / "tb").glob("events.out.tfevents.*"))
    assert (run / "logs" / "vqvae" / "metrics.csv").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sample", "--run", "{run}", "--eval.n_samples", "3"], "sample takes no config values"),
        (["score", "--run", "{run}", "x.png", "--vqvae.hidden", "8"], "score takes no config"),
        (["report", "--run", "{run}", "--eval.seed", "1"], "report takes no config values"),
        (["evaluate", "--run", "{run}", "--prior.kind", "dcgan"], "(it takes eval.*)"),
        (["train-prior", "--run", "{run}", "--vqvae.codebook_size", "16"], "prior.*, train."),
        (["train-prior", "--run", "{run}", "--set", "train.lr=1"], "--train.lr: train-prior"),
        (["tune-decoder", "--run", "{run}", "--train.lr", "1"], "(it takes tune.*)"),
    ],
)
def test_config_values_a_command_does_not_read_are_refused(args, needle, tmp_path):
    """Refused before any work, with one line naming what the command takes."""
    r = brainvq(*[a.format(run=tmp_path / "run") for a in args], check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert "does not use it" in r.stderr or "takes no config values" in r.stderr


def test_evaluate_applies_eval_overrides_to_this_evaluation(run_copy, monkeypatch):
    from brainvq.evaluation.measures import recon_realism

    run, _ = run_copy
    before = (run / "config.toml").read_text()
    seen = []
    real = recon_realism.realism_ratio

    def spy(images, test, train, candidates, *rest):
        seen.append(candidates)
        return real(images, test, train, candidates, *rest)

    monkeypatch.setattr(recon_realism, "realism_ratio", spy)
    brainvq("evaluate", "--run", str(run), "--quiet", "--eval.nn_candidates", "0")
    brainvq("evaluate", "--run", str(run), "--quiet")
    assert seen == [0, 128]  # the override, then the run's own value again
    assert (run / "config.toml").read_text() == before  # the run's config is unchanged
    bad = brainvq("evaluate", "--run", str(run), "--eval.n_samples", "0", check=False)
    assert bad.returncode == 2 and "eval.n_samples = 0" in bad.stderr


def test_evaluate_scores_samples_against_the_split_eval_reference_names(run_copy):
    """Sampling settings are chosen against the validation subjects, the test ones kept for the
    final score: both the metrics and the printed table say which split was the reference."""
    import numpy as np

    from brainvq.data import load_splits
    from brainvq.evaluation.realism import real_reference
    from brainvq.runs import load_run
    from brainvq.training.prior import train_prior

    from .priors.test_priors import ar_prior

    run, root = run_copy
    train_prior(str(run), ar_prior("maskgit"), data=str(root), progress=False)
    arrays = load_splits(root, load_run(run).config.data, progress=False)
    train = np.asarray(arrays["train"])
    scored = {}
    for ref in ("validate", "test"):
        extra = ["--eval.reference", ref] if ref == "validate" else []  # test: the default
        r = brainvq(
            "evaluate", "--run", str(run), "--kind", "maskgit", "-n", "4", "--quiet", *extra
        )
        assert re.search(rf"scored against +the {ref} split's slices", r.stdout), r.stdout
        s = json.loads((run / "metrics.json").read_text())["samples-maskgit"]
        real = real_reference(train, np.asarray(arrays[ref]))[0]
        assert s["reference"] == ref
        assert s["real_test_nn_ssim_mean"] == pytest.approx(real["real_test_nn_ssim_mean"])
        assert s["diversity_real_test"] == pytest.approx(real["diversity_real_test"])
        scored[ref] = s
    assert scored["validate"]["nn_ssim_mean"] == pytest.approx(scored["test"]["nn_ssim_mean"])
    assert scored["validate"]["real_test_nn_ssim_mean"] != scored["test"]["real_test_nn_ssim_mean"]
    bad = brainvq("evaluate", "--run", str(run), "--eval.reference", "train", check=False)
    assert bad.returncode == 2 and "eval.reference = 'train'" in bad.stderr


def test_help_and_version_and_what_each_command_reads():
    assert brainvq("--version").stdout.startswith("brainvq ")
    r = brainvq("evaluate", "--help")
    assert "--eval.nn_candidates" in r.stdout and "--eval.n_samples" in r.stdout
    assert "--prior" not in r.stdout.split("Config values it reads")[1]
    assert "prints" in brainvq("config", "--help").stdout.lower()
    assert "--tune.max_steps" in brainvq("tune-decoder", "--help").stdout


def test_brainvq_lets_waiting_openmp_threads_sleep_unless_told_otherwise():
    from brainvq.cli import share_cpu

    env = {}
    share_cpu(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    share_cpu(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}
