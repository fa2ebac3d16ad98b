"""A prior kind added from outside the package: an independent per-position code histogram (each
position's code drawn on its own, from the codes seen there in training). It is one settings
class, one KindSpec, one prior class and one registry line; the run's normal paths (config,
train_prior, load_prior, sampling, the command line) then take it like a built-in kind."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from brainvq.config import KINDS, CodePredictionConfig, Config, KindSpec, register_kind
from brainvq.priors import Prior, load_prior, prior_path, trained_kinds
from brainvq.runs import load_run
from brainvq.sampling import sample_images
from brainvq.training.prior import describe, train_prior

from ..conftest import brainvq, tiny_config
from .test_prior_contract import check_contract


@dataclass
class HistogramConfig(CodePredictionConfig):
    """prior.histogram: trained as the code-predicting priors are (its own learning rate)."""

    lr: float = 0.1
    weight_decay: float = 0.0


class HistogramPrior(Prior):
    """Logits (K, h, w) of each position's code, learned by maximum likelihood: at the optimum
    the softmax is the training maps' code histogram at that position."""

    kind = "histogram"
    has_likelihood = True

    def __init__(self, cfg: HistogramConfig, codebook: torch.Tensor, code_size: int) -> None:
        super().__init__(codebook, code_size)
        self.logits = nn.Parameter(torch.zeros(codebook.shape[0], code_size, code_size))

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per code (nats)."""
        return F.cross_entropy(self.logits.expand(len(codes), -1, -1, -1), codes)

    def _draw(self, n: int, pick, generator, progress) -> torch.Tensor:
        per_code = self.logits.flatten(1).T  # (h * w, K)
        codes = pick(per_code.repeat(n, 1)).reshape(n, self.code_size, self.code_size)
        progress(self.code_size * self.code_size)
        return codes

    def log_likelihood(self, codes: torch.Tensor) -> torch.Tensor:
        """ln p(code map) of each map (B, h, w) -> (B,): the positions are independent."""
        logp = self.logits.log_softmax(0).expand(len(codes), -1, -1, -1)
        return logp.gather(1, codes.long()[:, None]).sum(dim=(1, 2, 3))


SPEC = KindSpec(
    name="histogram",
    title="code histogram",
    settings=HistogramConfig,
    prior=f"{__name__}:HistogramPrior",
    temperature=1.0,
    batch_size=8,
    likelihood=True,
)


@pytest.fixture(autouse=True, scope="module")
def histogram_kind():
    """The registry line (undone after this module, so other tests see the built-in kinds)."""
    register_kind(SPEC)
    yield
    KINDS.pop(SPEC.name)


def test_the_toy_kind_keeps_the_prior_contract(tmp_path):
    check_contract("histogram", tmp_path)


def test_the_toy_kind_has_a_config_section():
    cfg = Config.from_dict({"prior": {"kind": "histogram", "histogram": {"lr": 0.05}}})
    assert cfg.prior.settings().lr == 0.05 and "[prior.histogram]" in cfg.to_toml()
    assert Config().override(["prior.histogram.warmup_steps=3"]).prior.histogram.warmup_steps == 3
    assert cfg.prior.step_batch_size() == 8 and cfg.prior.sampling_temperature() == 1.0


def test_the_toy_kind_trains_samples_saves_and_loads_through_a_run(run_copy, tmp_path):
    run_path, root = run_copy
    cfg = tiny_config()
    cfg.prior.kind, cfg.prior.max_epochs, cfg.prior.max_minutes = "histogram", 3, 0.0
    cfg.prior.histogram.warmup_steps = 1
    out = train_prior(str(run_path), cfg, data=str(root), progress=False)
    assert out["status"] == "trained" and out["kind"] == "histogram"
    assert 0 < out["best_val_bpc"] < 5  # log2(32) = 5 bits: it learned something
    assert "histogram prior trained" in describe(out, "histogram")
    run = load_run(run_path)
    assert trained_kinds(run.dir) == ["histogram"]
    prior = load_prior(run, "histogram")
    assert isinstance(prior, HistogramPrior) and prior.sampling == (1.0, 0)
    drawn = sample_images(run, prior, 5, seed=3)
    assert drawn["codes"].shape == (5, 8, 8) and drawn["images"].shape == (5, 32, 32)
    assert torch.equal(drawn["codes"], sample_images(run, prior, 5, seed=3)["codes"])
    # reused, not retrained, when asked again
    assert train_prior(str(run_path), cfg, progress=False)["status"] == "reused"
    # and the command line takes the new kind too
    brainvq("sample", "--run", str(run_path), "--kind", "histogram", "-n", "4", "--quiet")
    assert len(list((run_path / "samples").glob("sample_*.png"))) == 4
    assert prior_path(run.dir, "histogram").exists()
