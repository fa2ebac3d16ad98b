import numpy as np
import torch

from brainvq.metrics import (
    codebook_stats,
    max_ssim_against,
    psnr,
    ssim,
    ssim_reference,
    top_ssim_against,
)


def test_torch_ssim_matches_skimage():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 48, 48, generator=g)
    y = (x + 0.2 * torch.randn(4, 1, 48, 48, generator=g)).clamp(0, 1)
    y[3] = torch.rand(1, 48, 48, generator=g)  # an unrelated image too
    ours = ssim(x, y).numpy()
    ref = np.array([ssim_reference(x[i, 0].numpy(), y[i, 0].numpy()) for i in range(4)])
    assert np.abs(ours - ref).max() < 1e-3


def test_image_against_itself_scores_one():
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    assert abs(ssim_reference(x[0, 0].numpy(), x[0, 0].numpy()) - 1.0) < 1e-9


def test_max_ssim_against_finds_the_copy():
    refs = torch.rand(10, 1, 32, 32)
    queries = torch.stack([refs[7], torch.rand(1, 32, 32)])
    best, where = max_ssim_against(queries, refs, chunk=3)
    assert where[0] == 7 and best[0] > 0.999
    assert best[1] < 0.5
    best_self, where_self = max_ssim_against(refs, refs, exclude_self=True)
    assert torch.all(where_self != torch.arange(10)) and best_self.max() < 0.5


def test_top_ssim_against_ranks_every_ref_like_a_full_sort():
    g = torch.Generator().manual_seed(1)
    refs = torch.rand(12, 1, 24, 24, generator=g)
    refs[5] = (refs[2] + 0.05 * torch.randn(1, 24, 24, generator=g)).clamp(0, 1)  # near refs[2]
    queries = torch.stack([refs[2], torch.rand(1, 24, 24, generator=g)])
    best, where = top_ssim_against(queries, refs, 4, chunk=5)
    full = torch.stack([ssim(q[None].expand(12, -1, -1, -1), refs) for q in queries])
    assert torch.allclose(best, full.sort(1, descending=True).values[:, :4], atol=1e-6)
    assert where[0, :2].tolist() == [2, 5] and best[0, 0] > 0.999  # itself, then its near-twin
    assert torch.all(best[:, :-1] >= best[:, 1:])
    one, at = max_ssim_against(queries, refs, chunk=5)
    assert torch.equal(one, best[:, 0]) and torch.equal(at, where[:, 0])
    short, _ = top_ssim_against(queries, refs, 2, candidates=3)  # shortlist of the 3 nearest
    assert torch.allclose(short[0], best[0, :2])


def test_psnr_and_codebook_stats():
    x = torch.zeros(1, 1, 8, 8)
    assert torch.allclose(psnr(x, x + 0.1), torch.tensor([20.0]), atol=1e-3)
    codes = torch.tensor([[[0, 1], [2, 3]]])
    st = codebook_stats(codes, 8)
    assert st["codes_used"] == 4 and st["codebook_usage"] == 0.5
    assert abs(st["perplexity"] - 4.0) < 1e-6
