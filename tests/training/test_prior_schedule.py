"""The code-predicting priors' learning-rate schedule: warm-up, then constant or cosine decay."""

import math

import pytest
import torch

from brainvq.config import Config, ConfigError
from brainvq.training.code_prior import CodePredictionModule, lr_factor


def test_warm_up_then_constant():
    f = lr_factor(4, "constant", 100, 0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(50) == f(1000) == 1.0


def test_cosine_falls_from_one_to_the_floor_at_the_step_budget_and_stays():
    f = lr_factor(10, "cosine", 110, 0.1)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)  # halfway: the mean of 1 and the floor
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_cosine_without_a_step_budget_stays_constant():
    f = lr_factor(10, "cosine", 0, 0.1)
    assert f(10) == f(10_000) == 1.0


def test_the_module_steps_its_optimizer_along_the_schedule():
    cfg = Config()
    m = cfg.prior.maskgit
    m.dim, m.layers, m.heads, m.warmup_steps = 16, 1, 2, 2
    m.schedule, m.min_lr_ratio = "cosine", 0.0
    cfg.prior.max_steps = 6
    module = CodePredictionModule(cfg.validate(), torch.randn(8, 4), 4)
    opts = module.configure_optimizers()
    opt, sched = opts["optimizer"], opts["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[1] == pytest.approx(m.lr)
    assert lrs[3] == pytest.approx(m.lr * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lrs[4] == pytest.approx(m.lr * 0.5)
    assert lrs[6] == pytest.approx(0.0, abs=1e-12) and lrs[7] == pytest.approx(0.0, abs=1e-12)


def test_an_unknown_schedule_is_one_config_error():
    cfg = Config()
    cfg.prior.maskgit.schedule = "linear"
    with pytest.raises(ConfigError, match="prior.maskgit.schedule"):
        cfg.validate()
