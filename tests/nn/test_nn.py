import pytest
import torch

from brainvq.config import VQVAEConfig
from brainvq.nn.quantizer import VectorQuantizer
from brainvq.nn.vqvae import VQVAE, ResidualBlock, recon_loss

TINY = dict(hidden=16, res_hidden=8, n_res_blocks=1, codebook_size=32, code_dim=8)


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("down", [4, 8])
def test_shapes(size, down):
    m = VQVAE(VQVAEConfig(downsample=down, **TINY))
    x = torch.rand(2, 1, size, size)
    out = m(x)
    assert out.recon.shape == x.shape
    assert out.codes.shape == (2, size // down, size // down)
    assert out.codes.dtype == torch.int64
    codes = m.encode(x)
    assert codes.shape == (2, size // down, size // down)
    img = m.decode(codes)
    assert img.shape == x.shape and img.min() >= 0 and img.max() <= 1
    assert m.code_shape(size) == (size // down, size // down)


def test_residual_block_keeps_shape():
    blk = ResidualBlock(16, 8)
    x = torch.randn(1, 16, 8, 8)
    assert blk(x).shape == x.shape


def test_straight_through_gradients_reach_encoder():
    m = VQVAE(VQVAEConfig(**TINY))
    x = torch.rand(2, 1, 32, 32)
    out = m(x)
    recon_loss(out.recon, x).backward()  # no commitment term: only the straight-through path
    g = m.encoder.net[0].weight.grad
    assert g is not None and g.abs().sum() > 0


def test_straight_through_is_identity_gradient():
    q = VectorQuantizer(8, 4, ema=True, dead_code_threshold=0)
    z = torch.randn(1, 4, 3, 3, requires_grad=True)
    out = q(z)
    out.quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_ema_update_toy_case():
    # two codes, all vectors near code 0: with decay 0.5 code 0 moves halfway to their mean
    q = VectorQuantizer(2, 2, ema=True, decay=0.5, eps=1e-9, dead_code_threshold=0)
    with torch.no_grad():
        q.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        q.embed_sum.copy_(q.embedding)
        q.cluster_size.fill_(1.0)
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0]]).t().reshape(1, 2, 1, 2)  # vectors (1,1), (3,1)
    q.train()
    q(z)
    # cluster_size = 0.5*1 + 0.5*2 = 1.5 ; embed_sum = 0.5*0 + 0.5*(4,2) = (2,1)
    assert torch.allclose(q.cluster_size[0], torch.tensor(1.5))
    assert torch.allclose(q.embed_sum[0], torch.tensor([2.0, 1.0]))
    # Laplace smoothing with tiny eps leaves the ratio: embedding = embed_sum / cluster_size
    assert torch.allclose(q.embedding[0], torch.tensor([2.0, 1.0]) / 1.5, atol=1e-5)
    # unused code 1 decays its usage but keeps its vector's ratio
    assert torch.allclose(q.cluster_size[1], torch.tensor(0.5))


def test_eval_mode_does_not_update_codebook():
    q = VectorQuantizer(4, 2)
    before = q.embedding.clone()
    q.eval()
    q(torch.randn(2, 2, 4, 4))
    assert torch.equal(before, q.embedding)


def test_dead_code_restart_reseeds_from_encoder_outputs():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 2, ema=True, decay=0.9, dead_code_threshold=1.0)
    with torch.no_grad():
        q.embedding.fill_(100.0)  # every code far away ...
        q.embedding[0] = torch.tensor([0.0, 0.0])  # ... but one
        q.embed_sum.copy_(q.embedding)
        q.cluster_size.fill_(0.0)
        q.cluster_size[0] = 50.0
    z = torch.randn(1, 2, 8, 8)
    q.train()
    q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    restarted = q.embedding[1:]
    # every dead code now sits exactly on one of the batch's encoder outputs
    d = torch.cdist(restarted, flat).min(dim=1).values
    assert torch.all(d < 1e-5)
    used = q(z).usage
    assert used > 1 / 16


def test_kmeans_init_runs_once_and_fits_data():
    torch.manual_seed(0)
    q = VectorQuantizer(4, 2, kmeans_init=True, dead_code_threshold=0)
    centers = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    pts = centers.repeat(50, 1) + 0.1 * torch.randn(200, 2)
    z = pts.t().reshape(1, 2, 10, 20)
    q.train()
    assert not bool(q.initted)
    q(z)
    assert bool(q.initted)
    d = torch.cdist(centers, q.embedding).min(dim=1).values
    assert torch.all(d < 0.5)


def test_codebook_gradient_mode_without_ema():
    q = VectorQuantizer(8, 4, ema=False, dead_code_threshold=0)
    z = torch.randn(2, 4, 4, 4, requires_grad=True)
    out = q(z)
    out.loss.backward()
    assert q.embedding.grad is not None and q.embedding.grad.abs().sum() > 0


def test_lookup_rejects_out_of_range_codes():
    q = VectorQuantizer(8, 4)
    with pytest.raises(ValueError):
        q.lookup(torch.full((1, 2, 2), 8))


def test_decode_in_batches_gives_the_same_images():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**TINY)).eval()
    codes = torch.randint(0, 32, (7, 4, 4))
    whole = model.decode(codes)
    assert whole.shape == (7, 1, 16, 16)
    for b in (1, 3, 7, 50):
        assert torch.allclose(model.decode(codes, b), whole, atol=1e-6), b
