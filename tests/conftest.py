"""Fixtures: synthetic brain-like slices written to disk in each supported layout, tiny configs,
and the `brainvq` command run in this process (or, where a test needs a process of its own to
signal or kill, in a subprocess).

Tests never depend on wall-clock speed: tiny runs end on epochs or steps, never on minutes, and a
subprocess timeout only guards against a hang (HANG_GUARD_S). Nor on the CPU's flags: every config
a test builds states its training precision, TEST_PRECISION (fp32 unless the environment's
BRAINVQ_TEST_PRECISION says otherwise: `auto` runs the suite with the precision this machine would
pick for a user, `bf16` with bf16 autocast)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

# as `brainvq` does before torch loads (brainvq.cli.share_cpu): OpenMP threads that wait sleep
# instead of spinning, which keeps this process fast beside other CPU-bound jobs
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
from PIL import Image

from brainvq.config import Config

TEST_PRECISION = os.environ.get("BRAINVQ_TEST_PRECISION", "32")
if TEST_PRECISION not in ("32", "auto", "bf16", "16"):
    raise pytest.UsageError(
        f"BRAINVQ_TEST_PRECISION={TEST_PRECISION!r}: use 32 (default), auto, bf16 or 16"
    )

SHARED_128 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-mri-128"


def fake_slice(rng: np.random.Generator, size: int) -> np.ndarray:
    """A uint8 image with a bright ellipse, a darker inner ellipse and noise (brain-ish)."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    a, b = rng.uniform(0.28, 0.42, 2)
    outer = (xx / a) ** 2 + (yy / b) ** 2 < 1
    inner = (xx / (a * 0.4)) ** 2 + (yy / (b * 0.5)) ** 2 < 1
    img = outer * rng.uniform(150, 220) - inner * 80 + rng.normal(0, 8, (size, size)) * outer
    return np.clip(img, 0, 255).astype(np.uint8)


