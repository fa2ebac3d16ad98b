"""Score the code maps a device run drew (bench/device_prior_variant.py) on this machine.

Usage: python bench/score_device_samples.py OUT/NAME.tar [OUT/NAME2.tar ...]
           [--run runs/priors-bench] [--data ../shared/data/brain-mri-128] [--results FILE]

Each tar (or its NAME.tar.part0, part1, ... joined in order) holds samples.npz with one set of 100
code maps per snapshot and temperature (codes_[mM_]tTT). Every set is decoded with the VQ-VAE of
--run (the one the device run's base folder was copied from: same codebook) and scored with
brainvq.evaluation.realism.score_samples against the training split, twice: with the test split as the
real reference (the numbers `brainvq evaluate` reports) and with the validation split, which is
the one to pick a snapshot or temperature by, so that the test numbers stay unseen by the choice.
Prints one table; with --results appends it, with the machine, to that markdown file.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch

from brainvq.data import load_splits
from brainvq.evaluation.realism import reference_stats, score_samples
from brainvq.runs import load_run

sys.path.insert(0, str(Path(__file__).parent))
from common import DEFAULT_DATA, append_result, data_missing, result_block  # noqa: E402

COLUMNS = [
    "variant",
    "minutes (optimizer steps)",
    "T",
    "NN-SSIM",
    "realism (test)",
    "realism (validate)",
    "diversity (real test)",
    "copies",
    "code-hist",
]


def read_tar(path: Path) -> dict:
    """samples.npz of a device tar, its parts joined when it came back split."""
    if path.exists():
        data = path.read_bytes()
    else:
        parts = sorted(path.parent.glob(path.name + ".part*"), key=lambda p: int(p.suffix[5:]))
        if not parts:
            raise SystemExit(f"{path}: neither it nor {path.name}.part0 exists")
        data = b"".join(p.read_bytes() for p in parts)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        raw = tar.extractfile("samples.npz").read()
    return dict(np.load(io.BytesIO(raw)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tars", nargs="+", type=Path)
    ap.add_argument("--run", default="runs/priors-bench")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--results", type=Path, help="markdown file to append the table to")
    args = ap.parse_args()
    if data_missing(args.data):
        return
    run = load_run(args.run)
    arrays = load_splits(args.data, run.config.data, progress=False)
    train = np.asarray(arrays["train"])
    refs = {s: reference_stats(train, np.asarray(arrays[s])) for s in ("test", "validate")}
    test_codes = np.load(run.dir.path / "codes" / "test.npy").astype(np.int64)
    k = run.config.vqvae.codebook_size
    rows = []
    for path in args.tars:
        d = read_tar(path)
        snaps = {f"m{s['minutes']:g}_": s for s in json.loads(str(d.get("snapshots", "[]")))}
        final = json.loads(str(d["summary"]))
        for key in sorted(k_ for k_ in d if k_.startswith("codes_")):
            tag = key[len("codes_") : key.rindex("t")]
            info = snaps.get(tag, final)
            minutes = tag[1:-1] if tag else "end"
            codes = torch.from_numpy(d[key]).long()
            images = run.vqvae.decode(codes, 50)[:, 0].numpy()
            s = {}
            for split, ref in refs.items():
                s[split], _ = score_samples(
                    images, train, None, codes.numpy(), test_codes, k, reference=ref
                )
            t = s["test"]
            rows.append(
                (
                    path.name.split(".")[0],
                    f"{minutes} ({info.get('steps', '?')})",
                    int(key[key.rindex("t") + 1 :]) / 10,
                    f"{t['nn_ssim_mean']:.3f}",
                    f"{t['realism_ratio']:.3f}",
                    f"{s['validate']['realism_ratio']:.3f}",
                    f"{t['diversity_samples']:.3f} ({t['diversity_real_test']:.3f})",
                    t["copies"],
                    f"{t['code_hist_distance']:.3f}",
                )
            )
            print(" | ".join(map(str, rows[-1])), flush=True)
    if args.results:
        text = (
            f"\nDevice runs {', '.join(p.name for p in args.tars)} scored here against {args.data}"
            f" with the VQ-VAE of {args.run}; 100 maps each, seed 0. Optimizer steps as Lightning"
            " counts them (a DCGAN iteration steps D and G: two).\n"
            f"`python bench/score_device_samples.py {' '.join(map(str, args.tars))}`"
        )
        block = result_block("Device samples scored", text, COLUMNS, rows)
        append_result(args.results, "Device runs scored", block)


if __name__ == "__main__":
    main()
