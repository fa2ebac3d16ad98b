"""Benchmark: the demo alone and beside a CPU-bound job ends with the same brains.

Usage: python bench/demo_budget.py [--out /tmp/demo-budget] [--config quick] [--hogs 1]
           [--set SECTION.KEY=VALUE ...]

Runs the demo's command (`brainvq run --data default --config quick`, what scripts/demo.sh runs)
twice in fresh run folders: once with nothing started beside it ("alone": the machine's other load
is recorded, not removed) and once beside --hogs busy Python loops (`while True: pass`, each one
CPU-bound thread, at the benchmark's own nice level). The quick preset ends every training stage by
its step budget, so the second run should take longer and end with the same weights, the same
samples and the same metrics. For each run it records the wall time, the CPU time of the demo's
process, the load average seen during it, how each stage ended (RUN/state/*/finished.json), the
sample metrics and a digest of the weights and the sample PNGs; then checks what issue 18 asks of
the demo: realism ratio >= 0.8, no copies, diversity within 0.05 of the real test slices', and the
two runs' sample metrics within 0.01 of each other.

Writes bench/results/demo_budget.md (with the machine and the command), and to docs/demo/ the
alone run's metrics.json, both runs' 16-sample grids (the report's first picture) and, where
Chromium is installed, the first screen of the alone run's report.html; docs/results.md shows them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import append_result, result_block

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "demo_budget.md"
RECORD = HERE.parent / "docs" / "demo"
KIND = "maskgit"  # the quick preset's prior.kind
SAMPLE_KEYS = ("realism_ratio", "nn_ssim_mean", "diversity_samples", "diversity_real_test")
SAMPLE_KEYS += ("copies", "code_hist_distance", "n_samples")


def digest(paths: list[Path]) -> str:
    """A short sha256 over the bytes of the files, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def tensor_digest(paths: list[Path]) -> str:
    """A short sha256 over the tensors of safetensors files (names, dtypes, shapes, values, in
    name order): equal weights give equal digests even where two files' headers are laid out
    differently (their bytes then differ)."""
    from safetensors import safe_open

    h = hashlib.sha256()
    for p in paths:
        with safe_open(str(p), "np") as f:
            for k in sorted(f.keys()):
                t = f.get_tensor(k)
                h.update(f"{k} {t.dtype} {t.shape}".encode())
                h.update(t.tobytes())
    return h.hexdigest()[:12]


def weight_files(folder: Path) -> list[Path]:
    return [folder / "vqvae.safetensors", folder / f"prior-{KIND}.safetensors"]


def compare_weights(folders: list[Path]) -> None:
    """Append a block: each run folder's weight tensors digest (run after a demo pair whose
    file-byte digests differed)."""
    rows = [[str(f), digest(weight_files(f)), tensor_digest(weight_files(f))] for f in folders]
    same = len({r[2] for r in rows}) == 1
    text = (
        f"\nThe weights of the run folders compared tensor by tensor: "
        f"{'the same' if same else 'DIFFERENT'}. File bytes can differ where the weights do not "
        "(safetensors header layout).\n\nCommand: `python bench/demo_budget.py --compare "
        + " ".join(str(f) for f in folders)
        + "`\n"
    )
    cols = ["run folder", "file bytes sha", "tensors sha"]
    block = result_block("Demo weights, tensor by tensor", text, cols, rows)
    append_result(RESULTS, "The demo alone and beside a CPU-bound job", block)


def run_demo(folder: Path, config: str, sets: list[str], hogs: int) -> dict:
    """One demo run in ``folder`` beside ``hogs`` busy loops; what it took and what it made."""
    shutil.rmtree(folder, ignore_errors=True)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    loads: list[float] = []
    done = threading.Event()

    def sample_load() -> None:
        while not done.wait(5.0):
            loads.append(os.getloadavg()[0])

    watcher = threading.Thread(target=sample_load, daemon=True)
    cmd = [sys.executable, "-m", "brainvq.cli", "run", "--data", "default", "--run", str(folder)]
    cmd += ["--config", config, "--quiet", *(f"--set={s}" for s in sets)]
    log = folder.with_suffix(".log")
    try:
        watcher.start()
        t0 = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    finally:
        done.set()
        for b in busy:
            b.kill()
            b.wait()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the demo failed in {folder}; see {log}:\n{log.read_text()[-2000:]}")
    metrics = json.loads((folder / "metrics.json").read_text())
    finished = {
        p.parent.name: json.loads(p.read_text())
        for p in sorted((folder / "state").glob("*/finished.json"))
    }
    samples = sorted((folder / "samples").glob("sample_*.png"))
    return {
        "folder": folder,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load": sum(loads) / len(loads) if loads else os.getloadavg()[0],
        "finished": finished,
        "samples": metrics[f"samples-{KIND}"],
        "vqvae": metrics["vqvae"],
        "metrics": metrics,
        "weights": tensor_digest(weight_files(folder)),
        "pngs": digest(samples),
        "warnings": [ln for ln in log.read_text().splitlines() if ln.startswith("warning:")],
    }