def write_slices(
    folder: Path, n: int, size: int, seed: int = 0, prefix: str = "case"
) -> list[Path]:
    """Write n fake slices as PNGs named like the OASIS files, each of its own subject
    (case_{1000 * seed + i}: sets written with different seeds share no subject)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}_{1000 * seed + i:03d}_slice_0.nii.png"
        Image.fromarray(fake_slice(rng, size)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(autouse=True)
def _default_sigint():
    """Every test starts with Ctrl-C as a fresh process has it (Python's default handler): a
    test that leaves SIGINT ignored (Lightning does so on a KeyboardInterrupt it catches) must
    not decide how a later test's Ctrl-C behaves."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test decodes into its own cache folder."""
    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def one_thread():
    """One torch thread for the test: with tiny images it is as fast, and far faster on a busy
    shared machine (use as ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def keras_root(tmp_path) -> Path:
    """keras_png_slices_{train,validate,test} of 32x32 fakes, plus a seg folder to ignore."""
    root = tmp_path / "keras"
    write_slices(root / "keras_png_slices_train", 24, 32, seed=1)
    write_slices(root / "keras_png_slices_validate", 4, 32, seed=2)
    write_slices(root / "keras_png_slices_test", 6, 32, seed=3)
    write_slices(root / "keras_png_slices_seg_train", 5, 32, seed=4)
    return root


def tiny_config(image_size: int = 32, **train) -> Config:
    """A model small enough to train in seconds on 2 CPU cores."""
    cfg = Config()
    cfg.data.image_size = image_size
    v = cfg.vqvae
    v.hidden, v.res_hidden, v.n_res_blocks, v.codebook_size, v.code_dim = 16, 8, 1, 32, 8
    t = cfg.train
    t.batch_size, t.max_epochs, t.max_minutes, t.log_every_n_steps = 4, 2, 0.0, 1
    t.max_steps = 0  # tiny runs end on epochs unless a test gives steps
    t.precision = TEST_PRECISION
    for k, val in train.items():
        setattr(t, k, val)
    cfg.eval.n_samples = 8
    return cfg.validate()


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    """A tiny trained VQ-VAE run folder (32x32 images, 8x8 code maps, K=32) and its data."""
    from brainvq.training.vqvae import train_vqvae

    base = tmp_path_factory.mktemp("vq")
    root = base / "keras"
    write_slices(root / "keras_png_slices_train", 24, 32, seed=1)
    write_slices(root / "keras_png_slices_validate", 4, 32, seed=2)
    write_slices(root / "keras_png_slices_test", 6, 32, seed=3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINVQ_CACHE", str(base / "cache"))
        train_vqvae(str(root), str(base / "vq"), tiny_config(max_epochs=1), progress=False)
    return base / "vq", root


@pytest.fixture
def run_copy(vq_run, tmp_path):
    """A private copy of the tiny run, so each test trains its own prior."""
    src, root = vq_run
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst, root


TINY_OVERRIDES = [
    "--data.image_size",
    "32",
    "--vqvae.hidden",
    "16",
    "--vqvae.res_hidden",
    "8",
    "--vqvae.n_res_blocks",
    "1",
    "--vqvae.codebook_size",
    "32",
    "--vqvae.code_dim",
    "8",
    "--train.batch_size",
    "4",
    "--train.max_minutes",
    "0",
    "--train.max_steps",
    "0",
    "--train.log_every_n_steps",
    "1",
    "--train.precision",
    TEST_PRECISION,
    "--prior.max_minutes",
    "0",
    "--prior.max_epochs",
    "1",
    "--prior.dcgan.steps_per_epoch",
    "4",
    "--prior.batch_size",
    "4",
    "--prior.dcgan.latent_dim",
    "8",
    "--prior.dcgan.g_channels",
    "16",
    "--prior.dcgan.d_channels",
    "8",
    "--prior.pixelcnn.channels",
    "8",
    "--prior.pixelcnn.layers",
    "2",
    "--prior.pixelcnn.kernel",
    "3",
    "--prior.transformer.dim",
    "16",
    "--prior.transformer.layers",
    "1",
    "--prior.transformer.heads",
    "2",
    "--prior.maskgit.dim",
    "16",
    "--prior.maskgit.layers",
    "1",
    "--prior.maskgit.heads",
    "2",
    "--eval.n_samples",
    "6",
    "--tune.max_minutes",
    "0",
]


CLI_ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
HANG_GUARD_S = 1800  # a subprocess still running after this is hung, not slow


def cli_args(*args: str) -> list[str]:
    """The command line that runs `brainvq ARGS` with this interpreter."""
    return [sys.executable, "-m", "brainvq.cli", *args]


def brainvq(*args: str, check: bool = True, subprocess_: bool = False):
    """Run `brainvq ARGS` and return its exit code, stdout and stderr (a CompletedProcess); with
    check, fail the test on a non-zero exit.

    It runs in this process (brainvq.cli.main, stdout and stderr captured, the warning filters
    restored after), which spares each call the seconds of a fresh interpreter importing torch;
    subprocess_=True runs it as its own process (multi-process training needs that)."""
    if subprocess_:
        r = subprocess.run(
            cli_args(*args), capture_output=True, text=True, env=CLI_ENV, timeout=HANG_GUARD_S
        )
    else:
        from brainvq.cli import main

        out, err = io.StringIO(), io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(out):
            with contextlib.redirect_stderr(err):
                try:
                    code = main(list(args))
                except SystemExit as e:  # argparse's own errors and --help
                    code = e.code if isinstance(e.code, int) else 2
        r = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    if check and r.returncode != 0:
        raise AssertionError(f"brainvq {args} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def tiny(command: str, data, run, *extra: str) -> list[str]:
    """`COMMAND --data DATA --run RUN --quiet` with the tiny model's overrides, then extra."""
    return [command, "--data", str(data), "--run", str(run), "--quiet", *TINY_OVERRIDES, *extra]
