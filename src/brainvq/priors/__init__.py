"""Priors over VQ-VAE code maps: one interface (brainvq.priors.base), four kinds, one module each.

from brainvq.runs import load_run
from brainvq.priors import load_prior
run = load_run("runs/demo")
prior = load_prior(run, "transformer")
codes = prior.sample(16, seed=0, temperature=1.0)     # (16, h, w) int64
images = run.vqvae.decode(codes)
bits = prior.bits_per_code(codes)                      # (16,)
"""

from brainvq.priors.base import (
    AutoregressivePrior,
    Prior,
    categorical_picker,
    gumbel_argmax,
    shape_logits,
)
from brainvq.priors.dcgan import DCGANPrior
from brainvq.priors.maskgit import MaskGITPrior
from brainvq.priors.pixelcnn import PixelCNNPrior
from brainvq.priors.registry import (
    PRIOR_CLASSES,
    build_prior,
    load_prior,
    load_prior_file,
    pick_kind,
    prior_class,
    prior_path,
    trained_kinds,
)
from brainvq.priors.transformer import TransformerPrior

__all__ = [
    "PRIOR_CLASSES",
    "AutoregressivePrior",
    "DCGANPrior",
    "MaskGITPrior",
    "PixelCNNPrior",
    "Prior",
    "TransformerPrior",
    "build_prior",
    "categorical_picker",
    "gumbel_argmax",
    "load_prior",
    "load_prior_file",
    "pick_kind",
    "prior_class",
    "prior_path",
    "shape_logits",
    "trained_kinds",
]
