"""The contract every registered prior kind keeps (brainvq.config.kinds, brainvq.priors): sample
shape and dtype, the same seed the same samples, a save/load round trip through the prior file,
and the capability flags of its KindSpec honoured by its class (likelihood, conditions,
variations). tests/test_toy_prior_kind.py runs the same checks on a kind registered by a test."""

from __future__ import annotations

import pytest
import torch

from brainvq.config import KINDS, PRIOR_KINDS, Config, kind_spec
from brainvq.errors import RunError
from brainvq.priors import PRIOR_CLASSES, build_prior, load_prior_file, prior_class

from ..conftest import tiny_config

K, SIDE = 12, 8
# sizes of the built-in kinds' networks small enough for a test, set where a section has them
TINY = {"dim": 16, "layers": 1, "heads": 2, "kv_heads": 1, "channels": 16, "kernel": 3}
TINY |= {"latent_dim": 8, "g_channels": 16, "d_channels": 8}


def tiny_prior_config(kind: str) -> Config:
    """A config whose prior is a tiny one of ``kind``."""
    cfg = tiny_config()
    cfg.prior.kind = kind
    section = cfg.prior.settings()
    for key, value in TINY.items():
        if hasattr(section, key):
            setattr(section, key, value)
    return cfg.validate()


def check_contract(kind: str, tmp_path) -> None:
    """Every promise a registered kind makes, checked on a fresh tiny prior of it."""
    spec, cls = kind_spec(kind), prior_class(kind)
    cfg = tiny_prior_config(kind)
    assert isinstance(cfg.prior.settings(), spec.settings) and cls.kind == kind
    assert (cls.has_likelihood, cls.can_condition, cls.can_vary) == (
        spec.likelihood,
        spec.conditions,
        spec.variations,
    ), "the prior class and its KindSpec disagree on what it can do"
    torch.manual_seed(0)
    prior = build_prior(cfg.prior, torch.randn(K, 4), SIDE)
    codes = prior.sample(3, seed=1, temperature=1.0)
    assert codes.shape == (3, SIDE, SIDE) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < K
    assert torch.equal(codes, prior.sample(3, seed=1, temperature=1.0))
    # the round trip through RUN/prior-<kind>.safetensors' format
    path = tmp_path / f"prior-{kind}.safetensors"
    prior.save(path, cfg)
    again = load_prior_file(path)
    assert type(again) is cls and again.kind == kind
    assert again.sampling == (spec.temperature, 0)  # prior.temperature 0: the kind's own
    for name, value in prior.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name
    assert torch.equal(again.sample(3, seed=1, temperature=1.0), codes)
    _check_flags(spec, prior, again, codes, cfg)


def _check_flags(spec, prior, again, codes, cfg) -> None:
    """What the spec says the kind can do, it does; what it says it cannot, it refuses."""
    if spec.likelihood:
        ll = prior.log_likelihood(codes)
        assert ll.shape == (3,) and bool(torch.isfinite(ll).all()) and bool((ll <= 0).all())
        torch.testing.assert_close(again.log_likelihood(codes), ll)
    else:
        with pytest.raises(RunError, match="no likelihood"):
            prior.log_likelihood(codes)
    if spec.variations:
        varied = prior.vary(codes, 0.25, seed=2)
        assert varied.shape == codes.shape and bool((varied == codes).any())
        assert torch.equal(varied, prior.vary(codes, 0.25, seed=2))
    else:
        with pytest.raises(RunError, match="cannot redraw"):
            prior.vary(codes, 0.25)
    if spec.conditions:
        levelled = build_prior(cfg.prior, prior.codebook, SIDE, ("level",))
        drawn = levelled.sample(2, seed=3, levels=0.5)
        assert drawn.shape == (2, SIDE, SIDE) and levelled.level_conditioned
    else:
        with pytest.raises(RunError, match="cannot be conditioned"):
            build_prior(cfg.prior, prior.codebook, SIDE, ("level",))


@pytest.mark.parametrize("kind", list(PRIOR_KINDS))
def test_every_registered_kind_keeps_the_prior_contract(kind, tmp_path):
    check_contract(kind, tmp_path)


def test_the_registry_is_the_one_list_of_kinds():
    """Config sections, prior classes, verdict names and report curves all come from it."""
    from brainvq.reporting.report import PRIOR_CURVES
    from brainvq.reporting.verdict import PRIOR_NAMES

    names = tuple(KINDS)
    assert tuple(PRIOR_KINDS) == names == ("dcgan", "pixelcnn", "transformer", "maskgit")
    assert tuple(Config().prior.kind_sections()) == names
    assert tuple(PRIOR_CLASSES) == tuple(PRIOR_NAMES) == tuple(PRIOR_CURVES) == names
    assert PRIOR_NAMES["maskgit"] == "MaskGIT" and PRIOR_CURVES["dcgan"].startswith("generator")
