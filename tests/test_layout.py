"""The package's shape: the pipeline's layers import only downwards, no import cycles, no imports
hidden inside functions (outside the CLI), and declared requirements that match what the code uses."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "brainvq"

# data -> nn -> priors -> training -> sampling -> evaluation (measures) -> applications -> reporting ->
# evaluation.evaluate -> pipeline -> cli; a module may import its own layer or lower ones
LAYERS = [
    (
        "brainvq",
        "brainvq.errors",
        "brainvq.config",
        "brainvq.io",
        "brainvq.metrics",
        "brainvq.progress",
        # the classifier two-sample test is a pure measure (torch, numpy, brainvq.errors): decoder
        # tuning chooses by it (brainvq.training.tuning_judge)
        "brainvq.evaluation.c2st",
        "brainvq.nn.batchnorm",  # torch only: the C2ST's batch-norm refresh
        "brainvq.nn.fitting",  # torch only: the C2ST's training loop
        "brainvq.runlock",
    ),
    ("brainvq.data",),
    ("brainvq.nn",),
    ("brainvq.runs", "brainvq.codes"),
    ("brainvq.priors",),
    ("brainvq.training",),
    ("brainvq.sampling",),
    ("brainvq.evaluation",),  # the measures (brainvq.evaluation.measures) and what they build on
    ("brainvq.applications",),  # anomaly maps and lesions: use priors and measures
    ("brainvq.reporting",),  # figures, verdict and report: read the measures rows
    ("brainvq.evaluation.evaluate",),  # the evaluate loop: measures, figures, the verdict
    ("brainvq.pipeline",),
    ("brainvq.cli", "brainvq.cli_parser"),
]
LAZY_IMPORTS_ALLOWED = {"brainvq.cli"}  # each command imports the library when it runs


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    """The index of the longest layer prefix that names the module or a package above it."""
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = i, prefix.count(".")
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported brainvq module, inside a function?) for every import in a source file."""
    tree = ast.parse(path.read_text())
    inner = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            # `from brainvq import data` imports the module brainvq.data
            names += [f"{node.module}.{a.name}" for a in node.names if node.module == "brainvq"]
        else:
            continue
        for name in names:
            if name == "brainvq" or name.startswith("brainvq."):
                if (SRC.parent / name.replace(".", "/")).exists() or (
                    SRC.parent / (name.replace(".", "/") + ".py")
                ).exists():
                    out.append((name, id(node) in inner))
    return out


def graph() -> dict[str, set[str]]:
    g = {}
    for path in sorted(SRC.rglob("*.py")):
        g[module_name(path)] = {name for name, _ in imports(path)}
    return g


def test_every_module_imports_its_layer_or_lower_ones():
    upward = []
    for module, targets in graph().items():
        for target in targets:
            if target != "brainvq" and layer(target) > layer(module):
                upward.append(f"{module} -> {target}")
    assert upward == [], "imports up the pipeline:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(g.get(m, ())):
            if t == "brainvq" or t not in g:
                continue
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_no_lazy_imports_outside_the_cli():
    lazy = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    lazy.append(f"{module_name(path)}:{node.lineno}")
    allowed = [x for x in lazy if x.split(":")[0] in LAZY_IMPORTS_ALLOWED]
    assert sorted(set(lazy) - set(allowed)) == []


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The rules above can fail: a fake package with a cycle and an upward import."""
    pkg = tmp_path / "brainvq"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from brainvq.training import x\n")
    (pkg / "training.py").write_text("from brainvq.data import y\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", pkg)
    g = graph()
    assert g["brainvq.data"] == {"brainvq.training"} and g["brainvq.training"] == {"brainvq.data"}
    with pytest.raises(AssertionError, match="brainvq.data -> brainvq.training"):
        test_every_module_imports_its_layer_or_lower_ones()
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles()


# what the code calls, and the first release that has it
NEEDS = {
    "python": ((3, 11), "tomllib and datetime.UTC"),
    "torch": ((2, 5), "scaled_dot_product_attention(enable_gqa=...)"),
    "lightning": ((2, 6), "Trainer.fit(weights_only=...)"),
}


def _minimum(spec: str) -> tuple[int, ...]:
    version = spec.split(">=")[1].split(",")[0].strip()
    return tuple(int(x) for x in version.split(".")[:2])


def test_declared_requirements_cover_what_the_code_calls():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {"python": _minimum(project["requires-python"])}
    for dep in project["dependencies"]:
        name = dep.split(">=")[0].strip()
        if name in NEEDS:
            declared[name] = _minimum(dep)
    for name, (need, why) in NEEDS.items():
        assert declared.get(name, (0,)) >= need, f"{name} >= {need} is needed for {why}"
    # and the code still calls those, so the bounds are not higher than needed for no reason
    code = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    assert "enable_gqa" in code and "weights_only=True" in code and "tomllib" in code


def test_the_cli_starts_without_the_heavy_libraries():
    """`brainvq --help` imports only the CLI, the config and the standard library: each command
    imports what it needs when it runs (torch alone takes seconds to import)."""
    import subprocess

    code = (
        "import sys, brainvq.cli\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'numpy', 'lightning', 'safetensors', 'PIL', 'skimage', 'matplotlib', 'tqdm'})\n"
        "print(','.join(heavy))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=1800
    )
    assert r.stdout.strip() == "", f"brainvq.cli imports {r.stdout.strip()}"
