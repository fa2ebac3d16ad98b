"""One writer per run folder: RUN/.lock names the command that writes the run.

A command that writes a run holds the lock while it runs (``run_lock``): the file is made whole
under a private name and linked into place, which fails if a lock is there already, so two
commands never both hold it. It holds the holder's PID, host, start and command line, and a token
that the holder exports as BRAINVQ_RUN_LOCK: the processes it starts (Lightning's DDP workers)
inherit the token and run beside it; so do the ranks > 0 of a launcher such as torchrun or SLURM.
A second writer is refused with a RunError naming the running command. A lock whose process is
gone (same host, PID not running, or running since another time: a reused PID) is taken over with
a one-line note. The lock goes when the holder ends: normally, on an error or on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path

from brainvq.errors import RunError

LOCK_NAME = ".lock"
TOKEN_ENV = "BRAINVQ_RUN_LOCK"
# set > 0 in every process of a multi-process job but its first (torchrun, Lightning, SLURM)
RANK_ENVS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lock."""

    pid: int
    host: str
    command: str
    token: str
    since: str
    start: str = ""  # the process's start time in clock ticks since boot (Linux), "" elsewhere

    def describe(self) -> str:
        """'`brainvq train-vqvae ...` (pid 12, host h, since 2026-01-01 18:00:00 UTC)'."""
        return f"`{self.command}` (pid {self.pid} on {self.host}, since {self.since})"

    def running(self) -> bool:
        """True unless this is the lock's host and its process is gone."""
        if self.host != socket.gethostname():
            return True  # cannot tell: take it as running
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's live process
        start = process_start(self.pid)
        return not (self.start and start and start != self.start)


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot, from /proc ("" where unknown)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""  # field 22 of stat, counted after "pid (comm)"


def this_process(command: str) -> Holder:
    """A Holder for the running process and ``command``, with a fresh token."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    pid = os.getpid()
    host = socket.gethostname()
    return Holder(pid, host, command, secrets.token_hex(8), since, process_start(pid))


def read_holder(lock: Path) -> Holder | None:
    """The Holder a lock file names; None when there is none or it cannot be read."""
    try:
        return Holder(**json.loads(lock.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def secondary_rank(env: MutableMapping[str, str]) -> bool:
    """True in a process that a multi-process job started beside its first (rank > 0)."""
    for key in RANK_ENVS:
        value = env.get(key, "")
        if value.isdigit() and int(value) > 0:
            return True
    return False


def _place(lock: Path, me: Holder) -> bool:
    """Put ``me`` in place as the lock, whole; False if a lock is there already."""
    text = json.dumps(asdict(me)) + "\n"
    tmp = lock.with_name(f"{LOCK_NAME}.{me.pid}.{me.token}")
    tmp.write_text(text)
    try:
        os.link(tmp, lock)  # fails if the lock exists: only one of two racers gets it
        return True
    except FileExistsError:
        return False
    except OSError as e:  # a file system without hard links: create it exclusively instead
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        return _create_exclusive(lock, text)
    finally:
        tmp.unlink(missing_ok=True)


def _create_exclusive(lock: Path, text: str) -> bool:
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _drop_stale(lock: Path, stale: Holder) -> None:
    """Remove a stale lock, unless another process has replaced it meanwhile."""
    aside = lock.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return  # another process removed it first
    moved = read_holder(aside)
    if moved is None or moved.token == stale.token:
        aside.unlink(missing_ok=True)
        return
    with contextlib.suppress(FileExistsError):  # a live lock taken meanwhile: put it back
        os.link(aside, lock)
    aside.unlink(missing_ok=True)


def acquire(folder: Path, command: str, note: Callable[[str], None]) -> Holder:
    """Take RUN/.lock for ``command`` or raise RunError naming the running holder."""
    lock = folder / LOCK_NAME
    me = this_process(command)
    for _ in range(5):  # each round takes the lock, or finds it held, or removes a stale one
        held = read_holder(lock)
        if held is None and lock.exists():
            raise RunError(
                f"{lock}: an unreadable lock: another command may be writing this run; "
                "if none is, delete the file and rerun"
            )
        if held is None:
            if _place(lock, me):
                return me
            continue  # another command took it first: see who
        if held.running():
            fix = "wait for it to end (or stop it) and rerun"
            if held.host != me.host:
                fix += f"; if it is no longer running there, delete {lock}"
            raise RunError(f"{folder}: in use by {held.describe()}; {fix}")
        note(f"{lock}: {held.describe()} is no longer running; taking over its lock")
        _drop_stale(lock, held)
    raise RunError(f"{lock}: could not take the lock; rerun")


def release(folder: Path, me: Holder) -> None:
    """Remove RUN/.lock if it is still ``me``'s."""
    lock = folder / LOCK_NAME
    held = read_holder(lock)
    if held is not None and held.token == me.token:
        lock.unlink(missing_ok=True)


def _stderr_note(line: str) -> None:
    print(f"brainvq: note: {line}", file=sys.stderr)


@contextlib.contextmanager
def run_lock(
    path: str | Path,
    command: str,
    create: bool = False,
    env: MutableMapping[str, str] = os.environ,
    note: Callable[[str], None] = _stderr_note,
) -> Iterator[Holder | None]:
    """Hold the run folder's lock while the block runs (RunError if another command holds it).

    ``create``: make the folder if it is missing (removed again at the end if left empty);
    otherwise a missing folder is not locked and the command says what it misses. Yields the
    Holder, or None where this process runs under the holder (its token, or a rank > 0)."""
    folder = Path(path).expanduser()
    held = read_holder(folder / LOCK_NAME)
    inherited = held is not None and env.get(TOKEN_ENV) == held.token
    if secondary_rank(env) or inherited or (not folder.is_dir() and not create):
        yield None
        return
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        me = acquire(folder, command, note)
    except OSError as e:
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise RunError(
            f"{folder}: run folder is not writable ({e.strerror}); choose another --run"
        ) from None
    before = env.get(TOKEN_ENV)
    env[TOKEN_ENV] = me.token
    try:
        yield me
    finally:
        if before is None:
            env.pop(TOKEN_ENV, None)
        else:
            env[TOKEN_ENV] = before
        release(folder, me)
        if made:
            with contextlib.suppress(OSError):  # only if nothing else was written
                folder.rmdir()
