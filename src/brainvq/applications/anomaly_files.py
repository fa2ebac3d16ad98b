"""`brainvq anomaly`'s files: slices in, a panel (slice, healed, map over the slice) per slice,
its map as .npy and scores.csv out, the console summary, and the report's "Anomaly maps" section
(the maps themselves: brainvq.applications.anomaly)."""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image

from brainvq.applications.anomaly import (
    FLAG_PERCENTILE,
    anomaly_maps,
    load_priors,
    settings_for,
    test_reference,
)
from brainvq.config import AnomalyConfig
from brainvq.data import decode_slice, named_slice_files, to_square
from brainvq.io import atomic_write_bytes, atomic_write_text
from brainvq.runs import RunDir, load_run

# ---- files in, PNGs / maps / CSV out ---------------------------------------------------------


def from_square(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo brainvq.data.to_square: an (S, S) float array resized (bilinear) to the padded square
    of a slice of ``shape`` and cropped back to that shape."""
    h, w = shape
    side = max(h, w)
    out = np.asarray(
        Image.fromarray(np.asarray(image, dtype=np.float32), mode="F").resize(
            (side, side), Image.BILINEAR
        )
    )
    top, left = (side - h) // 2, (side - w) // 2
    return out[top : top + h, left : left + w]


def heat_overlay(image: np.ndarray, amap: np.ndarray, scale: float) -> np.ndarray:
    """An RGB uint8 picture of a grey slice in [0, 1] with the map over it (inferno colours,
    opaque where map >= scale, clear where 0)."""
    grey = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=2)
    level = np.clip(amap / scale, 0, 1)
    colour = colormaps["inferno"](level)[..., :3]
    alpha = (0.85 * np.sqrt(level))[..., None]
    return np.round((grey * (1 - alpha) + colour * alpha) * 255).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def _names(files: list[Path]) -> list[str]:
    """A distinct output name per file: its stem (".nii" dropped), numbered when stems repeat."""
    stems = [f.name.split(".")[0] for f in files]
    seen: dict[str, int] = {}
    names = []
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
        names.append(s if stems.count(s) == 1 else f"{s}_{seen[s]}")
    return names


def anomaly_files(
    run_path: str | Path,
    paths: list[str],
    out: str | Path | None = None,
    kind: str | None = None,
    data: str | None = None,
    progress: bool = False,
    anomaly: AnomalyConfig | None = None,
) -> dict:
    """What `brainvq anomaly` does: anomaly scores and maps of slice files (or folders of them).

    For each slice NAME, in ``out`` (default RUN/anomaly): NAME_anomaly.png (the slice, its healed
    version, the map as heat over the slice, at the file's own size), NAME_map.npy (float32, the
    file's own size, higher = more anomalous) and a line of scores.csv (file, score, flagged);
    RUN/anomaly/summary.json records the call for the report. ``kind``: "transformer" (default
    where the run has one) or "maskgit". The reference is the run's real test slices (``data``:
    its data folder, default the one it was trained on): above their 99th percentile is flagged.
    ``anomaly``: the [anomaly] settings (default: the run's config's).
    """
    run = load_run(run_path)
    settings = settings_for(kind, run.dir, anomaly or run.config.anomaly).check()
    files = named_slice_files(paths)
    size = run.config.data.image_size
    originals = [decode_slice(f)[0] for f in files]
    squares = np.stack([to_square(a, size) for a in originals])
    priors = load_priors(run, settings)
    scores, maps, healed = anomaly_maps(run, squares, settings, progress=progress, priors=priors)
    ref = test_reference(run, settings, data, priors, progress)
    folder = Path(out) if out else run.dir.path / "anomaly"
    scale = ref["map_scale"] if ref else float(max(np.percentile(maps, 99.9), 1e-6))
    rows = []
    for name, f, a, m, h, s in zip(
        _names(files), files, originals, maps, healed, scores, strict=True
    ):
        own = from_square(m, a.shape).astype(np.float32)
        image = a.astype(np.float32) / 255
        panel = np.concatenate(
            [_grey(image), _grey(from_square(h, a.shape)), heat_overlay(image, own, scale)], axis=1
        )
        atomic_write_bytes(folder / f"{name}_anomaly.png", _png(panel))
        buf = io.BytesIO()
        np.save(buf, own)
        atomic_write_bytes(folder / f"{name}_map.npy", buf.getvalue())
        flagged = bool(ref and s > ref["limit"])
        rows.append({"file": str(f), "name": name, "score": float(s), "flagged": flagged})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["file", "score", "flagged"])
    writer.writerows([r["file"], f"{r['score']:.6g}", int(r["flagged"])] for r in rows)
    atomic_write_text(folder / "scores.csv", text.getvalue())
    result = {
        "settings": dataclasses.asdict(settings),
        "out": str(folder.resolve()),
        "slices": rows,
        "reference": None if ref is None else {"n": ref["n"], "limit": ref["limit"]},
    }
    atomic_write_text(run.dir.path / "anomaly" / "summary.json", json.dumps(result, indent=2))
    return result


def describe(result: dict) -> str:
    """One line per slice (score, and 'ANOMALOUS' above the test reference), then a summary."""
    rows = result["slices"]
    width = max(len(r["file"]) for r in rows)
    s = result["settings"]
    lines = [f"{'slice':<{width}}  anomaly score ({s['detect']} detection, {s['heal']} healing)"]
    for r in rows:
        lines.append(
            f"{r['file']:<{width}}  {r['score']:10.4f}{'  ANOMALOUS' if r['flagged'] else ''}"
        )
    ref = result["reference"]
    if ref:
        n = sum(r["flagged"] for r in rows)
        lines.append(
            f"{n} of {len(rows)} above the {FLAG_PERCENTILE:g}th percentile of the run's "
            f"{ref['n']} real test slices ({ref['limit']:.4f}); maps, PNGs and scores.csv in "
            f"{result['out']}"
        )
    else:
        lines.append(
            f"(no test split at hand to compare with: pass --data); output in {result['out']}"
        )
    return "\n".join(lines)


# ---- the report's section -----------------------------------------------------------------------


def anomaly_html(run_dir: RunDir, shown: int = 6) -> str:
    """The report's "Anomaly maps" section from RUN/anomaly/summary.json ("" when absent): the
    scores, the test reference, and the panels of the highest-scoring slices."""
    try:
        result = json.loads((run_dir.path / "anomaly" / "summary.json").read_text())
    except (OSError, ValueError):
        return ""
    rows = sorted(result.get("slices", []), key=lambda r: -r["score"])
    s, ref = result["settings"], result.get("reference")
    intro = (
        f"{len(rows)} slice(s) scored by `brainvq anomaly` ({s['detect']} detection, {s['heal']} "
        f"healing, codes below p = {s['threshold']:g} redrawn)"
    )
    if ref:
        intro += f"; flagged: above {ref['limit']:.4f}, the 99th percentile of {ref['n']} real test slices"
    table = "".join(
        f"<tr><td>{html.escape(Path(r['file']).name)}</td><td class='num'>{r['score']:.4f}</td>"
        f"<td>{'anomalous' if r['flagged'] else ''}</td></tr>"
        for r in rows
    )
    figures = []
    for r in rows[:shown]:
        panel = Path(result["out"]) / f"{r['name']}_anomaly.png"
        if panel.exists():
            data = base64.b64encode(panel.read_bytes()).decode("ascii")
            cap = html.escape(
                f"{Path(r['file']).name}: slice, healed, anomaly map (score {r['score']:.4f})"
            )
            figures.append(
                f"<figure><img alt='{cap}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{cap}</figcaption></figure>"
            )
    return (
        f"<h2>Anomaly maps</h2><p>{html.escape(intro)}.</p>"
        f"<table><tr><th>slice</th><th>score</th><th></th></tr>{table}</table>" + "".join(figures)
    )
