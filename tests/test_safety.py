"""Crash- and input-safety: Ctrl-C, NaN loss, disk full, unpicklable checkpoints, determinism."""

import errno
import json
import os
import pickle
import re
import signal
import subprocess
import time

import pytest
import torch

from brainvq import io, runs
from brainvq.errors import BrainVQError, Interrupted, RunError
from brainvq.nn.vqvae import VQVAE
from brainvq.training import vqvae as vqvae_module
from brainvq.training.callbacks import RollingCheckpoint
from brainvq.training.vqvae import train_vqvae

from .conftest import CLI_ENV, HANG_GUARD_S, brainvq, cli_args, tiny, tiny_config


def _wait_for(path, proc, seconds=HANG_GUARD_S):
    """Wait until path exists or proc ends (or a hang guard runs out); True if path exists."""
    deadline = time.time() + seconds
    while time.time() < deadline and not path.exists() and proc.poll() is None:
        time.sleep(0.2)
    return path.exists()


def test_ctrl_c_saves_checkpoint_and_exits_cleanly(keras_root, tmp_path):
    run = tmp_path / "run"
    args = cli_args(
        *tiny("train-vqvae", keras_root, run),
        "--train.max_epochs",
        "500",
    )
    proc = subprocess.Popen(
        args, env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ckpt = run / "state" / "vqvae" / "last.ckpt"
    assert _wait_for(ckpt, proc)
    before = ckpt.stat().st_mtime_ns
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    # the signal lands either in a training step (a checkpoint is written after it) or, on a busy
    # machine more often, in the validation pass (the last checkpoint is kept and named with its
    # step); both messages say where to resume from, and nothing else is acceptable
    kept = re.search(r"interrupted during validation: the last checkpoint \(step (\d+)\)", err)
    assert "interrupted: checkpoint saved in" in err or kept, err
    assert not (run / ".lock").exists()  # the run is free for the next command
    assert ckpt.stat().st_mtime_ns >= before
    assert not (run / "vqvae.safetensors").exists()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain data only
    assert state["global_step"] > 0
    if kept:  # the step the message names is the checkpoint's
        assert state["global_step"] == int(kept.group(1))


def test_ctrl_c_during_validation_keeps_the_last_checkpoint_and_names_its_step(
    keras_root, tmp_path, monkeypatch
):
    """The branch a busy machine hits: the stop request arrives in the second epoch's validation
    pass; the first epoch's checkpoint is kept (not overwritten mid-validation) and named."""
    real_step = vqvae_module.VQVAEModule.validation_step

    def ctrl_c_in_second_validation(self, batch, batch_idx):
        if self.current_epoch >= 1 and not self.trainer.sanity_checking:
            cb = next(c for c in self.trainer.callbacks if isinstance(c, RollingCheckpoint))
            cb.interrupted = True  # what the SIGINT handler sets
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(vqvae_module.VQVAEModule, "validation_step", ctrl_c_in_second_validation)
    run = tmp_path / "run"
    with pytest.raises(Interrupted, match="interrupted during validation") as info:
        train_vqvae(str(keras_root), str(run), tiny_config(max_epochs=5), progress=False)
    state = torch.load(run / "state" / "vqvae" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0  # the first epoch's checkpoint, untouched
    assert f"(step {state['global_step']})" in str(info.value)
    assert not (run / "vqvae.safetensors").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(keras_root, tmp_path, monkeypatch):
    real_step = vqvae_module.VQVAEModule.training_step

    def poisoned(self, batch, batch_idx):
        if self.current_epoch >= 1:
            batch = batch * float("nan")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(vqvae_module.VQVAEModule, "training_step", poisoned)
    run = tmp_path / "run"
    with pytest.raises(BrainVQError, match="non-finite training loss"):
        train_vqvae(str(keras_root), str(run), tiny_config(max_epochs=5), progress=False)
    ckpt = torch.load(run / "state" / "vqvae" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0  # the good epoch, not the poisoned one
    assert all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )
    assert not (run / "vqvae.safetensors").exists()


def test_disk_full_while_saving_leaves_nothing_half_written(tmp_path, monkeypatch):
    cfg = tiny_config()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "replace", full)
    target = tmp_path / "vqvae.safetensors"
    with pytest.raises(RunError, match="No space left"):
        runs.save_vqvae(VQVAE(cfg.vqvae), target, cfg)
    with pytest.raises(RunError, match="No space left"):
        io.atomic_write_text(tmp_path / "metrics.json", "{}")
    assert list(tmp_path.iterdir()) == []


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_that_would_run_code_is_refused(keras_root, tmp_path):
    run = tmp_path / "run"
    state = run / "state" / "vqvae"
    state.mkdir(parents=True)
    tiny_config().save(run / "config.toml")
    with open(state / "last.ckpt", "wb") as f:
        pickle.dump({"state_dict": {}, "evil": _Evil()}, f)
    r = brainvq(
        *tiny("train-vqvae", keras_root, run),
        "--train.max_epochs",
        "1",
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert "refusing to load" in r.stderr and "Traceback" not in r.stderr


def test_same_seed_same_metrics(keras_root, tmp_path):
    from brainvq.evaluation.evaluate import evaluate_vqvae

    results = []
    for name in ("a", "b"):
        train_vqvae(
            str(keras_root), str(tmp_path / name), tiny_config(max_epochs=2), progress=False
        )
        results.append(evaluate_vqvae(str(tmp_path / name)))
    assert json.dumps(results[0], sort_keys=True) == json.dumps(results[1], sort_keys=True)


def test_failed_start_leaves_no_run_folder(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(BrainVQError):
        train_vqvae(str(tmp_path / "missing"), str(run), tiny_config(), progress=False)
    assert not run.exists()


def test_ctrl_c_ends_a_prior_stage_after_the_step_without_a_validation_pass(run_copy, monkeypatch):
    """The first Ctrl-C saves after the step in flight and ends the stage there: Lightning's own
    stop would first validate on the whole validation split (minutes on full OASIS)."""
    from brainvq.errors import Interrupted
    from brainvq.training import code_prior
    from brainvq.training.prior import train_prior

    from .priors.test_priors import ar_prior

    run_path, root = run_copy
    real_train, real_val = code_prior.CodePredictionModule.training_step, []
    calls = []

    def train_step(self, batch, batch_idx):
        calls.append(self.global_step)
        if len(calls) == 5:  # the second step of the second epoch (3 steps an epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real_train(self, batch, batch_idx)

    def val_step(self, batch, batch_idx):
        real_val.append(len(calls))

    monkeypatch.setattr(code_prior.CodePredictionModule, "training_step", train_step)
    monkeypatch.setattr(code_prior.CodePredictionModule, "validation_step", val_step)
    cfg = ar_prior("maskgit", max_epochs=50)
    with pytest.raises(Interrupted, match="checkpoint saved in .*prior-maskgit; run the same"):
        train_prior(str(run_path), cfg, data=str(root), progress=False)
    assert len(calls) == 5 and all(n == 3 for n in real_val)  # validated after epoch 0 only
    state = torch.load(run_path / "state" / "prior-maskgit" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 5
    assert not (run_path / "prior-maskgit.safetensors").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_ctrl_c_before_training_exits_130_and_leaves_nothing_half_written(
    run_copy, monkeypatch, capsys
):
    """Ctrl-C while train-prior encodes the code maps (before fit): exit 130, one line, and no
    code-map file, whole or partial."""
    from brainvq import codes
    from brainvq.cli import main

    run_path, root = run_copy
    real = codes.encode_images

    def interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(codes, "encode_images", interrupted)
    rc = main(["train-prior", "--run", str(run_path), "--data", str(root), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 130 and err.count("\n") == 1 and "interrupted" in err
    assert not (run_path / "codes").exists() or not list((run_path / "codes").iterdir())


@pytest.mark.slow
def test_ctrl_c_stops_a_maskgit_prior_process(run_copy):
    """A real SIGINT to `brainvq train-prior --kind maskgit --quiet` in its own process: it
    saves and exits 130 with one line (the only time limit is a hang guard)."""
    run_path, root = run_copy
    args = ["train-prior", "--run", str(run_path), "--data", str(root), "--kind", "maskgit"]
    args += ["--quiet", "--prior.max_minutes", "0", "--prior.max_epochs", "100000"]
    args += ["--prior.batch_size", "4", "--prior.maskgit.dim", "16", "--prior.maskgit.layers", "1"]
    args += ["--prior.maskgit.heads", "2"]
    proc = subprocess.Popen(
        cli_args(*args), env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ckpt = run_path / "state" / "prior-maskgit" / "last.ckpt"
    assert _wait_for(ckpt, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err and "interrupted" in err
    assert not (run_path / "prior-maskgit.safetensors").exists()
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] > 0


def test_a_stage_gives_ctrl_c_back_after_lightning_ignored_it(run_copy, monkeypatch):
    """Lightning answers a KeyboardInterrupt by ignoring SIGINT and exiting; after the stage the
    process must answer Ctrl-C again (a Python session, the next test)."""
    import lightning as L

    from brainvq.errors import Interrupted
    from brainvq.training.prior import train_prior

    run_path, root = run_copy

    def fit_like_lightning_on_ctrl_c(self, *a, **k):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(1)

    monkeypatch.setattr(L.Trainer, "fit", fit_like_lightning_on_ctrl_c)
    cfg = tiny_config()
    cfg.prior.kind, cfg.prior.max_minutes = "maskgit", 0.0
    with pytest.raises(Interrupted):
        train_prior(str(run_path), cfg, "maskgit", data=str(root), progress=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
