import numpy as np
import pytest
import torch

from brainvq.evaluation.realism import (
    histogram_distance,
    mean_pairwise_ssim,
    near_twins,
    neighbours,
    nn_ssim,
    realism_ratio,
    reference_stats,
    score_samples,
)

from ..conftest import fake_slice


def _set(n, seed, size=32):
    rng = np.random.default_rng(seed)
    return np.stack([fake_slice(rng, size) for _ in range(n)])


def test_training_slice_scores_one_against_itself():
    train = _set(6, 0)
    best, where = nn_ssim(train[2:3], train)
    assert abs(float(best[0]) - 1.0) < 1e-5 and int(where[0]) == 2


def test_copied_training_slice_is_flagged_as_copy():
    train, test = _set(12, 1), _set(5, 2)
    fresh = _set(4, 4).astype(np.float32) / 255
    samples = np.concatenate([train[:1].astype(np.float32) / 255, fresh])
    s, per = score_samples(samples, train, test, candidates=0)
    assert s["copies"] >= 1
    assert per["nn_ssim"][0] > s["copy_threshold"]
    assert s["n_samples"] == 5 and 0 < s["realism_ratio"] < 2


def test_identical_samples_score_as_not_diverse():
    test = _set(6, 5)
    same = np.repeat(test[:1], 6, axis=0)
    assert abs(mean_pairwise_ssim(same) - 1.0) < 1e-5
    assert mean_pairwise_ssim(test) < 0.99
    s, _ = score_samples(same.astype(np.float32) / 255, _set(8, 6), test, candidates=0)
    assert s["diversity_samples"] > s["diversity_real_test"]
    assert s["diversity_gap"] > 0


def test_histogram_distance_bounds():
    a = torch.zeros(2, 4, 4, dtype=torch.long)
    b = torch.ones(2, 4, 4, dtype=torch.long)
    assert histogram_distance(a, a, 8) == 0.0
    assert abs(histogram_distance(a, b, 8) - 1.0) < 1e-12


def test_shortlist_matches_exhaustive_search():
    train, queries = _set(40, 7), _set(6, 8)
    full, wf = nn_ssim(queries, train, candidates=0)
    short, ws = nn_ssim(queries, train, candidates=10)
    assert torch.all(short <= full + 1e-6)
    # the L2 shortlist finds the same nearest slice for most queries, never a better one
    assert torch.isclose(full, short, atol=1e-6).float().mean() >= 0.5


def test_share_in_real_range_counts_samples_as_close_as_the_least_close_real_slice():
    train, test = _set(10, 11), _set(5, 12)
    near = train[:3].astype(np.float32) / 255  # NN-SSIM 1: at least every real slice's
    flat = np.full((2, 32, 32), 0.5, np.float32)  # no structure: far from every training slice
    s, per = score_samples(np.concatenate([near, flat]), train, test, candidates=0)
    real = per["real_nn_ssim"]
    assert real.shape == (5,) and per["real_nearest"].shape == (5,)
    assert abs(s["real_test_nn_ssim_min"] - float(real.min())) < 1e-7
    assert abs(s["real_test_nn_ssim_mean"] - float(real.mean())) < 1e-6
    assert float(per["nn_ssim"][3:].max()) < float(real.min())
    assert abs(s["share_in_real_range"] - 3 / 5) < 1e-6
    # a reference computed once (as benchmarks keep it) gives the same scores, no real arrays
    ref = reference_stats(train, test, candidates=0)
    s2, per2 = score_samples(np.concatenate([near, flat]), train, test, candidates=0, reference=ref)
    assert s2["share_in_real_range"] == s["share_in_real_range"] and "real_nn_ssim" not in per2


def test_realism_ratio_of_real_slices_is_one_and_of_copies_above():
    train, test = _set(10, 13), _set(4, 14)
    assert realism_ratio(test, test, train, candidates=0) == pytest.approx(1.0, abs=1e-6)
    assert realism_ratio(train[:4], test, train, candidates=0) > 1.0  # copies: NN-SSIM 1
    flat = np.full((4, 32, 32), 0.5, np.float32)
    assert realism_ratio(flat, test, train, candidates=0) < 1.0


def test_real_side_is_searched_once_for_the_same_slices(monkeypatch):
    from brainvq.evaluation import realism as sample_metrics

    train, test = _set(10, 15), _set(4, 16)
    samples = _set(3, 17).astype(np.float32) / 255
    queries = []

    def counting(q, t, candidates=0, progress=""):
        queries.append(len(q))
        return searches(q, t, candidates)

    searches = sample_metrics.neighbours
    monkeypatch.setattr(sample_metrics, "neighbours", counting)

    def nearest(q, t, candidates=0, progress=""):
        top, where = counting(q, t, candidates)
        return top[:, 0], where[:, 0]

    monkeypatch.setattr(sample_metrics, "nn_ssim", nearest)
    s1, per1 = score_samples(samples, train, test, candidates=0)
    per1["real_nn_ssim"][:] = 0  # the caller's copy: the cached answer stays as it was
    s2, per2 = score_samples(samples, train, test, candidates=0)
    ratio = realism_ratio(samples, test, train, candidates=0)
    assert queries == [4, 3, 3, 3]  # the 4 test slices searched once, the samples each time
    assert s1 == s2 and per2["real_nn_ssim"].min() > 0
    assert ratio == pytest.approx(s1["realism_ratio"], abs=1e-9)
    changed = test.copy()
    changed[0, 0, 0] ^= 1
    score_samples(samples, train, changed, candidates=0)
    assert queries[-2:] == [4, 3]  # other slices: searched again


