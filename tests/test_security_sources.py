"""cadence never unpickles code: no ``weights_only=False`` and no unsafe loader in ``src/``.

State files (the Regime's ``state_dict``, the snapshot, the HF/Lightning checkpoint files)
hold only tensors and plain data, so they are read with ``torch.load(weights_only=True)``;
a checkpoint from elsewhere must not be able to run anything (docs/security.md).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Calls that would run code from a file or a string. ``yaml.load``/``full_load`` and
#: ``pickle`` construct arbitrary objects; ``np.load(allow_pickle=True)`` unpickles.
UNSAFE = {
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
    "yaml.load / unsafe_load / full_load": re.compile(
        r"\byaml\.(load|unsafe_load|full_load|load_all|unsafe_load_all)\s*\("),
    "yaml unsafe loader": re.compile(r"\b(Unsafe|Full)?Loader\s*=\s*yaml\.(Unsafe|Full)?Loader\b"
                                     r"|yaml\.(UnsafeLoader|FullLoader)\b"),
    # loading through pickle (catching its UnpicklingError is fine), or any dill/marshal
    "pickle / dill / marshal": re.compile(
        r"\bc?pickle\.(load|loads|Unpickler)\b"
        r"|^\s*from\s+c?pickle\s+import\s+.*\b(load|loads|Unpickler)\b"
        r"|^\s*(import|from)\s+(dill|marshal|shelve)\b", re.MULTILINE),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
}
#: Built-ins that run a string as code; found by walking the syntax tree (not in comments).
CODE_RUNNERS = frozenset({"eval", "exec", "compile", "__import__"})


def _sources() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert files, f"no sources under {SRC}"
    return files


def test_no_weights_only_false_in_src() -> None:
    found = [
        f"{path.relative_to(SRC.parent)}:{n}: {line.strip()}"
        for path in _sources()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if UNSAFE["weights_only=False"].search(line)
    ]
    assert not found, "torch.load must use weights_only=True:\n" + "\n".join(found)


def test_no_unsafe_loader_in_src() -> None:
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for what, pattern in UNSAFE.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(SRC.parent)}:{line}: {what}")
    assert not found, "unsafe loading in src/:\n" + "\n".join(found)


def _code_runner_calls(text: str) -> list[tuple[int, str]]:
    return [(node.lineno, node.func.id) for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in CODE_RUNNERS]


def test_no_eval_or_exec_in_src() -> None:
    found = [f"{path.relative_to(SRC.parent)}:{line}: {name}(...)"
             for path in _sources()
             for line, name in _code_runner_calls(path.read_text(encoding="utf-8"))]
    assert not found, "code run from strings in src/:\n" + "\n".join(found)


def test_every_torch_load_in_src_passes_weights_only_true() -> None:
    calls = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"\btorch\.load\s*\(", text):
            depth, end = 1, match.end()
            while depth and end < len(text):  # the call's arguments, to its closing paren
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            calls.append((path, text[match.start():end]))
    bad = [f"{p.relative_to(SRC.parent)}: {c}" for p, c in calls
           if not re.search(r"weights_only\s*=\s*True", c)]
    assert not bad, "torch.load without weights_only=True:\n" + "\n".join(bad)


def test_the_checks_catch_what_they_look_for() -> None:
    """The patterns match the forms they exist for (a check that cannot fail checks nothing)."""
    assert UNSAFE["weights_only=False"].search("torch.load(f, weights_only = False)")
    assert UNSAFE["yaml.load / unsafe_load / full_load"].search("data = yaml.load(text)")
    assert not UNSAFE["yaml.load / unsafe_load / full_load"].search("yaml.safe_load(text)")
    assert UNSAFE["yaml unsafe loader"].search("yaml.load(t, Loader=yaml.FullLoader)")
    assert UNSAFE["pickle / dill / marshal"].search("state = pickle.loads(blob)\n")
    assert UNSAFE["pickle / dill / marshal"].search("from pickle import load\n")
    assert UNSAFE["pickle / dill / marshal"].search("import dill\n")
    assert not UNSAFE["pickle / dill / marshal"].search("except pickle.UnpicklingError:\n")
    assert _code_runner_calls("x = eval(spec)\nexec(s)") == [(1, "eval"), (2, "exec")]
    assert _code_runner_calls("# eval(x)\nast.literal_eval(x); model.eval()") == []
