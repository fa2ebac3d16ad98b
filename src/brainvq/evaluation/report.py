"""One self-contained report.html per run: config, metrics, curves, reconstructions, samples.

Every image is embedded as a base64 data URI and the style is inline, so the file opens offline
and can be mailed or archived on its own. A small inline script marks the page with how many of
its images decoded (`<body data-images-ok="7/7">`), which the tests read from a headless browser.
"""

from __future__ import annotations

import base64
import datetime
import html
from pathlib import Path

from brainvq.data.subjects import describe as describe_subjects
from brainvq.data.subjects import leak_warning
from brainvq.errors import RunError
from brainvq.evaluation.anomaly import anomaly_html
from brainvq.evaluation.evaluate import NEAR_TWIN_MEANS, near_twin_warning
from brainvq.io import atomic_write_text
from brainvq.runs import RunDir

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.25rem .6rem;
text-align:left} th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0} figcaption{color:#555;font-size:.9rem} img{max-width:100%;height:auto;
border:1px solid #eee} pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.85rem}
.muted{color:#777} .warn{color:#8a4b00;background:#fff4e0;padding:.3rem .6rem}
"""

_SCRIPT = """
window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-ok',ok+'/'+im.length);});
"""

PRIOR_NAMES = {
    "dcgan": "DCGAN",
    "pixelcnn": "PixelCNN",
    "transformer": "transformer",
    "maskgit": "MaskGIT",
}
PRIOR_CURVES = {
    "dcgan": "generator and discriminator losses",
    "pixelcnn": "training and validation bits per code",
    "transformer": "training and validation bits per code",
    "maskgit": "training and validation bits per hidden code",
}


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
            (f"{kind}_samples.png", "Samples", f"New slices from the {name} prior"),
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


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = html.escape(caption)
    return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return html.escape(str(v))


def _metrics_table(section: dict) -> str:
    rows = []
    for key, value in section.items():
        if isinstance(value, dict):  # e.g. ssim: {mean, std, min, max, median}
            value = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
            rows.append(f"<tr><th>{html.escape(key)}</th><td>{value}</td></tr>")
        else:
            rows.append(f'<tr><th>{html.escape(key)}</th><td class="num">{_fmt(value)}</td></tr>')
    return "<table>" + "".join(rows) + "</table>"


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
        data_html(metrics.get("data")),
        "<h2>Metrics</h2>",
    ]
    if not metrics:
        parts.append("<p>No metrics yet: run <code>brainvq evaluate</code>.</p>")
    for name, section in metrics.items():
        if name == "data":
            continue  # shown above
        parts.append(f"<h3>{html.escape(name)}</h3>{_metrics_table(section)}")
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