def _brains(n_brains: int, per_brain: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 48x48 "brains" (N, 1, 48, 48) and per_brain noisy "slices" of each, brain-major."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n_brains, 1, 48, 48, generator=g)
    noise = 0.08 * torch.randn(n_brains, per_brain, 48, 48, generator=g)
    slices = (base + noise).clamp(0, 1).reshape(-1, 1, 48, 48)
    return base, slices


def test_near_twins_tell_a_seen_brain_from_a_new_one():
    bases, train = _brains(20, 3, seed=0)  # 60 training slices, 3 of each brain
    g = torch.Generator().manual_seed(1)
    seen = (bases[:5] + 0.08 * torch.randn(5, 1, 48, 48, generator=g)).clamp(0, 1)
    new = _brains(5, 1, seed=2)[1]  # slices of brains the training split lacks
    count, past = near_twins(neighbours(seen, train)[0])
    assert count.tolist() == [3] * 5  # each has its brain's 3 training slices as near-twins
    top_new = neighbours(new, train)[0]
    new_count, new_past = near_twins(top_new)
    assert new_count.tolist() == [0] * 5 and torch.equal(new_past, top_new[:, 0])
    assert past.max() < 0.5 < neighbours(seen, train)[0][:, 0].min()
    out, per = score_samples(new, train, seen)
    assert out["real_test_near_twin_share"] == 1.0
    assert per["real_near_twins"].tolist() == [3] * 5
    # past-twin diagnostics stay in bench/, not in what evaluate reports
    assert not {"realism_ratio_past_twins", "near_twin_share", "nn_ssim_past_twins_mean"} & set(out)
    # a copied training slice has near-twins (itself and its brain's other slices)
    assert near_twins(neighbours(train[:1], train)[0])[0].item() == 3


def test_near_twins_need_a_training_set_deep_enough_for_a_plateau():
    _, train = _brains(10, 3, seed=0)  # 30 slices: fewer than the 40 kept per slice
    assert near_twins(neighbours(train[:2], train)[0]) is None
    out, _ = score_samples(train[:2], train, train[2:4])
    assert "real_test_near_twin_share" not in out


def test_evaluate_says_the_near_twin_share_with_what_it_means_and_warns_when_high():
    from brainvq.evaluation.evaluate import format_data, format_sample_table, near_twin_warning

    bases, train = _brains(20, 3, seed=0)
    seen = (bases[:4] + 0.05).clamp(0, 1)
    new = _brains(4, 1, seed=2)[1]
    deep, _ = score_samples(new, train, seen)
    deep.update(samples_per_second=1.0, seed=0)
    assert "near-twin" not in format_sample_table(deep, "maskgit")  # a data measure, not a prior's
    data = {"subjects": {"train": 20, "test": 4}, "subjects_in_more_than_one_split": None}
    data["real_test_near_twin_share"] = deep["real_test_near_twin_share"]
    line = format_data(data).splitlines()[1]
    assert line.startswith("real test slices with a near-twin in training: 100% (a near-twin is")
    assert "100% of the real test slices have a near-twin" in near_twin_warning(data)
    assert near_twin_warning({**data, "real_test_near_twin_share": 0.5}) is None
    assert near_twin_warning({**data, "one_brain": True}) is None  # levels of one brain: expected


def test_real_side_is_kept_on_disk_for_later_processes(monkeypatch, tmp_path):
    from brainvq.evaluation import realism as sample_metrics

    train, test = _brains(20, 3, seed=0)[1], _brains(4, 1, seed=3)[1]
    samples = _brains(3, 1, seed=4)[1]
    cache = tmp_path / "state" / "evaluate"
    first, per1 = score_samples(samples, train, test, cache_dir=cache)
    (saved,) = cache.glob("real-*.npz")
    searches = []
    search = sample_metrics.neighbours
    monkeypatch.setattr(
        sample_metrics,
        "neighbours",
        lambda q, t, c=0, p="": searches.append(len(q)) or search(q, t, c),
    )
    sample_metrics._REAL_CACHE.clear()  # as in a new process
    again, per2 = score_samples(samples, train, test, cache_dir=cache)
    assert searches == [3]  # the samples only: the 4 test slices came from the file
    assert again == first and np.array_equal(per1["real_neighbours"], per2["real_neighbours"])
    saved.write_bytes(b"torn")  # an unreadable file is searched again and replaced
    sample_metrics._REAL_CACHE.clear()
    assert score_samples(samples, train, test, cache_dir=cache)[0] == first
    assert searches == [3, 4, 3] and list(cache.glob("real-*.npz")) == [saved]
    other = test.clone()
    other[0] = 1 - other[0]
    score_samples(samples, train, other, cache_dir=cache)
    assert searches[-2:] == [4, 3] and not saved.exists()  # other slices: one new file
    assert len(list(cache.glob("real-*.npz"))) == 1
