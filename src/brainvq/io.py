"""Files that are never torn: every write goes to a temporary file beside its target, then a rename.

A crash, a kill or a full disk at any moment leaves either the old file or the new one. All of
brainvq's writes go through ``atomic_path``: weights, checkpoints, caches, logs, figures, JSON.
This module needs only the standard library (the CLI imports it through brainvq.config, so that
`brainvq --help` starts at once): the array and weight writers that build on ``atomic_path`` sit
with what they write (``brainvq.data.images.atomic_save_npy``,
``brainvq.runs.atomic_save_safetensors``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from brainvq.errors import RunError


def _write_failed(path: Path, e: OSError) -> RunError:
    return RunError(
        f"{path}: could not write ({e.strerror or e}); free disk space or pick a "
        "writable --run, then run the same command again"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename it onto
    ``path``, else remove it. A failed write becomes a RunError naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError as e:
        raise _write_failed(path, e) from None
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_failed(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to path atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file (ties a derived file to the weights it was made from)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
