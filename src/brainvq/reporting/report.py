"""One self-contained report.html per run, written for a person.

It opens on a verdict (brainvq.reporting.verdict: "looks good", or the warnings, each naming the
setting that would help) and the pictures: a grid of samples beside a grid of real test slices,
the best sample beside its nearest training slice. Then the numbers, each with a plain label, a
line on what it means and the real test slices' value beside it; then curves, reconstructions and
the other figures, and the config. The raw keys stay in metrics.json.

Every image is embedded as a base64 data URI and the style is inline, so the file opens offline
and can be mailed or archived on its own. A small inline script marks the page with how many of
its images decoded (`<body data-images-ok="7/7">`) and which of its elements with an id fit
whole in the window (`data-first-screen="verdict samples-maskgit ..."`), which the tests read from
a headless browser.
"""

from __future__ import annotations

import base64
import datetime
import html
from pathlib import Path

from brainvq.applications.anomaly_files import anomaly_html
from brainvq.config import KindColumn
from brainvq.data.subjects import describe as describe_subjects
from brainvq.data.subjects import leak_warning
from brainvq.errors import RunError
from brainvq.evaluation.keys import N_SAMPLES, PRIOR_C2ST, PRIOR_C2ST_REFERENCE
from brainvq.evaluation.measure import ReportRow
from brainvq.evaluation.measures import report_rows
from brainvq.evaluation.realism import NEAR_TWIN_MEANS, near_twin_warning
from brainvq.io import atomic_write_text
from brainvq.reporting.verdict import (
    PRIOR_NAMES,
    findings,
    prior_test_close,
    verdict,
)
from brainvq.runs import RunDir
from brainvq.training.budget import read_finished

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.25rem .6rem;
text-align:left} th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0} figcaption{color:#555;font-size:.9rem} img{max-width:100%;height:auto;
border:1px solid #eee} pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.85rem}
.muted{color:#777} .warn{color:#8a4b00;background:#fff4e0;padding:.3rem .6rem}
.verdict{padding:.6rem 1rem;border-radius:6px;margin:.8rem 0;font-size:1.05rem}
.good{background:#e8f5e9;border:1px solid #a5d6a7} .weak{background:#fff3e0;border:1px solid #ffb74d}
.verdict ul{margin:.3rem 0 0 1.2rem;padding:0;font-size:.95rem}
.side{display:flex;gap:1.5rem;align-items:flex-start;flex-wrap:wrap}
.side figure{margin:.2rem 0} .side img{width:400px}
.side figcaption{font-weight:600;color:#333;font-size:1rem}
td.what{color:#555;font-size:.9rem;max-width:34rem}
"""

_SCRIPT = """
window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-ok',ok+'/'+im.length);
var seen=[],el=document.querySelectorAll('[id]');
for(var j=0;j<el.length;j++){var r=el[j].getBoundingClientRect();
if(r.height>0&&r.bottom<=window.innerHeight)seen.push(el[j].id);}
document.body.setAttribute('data-first-screen',seen.join(' '));});
"""

PRIOR_CURVES = KindColumn("curves")  # {kind: what its training-curve figure shows}


def _figures() -> list[tuple[str, str, str]]:
    """(figure file, section, caption) of every figure a run may hold."""
    figs = [
        (
            "vqvae_curves.png",
            "Training curves",
            "VQ-VAE: loss, codebook usage, perplexity, validation SSIM",
        )
    ]
    for kind, name in PRIOR_NAMES.items():
        figs.append(
            (f"prior_{kind}_curves.png", "Training curves", f"{name} prior: {PRIOR_CURVES[kind]}")
        )
    figs.append(
        ("reconstructions.png", "Reconstructions", "Best, median and worst test reconstructions")
    )
    for kind, name in PRIOR_NAMES.items():
        figs += [
            (f"{kind}_samples.png", "Samples", f"New slices from the {name} prior (up to 64)"),
            (f"{kind}_code_map.png", "Samples", f"A {name} code map and the slice it decodes to"),
            (
                f"{kind}_best_vs_nearest.png",
                "Nearest-neighbour pairs",
                f"Best {name} sample beside its nearest training slice",
            ),
            (
                f"{kind}_nearest_pairs.png",
                "Nearest-neighbour pairs",
                f"{name} samples (top) above their nearest training slices (bottom)",
            ),
            (
                f"{kind}_nn_ssim.png",
                "Nearest-neighbour pairs",
                f"How close {name} samples and real test slices come to the training slices",
            ),
        ]
    figs.append(
        (
            "real_nearest_pairs.png",
            "Nearest-neighbour pairs",
            "Real test slices (top) above their nearest training slices (bottom): what a realism "
            "ratio of 1 asks for",
        )
    )
    figs.append(
        ("codebook_usage.png", "Codebook usage", "How often each code is used on the test split")
    )
    return figs


FIGURES = _figures()
SECTIONS = [
    "Training curves",
    "Reconstructions",
    "Samples",
    "Nearest-neighbour pairs",
    "Codebook usage",
]


def stages_finished(run: RunDir) -> dict:
    """{stage: how it ended} of the run's finished training stages (RUN/state/*/finished.json)."""
    stages = [p.parent.name for p in sorted(run.state.glob("*/finished.json"))]
    return {stage: read_finished(run, stage) for stage in stages}


def _img(path: Path, caption: str, id: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = html.escape(caption)
    tag = f' id="{id}"' if id else ""
    return (
        f'<figure{tag}><img alt="{cap}" src="data:image/png;base64,{data}">'
        f"<figcaption>{cap}</figcaption></figure>"
    )


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return html.escape(str(v))


def _top(run: RunDir, metrics: dict) -> list[str]:
    """The verdict, the warnings, and the pictures: samples beside real test slices, the best
    sample beside its nearest training slice."""
    finished = stages_finished(run)
    good, text = verdict(metrics, finished)
    found = findings(metrics, finished)
    items = "".join(f"<li>{html.escape(f.text)}</li>" for f in found)
    parts = [
        f"<div id='verdict' class='verdict {'good' if good else 'weak'}'><strong>{html.escape(text)}</strong>"
        + (f"<ul>{items}</ul>" if items else "")
        + "</div>"
    ]
    for kind, name in PRIOR_NAMES.items():
        grid = run.figures / f"{kind}_sample_grid.png"
        if not grid.exists():
            continue
        n = metrics.get(f"samples-{kind}", {}).get(N_SAMPLES)
        pics = [_img(grid, f"New slices from the {name} prior (16 of {n})", f"samples-{kind}")]
        real = run.figures / "real_test_slices.png"
        if real.exists():
            cap = "Real test slices, for comparison (not seen in training)"
            pics.append(_img(real, cap, f"real-{kind}"))
        parts.append("<div class='side'>" + "".join(pics) + "</div>")
        beside = run.figures / f"{kind}_beside_recons.png"
        if beside.exists():
            parts.append(_img(beside, _beside_caption(name, metrics.get(f"samples-{kind}", {}))))
        best = run.figures / f"{kind}_best_vs_nearest.png"
        if best.exists():
            cap = f"The {name} sample closest to a training slice, beside it"
            parts.append(_img(best, cap, f"best-{kind}"))
    return parts


def _beside_caption(name: str, s: dict) -> str:
    """The caption of the samples-beside-reconstructions figure: why, where the prior test says
    a classifier tells them apart."""
    shown = (
        f"{name} samples (top) above the decoder's reconstructions of real brains at the same "
        "axial levels (bottom): the same decoder, so only the code maps differ"
    )
    if prior_test_close(s.get(PRIOR_C2ST), s.get(PRIOR_C2ST_REFERENCE)) is False:
        return f"Why a classifier tells them apart: {shown}"
    return shown


def _row(row: ReportRow) -> str:
    cells = [html.escape(row.label), row.value, row.real, html.escape(row.what)]
    return (
        f"<tr><th>{cells[0]}</th><td class='num'>{cells[1]}</td><td class='num'>{cells[2]}</td>"
        f"<td class='what'>{cells[3]}</td></tr>"
    )


def _table(title: str, columns: tuple[str, str], rows: list[str]) -> str:
    head = f"<tr><th>measure</th><th>{columns[0]}</th><th>{columns[1]}</th><th>what it means</th>"
    return f"<h3>{html.escape(title)}</h3><table>{head}</tr>{''.join(rows)}</table>"


def _samples_table(kind: str, s: dict) -> str:
    how = f"{s.get(N_SAMPLES)} samples, seed {s.get('seed')}"
    if "temperature" in s:
        how += f", temperature {s['temperature']:g}"
    if s.get("decoder") == "tuned":
        how += ", tuned decoder"
    title = f"{PRIOR_NAMES.get(kind, kind)} prior: its samples ({how})"
    rows = [_row(r) for r in report_rows("samples", s)]
    return _table(title, ("samples", "real test slices"), rows)


def _vqvae_table(v: dict) -> str:
    size = v.get("image_size", "?")
    title = f"VQ-VAE ({v.get('n_test', '?')} test slices at {size}x{size})"
    rows = [_row(r) for r in report_rows("vqvae", v)]
    return _table(title, ("this run", "reference"), rows)


def _raw_tables(metrics: dict) -> str:
    """Every section of metrics.json under its raw keys, folded away."""
    parts = []
    for name, section in metrics.items():
        rows = []
        for key, value in section.items() if isinstance(section, dict) else []:
            if isinstance(value, dict):  # e.g. ssim: {mean, std, min, max, median}
                value = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
                rows.append(f"<tr><th>{html.escape(key)}</th><td>{value}</td></tr>")
            else:
                num = f'<td class="num">{_fmt(value)}</td>'
                rows.append(f"<tr><th>{html.escape(key)}</th>{num}</tr>")
        parts.append(f"<h3>{html.escape(name)}</h3><table>{''.join(rows)}</table>")
    return (
        "<details><summary>Every measure under its key in metrics.json</summary>"
        + "".join(parts)
        + "</details>"
    )


def data_html(data: dict | None) -> str:
    """The Data section: subjects per split, the leak row and its warning, the near-twin share;
    for the embedded default, that its scores compare levels of one brain."""
    if not data:
        return ""
    rows = [("subjects", describe_subjects(data).removeprefix("subjects: "))]
    k = data.get("subjects_in_more_than_one_split")
    if not data.get("one_brain"):
        rows.append(("subjects in more than one split", "unknown" if k is None else str(k)))
    if "real_test_near_twin_share" in data:
        share = data["real_test_near_twin_share"]
        rows.append(("real test slices with a near-twin", f"{share:.0%} ({NEAR_TWIN_MEANS})"))
    table = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in rows)
    warnings = [w for w in (leak_warning(data), near_twin_warning(data)) if w]
    notes = "".join(f"<p class='warn'>{html.escape(w)}</p>" for w in warnings)
    return f"<h2>Data</h2><table>{table}</table>{notes}"


def render(run: RunDir) -> str:
    """The report of a run folder as one HTML string."""
    metrics = run.read_metrics()
    config = run.config.read_text() if run.config.exists() else "(no config.toml)"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>brainvq report: {html.escape(run.path.name)}</title>",
        f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
        f"<h1>brainvq run <code>{html.escape(run.path.name)}</code></h1>",
        f"<p class='muted'>{html.escape(str(run.path.resolve()))} &middot; report written "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC</p>",
    ]
    if not metrics:
        parts.append("<p>No metrics yet: run <code>brainvq evaluate</code>.</p>")
    else:
        parts += _top(run, metrics)
        parts.append("<h2>The numbers</h2>")
        for section, values in metrics.items():
            if section.startswith("samples-"):
                parts.append(_samples_table(section.removeprefix("samples-"), values))
        if "vqvae" in metrics:
            parts.append(_vqvae_table(metrics["vqvae"]))
        parts.append(data_html(metrics.get("data")))
        parts.append(_raw_tables(metrics))
    for section in SECTIONS:
        figs = [(f, c) for f, s, c in FIGURES if s == section and (run.figures / f).exists()]
        if figs:
            parts.append(f"<h2>{section}</h2>")
            parts += [_img(run.figures / f, c) for f, c in figs]
    parts.append(anomaly_html(run))
    parts.append(f"<h2>Config</h2><pre>{html.escape(config)}</pre></body></html>")
    return "\n".join(parts)


def write_report(run_path: str | Path) -> Path:
    """Write RUN/report.html (atomically) and return its path."""
    run = RunDir(run_path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: run folder not found")
    out = run.path / "report.html"
    atomic_write_text(out, render(run))
    return out
