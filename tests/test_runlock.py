"""One writer per run folder (brainvq.runlock): a second writer is refused before it touches the
run, readers work beside a writer, a dead holder's lock is taken over, the lock goes on errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainvq.errors import RunError
from brainvq.runlock import LOCK_NAME, TOKEN_ENV, Holder, process_start, read_holder, run_lock

from .conftest import CLI_ENV, HANG_GUARD_S, TINY_OVERRIDES, brainvq, tiny
from .priors.test_priors import ar_prior

HOLDER = "brainvq train-vqvae --run RUN --note 'the first writer'"
# a process that takes the lock through the library, says so in a file, and holds it until its
# stdin closes
HOLD = f"""
import sys
from pathlib import Path
from brainvq.runlock import run_lock
with run_lock(sys.argv[1], {HOLDER!r}):
    Path(sys.argv[2]).write_text("held")
    sys.stdin.read()
"""


def snapshot(folder: Path) -> dict[str, int]:
    """Every path under folder (the folder too) with its mtime."""
    paths = [folder, *folder.rglob("*")]
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in paths}


@pytest.fixture
def lm_run(run_copy):
    """A private tiny run with a VQ-VAE and a transformer prior, and its data."""
    from brainvq.training.prior import train_prior

    run, root = run_copy
    train_prior(str(run), ar_prior("transformer"), data=str(root), progress=False)
    return run, root


def test_a_second_writer_is_refused_in_one_line_before_it_touches_the_run(lm_run, tmp_path):
    run, root = lm_run
    ready = tmp_path / "ready"
    env = {**CLI_ENV, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run), str(ready)], stdin=subprocess.PIPE, env=env
    )
    try:
        deadline = time.time() + HANG_GUARD_S
        while not ready.exists() and holder.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the holder never took the lock"
        assert read_holder(run / LOCK_NAME).pid == holder.pid
        before = snapshot(run)
        one = str(next((root / "keras_png_slices_test").glob("*.png")))
        writers = [
            tiny("train-vqvae", root, run),
            ["train-prior", "--run", str(run), "--kind", "transformer", "--quiet"],
            ["evaluate", "--run", str(run), "--quiet"],
            ["sample", "--run", str(run), "-n", "2", "--quiet"],
            ["sample", "--run", str(run), "-n", "2", "--out", str(run / "mine"), "--quiet"],
            ["anomaly", "--run", str(run), one, "--out", str(tmp_path / "maps"), "--quiet"],
            ["report", "--run", str(run)],
            tiny("run", root, run),
        ]
        for args in writers:
            r = brainvq(*args, check=False)
            assert r.returncode == 2, (args, r.stderr)
            assert r.stdout == "" and len(r.stderr.splitlines()) == 1, (args, r.stderr)
            assert f"in use by `{HOLDER}` (pid {holder.pid}" in r.stderr, r.stderr
        assert snapshot(run) == before
        # readers work beside the writer
        out = tmp_path / "elsewhere"
        brainvq("sample", "--run", str(run), "-n", "2", "--out", str(out), "--quiet")
        assert len(list(out.glob("sample_*.png"))) == 2
        assert "bits/code" in brainvq("score", "--run", str(run), one).stdout
        assert "[train]" in brainvq("config", "--config", "quick").stdout
    finally:
        holder.communicate(timeout=HANG_GUARD_S)
    assert holder.returncode == 0 and not (run / LOCK_NAME).exists()
    assert "report ->" in brainvq("report", "--run", str(run)).stdout  # free again


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    return int(done.stdout)


@pytest.mark.parametrize("reused", [False, True], ids=["gone", "pid-reused"])
def test_a_lock_whose_process_is_gone_is_taken_over_with_a_note(run_copy, reused):
    run, _ = run_copy
    # gone: a process that has ended; reused: this live process's PID, started at another time
    pid, start = (os.getpid(), "1") if reused else (_dead_pid(), "")
    stale = Holder(pid, socket.gethostname(), "brainvq run --run OLD", "t0", "earlier", start)
    (run / LOCK_NAME).write_text(json.dumps(stale.__dict__))
    r = brainvq("report", "--run", str(run))
    notes = [line for line in r.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and "`brainvq run --run OLD`" in notes[0], r.stderr
    assert "no longer running; taking over its lock" in notes[0]
    assert (run / "report.html").exists() and not (run / LOCK_NAME).exists()


def test_the_lock_goes_after_an_error_and_a_folder_made_for_it_goes_too(run_copy, tmp_path):
    run, root = run_copy
    bad = brainvq("evaluate", "--run", str(run), "--eval.n_samples", "0", check=False)
    assert bad.returncode == 2 and "eval.n_samples" in bad.stderr
    assert not (run / LOCK_NAME).exists()
    new = tmp_path / "new"
    bad = brainvq("train-vqvae", "--data", str(tmp_path / "nothing"), "--run", str(new),
                  *TINY_OVERRIDES, check=False)  # fmt: skip
    assert bad.returncode == 2 and not new.exists()


def test_the_holders_own_processes_and_later_ranks_run_beside_it(tmp_path):
    folder, env = tmp_path / "run", {}
    with run_lock(folder, "brainvq run --run R", create=True, env=env) as me:
        lock = read_holder(folder / LOCK_NAME)
        assert lock == me and lock.start == process_start(os.getpid())
        assert env[TOKEN_ENV] == me.token  # what Lightning's DDP workers inherit
        with run_lock(folder, "worker", env=dict(env)) as child:
            assert child is None
        for rank in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"):
            with run_lock(folder, "rank 1", env={rank: "1"}) as other:
                assert other is None
        with pytest.raises(RunError, match="in use by `brainvq run --run R`"):
            with run_lock(folder, "another", env={"RANK": "0"}):
                pass
        assert read_holder(folder / LOCK_NAME) == me
    assert TOKEN_ENV not in env and not folder.exists()  # made for the lock, left empty: gone
