"""``cadence schedule SPEC``: print (and optionally plot) a schedule's values.

SPEC is a JSON ``to_dict`` object or a call such as
``"warmup(50, then=cosine(950, floor=0.1))"`` (the lower-case factories) or
``"Cosine(T_max=950)"`` (a class, with its torch / Hugging Face arguments). Calls are
parsed with :mod:`ast`: only the names in ``cadence.schedules.FACTORIES`` may be called and
every argument must be a literal (numbers, strings, lists, ...) or such a call, so nothing
arbitrary is evaluated.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import sys
from typing import Any, NoReturn

from cadence.schedules.base import Schedule, from_dict, kinds


def parse_spec(text: str) -> Schedule:
    """A schedule from a JSON ``to_dict`` object or a ``name(arg, key=value, ...)`` call."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"schedule spec is not valid JSON: {err}") from None
        return from_dict(data)
    if len(text) > MAX_SPEC_CHARS:
        raise ValueError(f"schedule spec is {len(text)} characters long; at most "
                         f"{MAX_SPEC_CHARS} are allowed")
    try:
        node = ast.parse(text, mode="eval").body
        result = _evaluate(node)
    except SyntaxError as err:
        raise ValueError(f"cannot parse schedule spec {text!r}: {err.msg}") from None
    except (RecursionError, MemoryError):
        raise ValueError("schedule spec is nested too deeply to parse") from None
    if not isinstance(result, Schedule):
        raise ValueError(f"schedule spec {text!r} is not a schedule call, e.g. 'cosine(1000)'")
    return result


#: Longest schedule spec accepted; real specs are a line, and a cap keeps parsing cheap.
MAX_SPEC_CHARS = 4000
#: Expressions refused with a message of their own (any other kind is refused too).
_REFUSED: tuple[tuple[type[ast.AST] | tuple[type[ast.AST], ...], str], ...] = (
    (ast.Attribute, "attribute access is"),
    (ast.Subscript, "subscripts are"),
    (ast.Lambda, "lambdas are"),
    ((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehensions are"),
    (ast.Starred, "*args are"),
    ((ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp), "operators are"),
    ((ast.Dict, ast.Set), "dicts and sets are"),
    ((ast.JoinedStr, ast.FormattedValue), "f-strings are"),
    (ast.NamedExpr, "assignments are"),
)


def _evaluate(node: ast.AST) -> Any:
    """Evaluate a whitelisted expression: a call of a name in ``FACTORIES`` with keyword
    arguments, a number, string, bool or None, a unary minus on a number, or a list/tuple
    of those. Anything else (attributes, subscripts, other names or calls, lambdas,
    comprehensions, operators, ``*``/``**`` arguments) is refused before anything runs,
    with the offending piece named."""
    from cadence.schedules import FACTORIES

    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            _refuse(node.func, "attribute access is not allowed")
        if not isinstance(node.func, ast.Name):
            _refuse(node.func, "only a schedule name may be called")
        if node.func.id not in FACTORIES:
            raise ValueError(f"calling {node.func.id!r} is not allowed in a schedule spec; "
                             f"known schedules: {', '.join(sorted(FACTORIES))}")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                _refuse(arg, "*args are not allowed")
        for kw in node.keywords:
            if kw.arg is None:
                _refuse(kw.value, "**kwargs are not allowed", prefix="**")
        args = [_evaluate(a) for a in node.args]
        kwargs = {str(kw.arg): _evaluate(kw.value) for kw in node.keywords}
        return _call(node.func.id, FACTORIES[node.func.id], args, kwargs)
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_evaluate(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        _refuse(node, f"{type(value).__name__} constants are not allowed")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _evaluate(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
        _refuse(node, "a sign may only precede a number")
    if isinstance(node, ast.Name):
        if node.id in FACTORIES:
            _refuse(node, "a schedule must be called, e.g. 'cosine(1000)'")
        _refuse(node, "names are not allowed (only schedule calls and literals)")
    for kind, what in _REFUSED:
        if isinstance(node, kind):
            _refuse(node, f"{what} not allowed")
    _refuse(node, f"{type(node).__name__} expressions are not allowed")


def _refuse(node: ast.AST, why: str, prefix: str = "") -> NoReturn:
    """Raise the ``ValueError`` for a refused piece of a spec, quoting that piece."""
    piece = prefix + ast.unparse(node)
    raise ValueError(f"schedule spec: {why}: {piece!r}; a spec holds only "
                     "schedule calls (e.g. 'warmup(100, then=cosine(900))'), numbers, strings, "
                     "True/False/None and lists of those")


def _call(name: str, factory: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """``factory(*args, **kwargs)``; arguments that do not fit name the expected ones."""
    signature = inspect.signature(factory)
    empty = inspect.Parameter.empty
    signature = signature.replace(
        parameters=[p.replace(annotation=empty) for p in signature.parameters.values()],
        return_annotation=empty,
    )
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        cls = kinds().get(name)
        hint = (f" ({cls.__name__}(...) takes the torch / Hugging Face argument names)"
                if cls is not None and cls.__name__ != name else "")
        raise ValueError(f"{name}{signature}: {err}{hint}") from None
    return factory(*args, **kwargs)


def _sample_steps(total: int, count: int = 11) -> list[int]:
    if total <= count:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def run(args: argparse.Namespace) -> int:
    """Entry point of ``cadence schedule``; returns the exit code."""
    try:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
            raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
        schedule = parse_spec(args.spec)
        values = [schedule(t) for t in range(args.steps)]
    except (ValueError, TypeError) as err:
        print(f"cadence schedule: {err}", file=sys.stderr)
        return 2
    scale = args.lr if args.lr is not None else 1.0
    if args.json:
        print(json.dumps({"schedule": schedule.to_dict(), "values": [scale * v for v in values]}))
    else:
        print(repr(schedule))
        print(json.dumps(schedule.to_dict()))
        label = "lr" if args.lr is not None else "multiplier"
        print(f"{'step':>8}  {label}")
        for t in _sample_steps(args.steps):
            print(f"{t:>8}  {scale * values[t]:.6g}")
        lo = min(range(len(values)), key=values.__getitem__)
        hi = max(range(len(values)), key=values.__getitem__)
        print(f"min {scale * values[lo]:.6g} at step {lo}; "
              f"max {scale * values[hi]:.6g} at step {hi}")
    if args.plot:
        from cadence.schedules.preview import plot

        try:
            plot(schedule, args.steps, path=args.plot)
        except ImportError as err:
            print(f"cadence schedule: {err}", file=sys.stderr)
            return 1
        print(f"plot written to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``schedule`` sub-command to the ``cadence`` CLI."""
    parser = subparsers.add_parser(
        "schedule",
        help="print or plot a learning-rate schedule",
        description="Print (and optionally plot) the values of a schedule given as "
        "'name(arg, key=value)' or as a JSON to_dict object.",
    )
    parser.add_argument("spec", help="e.g. \"warmup_cosine(total_steps=1000, warmup_steps=50)\"")
    parser.add_argument("--steps", type=int, default=1000, help="number of steps (default 1000)")
    parser.add_argument("--lr", type=float, default=None, help="base lr: print absolute rates")
    parser.add_argument("--plot", metavar="PATH", default=None, help="save a plot (matplotlib)")
    parser.add_argument("--json", action="store_true", help="print every value as JSON")
    parser.set_defaults(func=run)
