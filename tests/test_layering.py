"""DESIGN's arrows, enforced: no part imports a part above it, and no imports go in circles.

An ``ast`` walk over every module of ``src/cadence`` collects each ``import cadence...``,
including those inside functions (a deferred import is still a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parents[1] / "src" / "cadence"

#: Each top-level part and its layer: a part may import only parts on lower layers (and
#: itself). ``checks`` and ``stats`` are the shared leaves everything may use; the root
#: ``cadence`` package resolves its names lazily and imports nothing.
LAYERS: dict[str, int] = {
    "checks": 0, "stats": 0,
    "cadence": 1, "protocol": 1, "events": 1, "schedules": 1, "groups": 1,
    "optim": 2,
    "signals": 3,
    "controllers": 4,
    "regime": 5,
    "integrations": 6, "report": 6,
    "bench": 7,
    "demo": 8, "learn": 8,  # learn's environment runs bench workloads
    "cli": 9,
    "__main__": 10,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("cadence", *parts)).removesuffix(".__init__")


def imports() -> dict[str, set[str]]:
    """``{module: {cadence modules it imports}}``; ``from pkg import sub`` counts ``pkg.sub``."""
    modules = {module_name(f): f for f in ROOT.rglob("*.py")}
    out: dict[str, set[str]] = defaultdict(set)
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out[mod].update(a.name for a in node.names if a.name.split(".")[0] == "cadence")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.split(".")[0] != "cadence":
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    out[mod].add(sub if sub in modules else base)
    return out


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "cadence"


def test_every_part_has_a_layer() -> None:
    parts = {part(m) for m in imports()} | {part(module_name(f)) for f in ROOT.rglob("*.py")}
    assert parts <= set(LAYERS), f"parts without a layer: {sorted(parts - set(LAYERS))}"


def test_no_import_runs_up_the_layers() -> None:
    upward = sorted(
        f"{mod} -> {dep}"
        for mod, deps in imports().items()
        for dep in deps
        if part(dep) != part(mod) and LAYERS[part(dep)] >= LAYERS[part(mod)]
    )
    assert not upward, "imports against DESIGN's arrows:\n" + "\n".join(upward)


def test_no_import_circles() -> None:
    graph = imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                circles.append(sorted(scc))

    for v in list(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    # the collector must not miss a deferred import: check it on this repository's own
    # knowledge of one (the registry module imports nothing; regime.config imports presets)
    assert "cadence.regime.presets" in imports()["cadence.regime.config"]
    tree = ast.parse("def f():\n    from cadence.regime import core\n")
    found = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert found == ["cadence.regime"]


def test_import_cadence_loads_no_optional_dependency() -> None:
    code = (
        "import sys, cadence, cadence.regime, cadence.schedules, cadence.groups\n"
        "optional = ['matplotlib', 'plotly', 'rich', 'yaml', 'lightning', 'transformers',"
        " 'tensorboard', 'sklearn', 'mnist1d', 'schedulefree', 'gymnasium',"
        " 'stable_baselines3', 'ray', 'hypothesis']\n"
        "print(sorted(m for m in optional if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
