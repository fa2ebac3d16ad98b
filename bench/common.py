"""What every benchmark shares: the machine line, result blocks, the results files, the data check."""

from __future__ import annotations

import datetime
import platform
import shlex
import sys
from pathlib import Path

import torch

from brainvq.training.hardware import cpu_has_bf16

DEFAULT_DATA = "../shared/data/brain-mri-128"


def data_missing(data: str) -> bool:
    """True (after saying so on stderr) when the benchmark's data folder is absent: skip cleanly."""
    if Path(data).exists():
        return False
    print(f"skip: {data} not found", file=sys.stderr)
    return True


def add_run_args(ap) -> None:
    """--run (default runs/priors-bench) and --data (default the development slices): the run
    whose priors a sample benchmark scores, and its data."""
    ap.add_argument("--run", default="runs/priors-bench", help="run folder (runs/priors-bench)")
    ap.add_argument("--data", default=DEFAULT_DATA, help=f"data folder ({DEFAULT_DATA})")


def load_run_splits(args):
    """(run, {split: uint8 slices}) for add_run_args' --run and --data; None (after saying so)
    when the data is absent, so the benchmark skips cleanly."""
    from brainvq.data import load_splits
    from brainvq.runs import load_run

    if data_missing(args.data):
        return None
    run = load_run(args.run)
    return run, load_splits(args.data, run.config.data, progress=False)


def command() -> str:
    """The command line this benchmark was started with, as `python bench/NAME.py ARGS` (quoted)."""
    return "python " + shlex.join([f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def machine() -> str:
    """One line describing the machine."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, BF16={cpu_has_bf16()}, {gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def result_block(
    heading: str, text: str, columns: list[str] | None = None, rows=(), where: str = ""
) -> str:
    """A markdown block: '## HEADING, date', the machine (this one unless `where` says), text,
    then an optional table."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    block = f"\n## {heading}, {when}\n\nMachine: {where or machine()}\n{text}\n"
    if columns:
        block += "\n" + markdown_table(columns, rows)
    return block


def markdown_table(columns: list[str], rows) -> str:
    """A markdown table: header, rule, one line per row."""
    head = f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n"
    return head + "".join(f"| {' | '.join(map(str, r))} |\n" for r in rows)


def append_result(path: Path, title: str, block: str) -> None:
    """Append a result block to a markdown file (created with a title), and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(f"# {title}\n\nWritten by bench/{Path(sys.argv[0]).name}.\n")
    with path.open("a") as f:
        f.write(block)
    print(block)