def screenshot(report: Path, png: Path) -> bool:
    """The first screen (1280x800) of a report.html in headless Chromium, as a PNG; False where
    Chromium is not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        flags += [f"--user-data-dir={profile}", "--window-size=1280,800", "--hide-scrollbars"]
        subprocess.run(
            [chromium, *flags, f"--screenshot={png}", report.resolve().as_uri()],
            capture_output=True,
            timeout=300,
        )
    return png.exists()


def stages(r: dict) -> str:
    return ", ".join(
        f"{name} {f['steps']} steps ({f['stopped_by']}, {f['seconds']:.0f} s)"
        for name, f in r["finished"].items()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/demo-budget", help="where the two run folders go")
    ap.add_argument("--config", default="quick", help="preset or TOML file (quick)")
    ap.add_argument("--hogs", type=int, default=1, help="busy loops beside the second run (1)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--compare", nargs="+", type=Path, metavar="RUN", help="only compare weights")
    args = ap.parse_args()
    if args.compare:
        return compare_weights(args.compare)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"alone": 0, f"beside {args.hogs} busy loop(s)": args.hogs}
    runs = {}
    for i, (name, hogs) in enumerate(settings.items()):
        runs[name] = run_demo(out / f"run{i}", args.config, args.set, hogs)
        print(f"{name}: {runs[name]['wall_s']:.0f} s wall; {stages(runs[name])}", flush=True)
    a, b = runs.values()
    gap = max(abs(float(a["samples"][k]) - float(b["samples"][k])) for k in SAMPLE_KEYS)
    s = a["samples"]
    checks = {
        "realism ratio >= 0.8": all(r["samples"]["realism_ratio"] >= 0.8 for r in (a, b)),
        "0 copies": all(r["samples"]["copies"] == 0 for r in (a, b)),
        "diversity within 0.05 of real": all(
            abs(r["samples"]["diversity_samples"] - r["samples"]["diversity_real_test"]) <= 0.05
            for r in (a, b)
        ),
        "sample metrics agree within 0.01": gap <= 0.01,
        "same weights": a["weights"] == b["weights"],
        "same sample PNGs": a["pngs"] == b["pngs"],
        "no warning": not a["warnings"] and not b["warnings"],
    }
    rows = []
    for name, r in runs.items():
        m = r["samples"]
        rows.append(
            [
                name,
                f"{r['wall_s'] / 60:.1f}",
                f"{r['cpu_s'] / 60:.1f}",
                f"{r['load']:.1f}",
                stages(r),
                f"{r['vqvae']['ssim']['mean']:.4f}",
                f"{m['realism_ratio']:.4f}",
                f"{m['nn_ssim_mean']:.4f}",
                f"{m['diversity_samples']:.4f} ({m['diversity_real_test']:.4f})",
                f"{m['copies']} of {m['n_samples']}",
                r["weights"],
                r["pngs"],
                "; ".join(r["warnings"]) or "none",
            ]
        )
    cols = ["setting", "wall min", "CPU min", "load avg", "stages (ended by, s)", "VQ-VAE SSIM"]
    cols += ["realism", "NN-SSIM", "diversity (real)", "copies", "tensors sha", "PNGs sha"]
    cols += ["warnings"]
    what = " ".join(f"--set {x}" for x in args.set)
    text = (
        f"\nThe demo (`brainvq run --data default --config {args.config} {what}`) twice, in fresh "
        f"run folders: alone, then beside {args.hogs} busy Python loop(s); run niced, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. Load avg: the 1-minute "
        "load average seen every 5 s during the run (the machine is shared). Largest difference "
        f"between the two runs' sample metrics ({', '.join(SAMPLE_KEYS)}): {gap:.4g}. Checks: "
        + "; ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items())
        + f". Real test slices: NN-SSIM {s['real_test_nn_ssim_mean']:.4f}. Grids: "
        "docs/demo/grid_alone.png, docs/demo/grid_busy.png.\n\n"
        f"Command: `nice -n 10 env OMP_NUM_THREADS=1 python bench/demo_budget.py --hogs "
        f"{args.hogs}{' ' + what if what else ''}`\n"
    )
    RECORD.mkdir(parents=True, exist_ok=True)
    (RECORD / "metrics.json").write_text(json.dumps(a["metrics"], indent=1) + "\n")
    for tag, r in zip(("alone", "busy"), (a, b), strict=True):
        shutil.copyfile(
            r["folder"] / "figures" / f"{KIND}_sample_grid.png", RECORD / f"grid_{tag}.png"
        )
    screenshot(a["folder"] / "report.html", RECORD / "report_first_screen.png")
    append_result(
        RESULTS, "The demo alone and beside a CPU-bound job", result_block("Demo", text, cols, rows)
    )


if __name__ == "__main__":
    main()
