"""Regime configuration files: TOML, YAML or JSON → validated ``Regime`` arguments.

A configuration names a preset, the controllers with their parameters, bounds and a
schedule — the same fields a run folder's ``config.json`` records — so a run can be
written down, reviewed and repeated::

    preset = "auto"
    total_steps = 10_000

    [schedule]                 # cadence.schedules.from_dict form
    kind = "cosine"
    total_steps = 10_000

    [bounds]
    lr = [1e-6, 1.0]

    [[controllers]]
    name = "plateau"
    patience = 200             # parameters inline, or as  params = { patience = 200 }

A run folder's ``config.json`` is itself a valid configuration (its informational keys,
such as ``optimizer`` and ``started``, are ignored). Every error names the offending key
and the values that would have been accepted.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import cadence.controllers  # noqa: F401  (registers the controllers)
import cadence.signals  # noqa: F401  (registers the signals)
from cadence import __version__ as cadence_version
from cadence.protocol import CONTROLLERS, KNOBS, SIGNALS, Registry
from cadence.regime.bounds import validate_bounds
from cadence.regime.guard import Guard
from cadence.regime.presets import PRESETS, resolve_preset
from cadence.regime.schedule import schedule_to_dict
from cadence.regime.snapshot import best_preference
from cadence.schedules import base, warmup_cosine, wsd

#: Keys the run folder's config.json records for information only; ignored on load.
INFO_KEYS: frozenset[str] = frozenset(
    {"optimizer", "groups", "cadence_version", "started", "resolved_schedule", "running"}
)
#: The Regime arguments a configuration may set, with what each must hold (for error
#: messages); a test checks that each is a parameter of ``Regime``.
CONFIG_KEYS: dict[str, str] = {
    "preset": "a preset name",
    "total_steps": "a positive integer",
    "warmup_steps": "a non-negative integer",
    "controllers": "a list of {name, params} tables",
    "signals": "a list of {name, params} tables",
    "schedule": "a schedule table {kind, ...} or a table of group name -> schedule table",
    "bounds": "a table of knob -> [lo, hi]",
    "max_change": "a number > 1, or null for no per-step limit",
    "max_lr_spread": "a number >= 1",
    "smoothing": "a number in [0, 1)",
    "clip_norm": "a number > 0, 'adaptive', or null for no clipping",
    "guard": "true, false, or a table of Guard parameters",
    "accumulation_steps": "a positive integer",
    "metrics_every": "a positive integer",
    "snapshot_every": "a non-negative integer (0: no snapshots)",
    "seed": "an integer",
    "log_dir": "a folder path",
    "keep_lr": "true or false",
    "best_metric": "a metric name, or [name, 'min' | 'max']",
}
#: Keys for which an explicit null means "use the default" (and is dropped); for the others
#: (``max_change``, ``clip_norm``) null is a real value.
_NULL_IS_DEFAULT = frozenset(
    {"preset", "total_steps", "warmup_steps", "schedule", "max_lr_spread", "seed", "log_dir",
     "controllers", "signals", "bounds", "best_metric"}
)
SUFFIXES = (".toml", ".yaml", ".yml", ".json")


class ConfigError(ValueError):
    """An invalid configuration; the message names the file, the key and what is allowed."""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file into a dict (not validated)."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"config path {str(file)!r} has suffix {suffix!r}; allowed: {', '.join(SUFFIXES)}"
        )
    if not file.is_file():
        raise FileNotFoundError(f"config file {str(file)!r} does not exist")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: not a text file (UTF-8): {err}") from None
    if not text.strip():
        raise ConfigError(f"{file}: the file is empty; a configuration sets at least one of: "
                          f"{', '.join(CONFIG_KEYS)} (e.g. preset and total_steps)")
    try:
        if suffix == ".toml":
            data = _toml_loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            data = _yaml_loads(text)
    except (ValueError, TypeError) as err:  # TOMLDecodeError/JSONDecodeError/YAMLError
        raise ConfigError(f"{file}: cannot parse: {err}") from err
    if data is None:
        raise ConfigError(f"{file}: the file holds no settings (only comments?); a "
                          f"configuration sets at least one of: {', '.join(CONFIG_KEYS)}")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{file}: the top level must be a table/mapping, got {type(data).__name__}"
        )
    return data


def resolve_config(raw: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate a parsed configuration and return keyword arguments for ``Regime``.

    Controllers are built from the registry (``cadence.protocol.CONTROLLERS``), the schedule
    with ``cadence.schedules.from_dict``. A top-level ``[regime]`` table, if present, is used
    instead of the top level (so a larger training config can hold one).
    """
    if not isinstance(raw, Mapping):
        raise TypeError(f"{source}: configuration must be a mapping, got {type(raw).__name__}")
    if "regime" in raw and isinstance(raw["regime"], Mapping):
        raw, source = raw["regime"], f"{source} [regime]"
    allowed = set(CONFIG_KEYS)
    raw = _strip_preset_parts(raw) if "cadence_version" in raw else raw
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in INFO_KEYS:
            continue
        if key not in allowed:
            raise ConfigError(
                f"{source}: key {key!r} is not allowed; allowed keys: {', '.join(sorted(allowed))}"
            )
        if value is None and key in _NULL_IS_DEFAULT:
            continue
        parse = _PARSERS.get(key)
        out[key] = parse(value, source) if parse else value
    if out.get("preset", "auto") in PRESETS:
        try:
            resolve_preset(out.get("preset", "auto"), out.get("total_steps"),
                           out.get("warmup_steps"))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: {err}") from None
    return out


def _strip_preset_parts(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config.json lists the preset's own controllers and signals first, then the
    user's; the preset adds its own again on load, so keep only the user's."""
    out = dict(recorded)
    try:
        plan = resolve_preset(
            out.get("preset") or "auto", out.get("total_steps"), out.get("warmup_steps")
        )
    except (TypeError, ValueError):
        return out  # an unknown preset is reported by the preset check
    for key, from_plan in (("controllers", plan.controllers), ("signals", plan.signals)):
        if key not in out:
            continue
        entries = list(out.get(key) or [])
        names = [c if isinstance(c, str) else getattr(c, "name", None) for c in from_plan]
        recorded_names = [e.get("name") if isinstance(e, Mapping) else e for e in entries]
        if recorded_names[: len(names)] == names:
            out[key] = entries[len(names):]
    return out


def regime_arguments(path: str | Path, **overrides: Any) -> dict[str, Any]:
    """``Regime`` keyword arguments from a configuration file (``Regime.from_config``).

    ``overrides`` (e.g. ``total_steps=``, ``log_dir=``) take precedence over the file.
    """
    data = load_config_file(path)
    if isinstance(data.get("regime"), Mapping):
        data = {**data, "regime": {k: v for k, v in data["regime"].items() if k not in overrides}}
    else:  # an overridden key is not read, so a file's unusable value can be replaced
        data = {k: v for k, v in data.items() if k not in overrides}
    kwargs = resolve_config(data, source=str(path))
    kwargs.update(overrides)
    return kwargs


def describe(regime: Any) -> dict[str, Any]:
    """A built Regime's configuration, as its run folder's ``config.json`` records it.

    Top-level keys are Regime arguments (``None``/empty ones left out), so the file can be
    read back by ``Regime.from_config``; ``controllers``/``signals`` list only those given
    beyond the preset's, each with its recorded constructor arguments. ``optimizer``,
    ``groups`` (with each group's resolved schedule) and ``running`` (the names of every
    controller and signal, the preset's included) are informational.
    """
    opt = regime.optimizer
    defaults = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opt.defaults.items()
                if isinstance(v, (int, float, str, bool, tuple, type(None)))}
    knobs = regime.knobs
    cfg = {
        "preset": regime.preset,
        "total_steps": regime.total_steps,
        "warmup_steps": regime._warmup_arg,
        "controllers": [_part_entry(c) for c in regime._user_controllers],
        "signals": [_part_entry(s) for s in regime._user_signals],
        "schedule": regime.schedules.to_dict() if regime._user_schedule is not None else None,
        "bounds": {k: list(v) for k, v in regime.user_bounds.items()},
        "max_change": regime.arbiter.max_change,
        "max_lr_spread": regime.arbiter.max_lr_spread,
        "smoothing": regime.arbiter.smoothing,
        "clip_norm": regime.clip_mode,
        "accumulation_steps": regime.accumulation_steps,
        "metrics_every": regime.metrics_every,
        "snapshot_every": regime.snapshot_every,
        "guard": regime.guard.get_config() if regime.guard is not None else False,
        "seed": regime.seed,
        "keep_lr": regime.keep_lr,
        "best_metric": (list(regime.best_metric) if isinstance(regime.best_metric, tuple)
                        else regime.best_metric),
        "optimizer": {"class": type(opt).__name__, "defaults": defaults},
        "groups": [
            {
                "name": n,
                "num_params": sum(p.numel() for p in g["params"]),
                "depth": g.get("depth"),
                "base": {k: knobs.base(n, k) for k in knobs.available[n]},
                "schedule": schedule_to_dict(regime.schedules.by_group[n]),
                "warmup_steps": regime.warmup_steps,
            }
            for n, g in knobs.groups.items()
        ],
        "running": {"controllers": [c.name for c in regime.controllers],
                    "signals": [s.name for s in regime.signal_objs]},
        "cadence_version": cadence_version,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return {k: v for k, v in cfg.items() if v is not None and v != []}


def _part_entry(part: Any) -> dict[str, Any]:
    """``{name, params}`` for config.json; a part built from objects JSON cannot hold is
    recorded with ``params: null`` and says so (loading such an entry is refused)."""
    config, registered = part.get_config(), type(part).name  # instances may rename
    try:
        json.dumps(config, allow_nan=True)
    except TypeError:
        return {"name": registered, "params": None,
                "unrecorded": f"{type(part).__name__} was built from arguments that are not "
                              "plain data; build it in code"}
    return {"name": registered, "params": config}


# ---- value parsers ---------------------------------------------------------------------
def _parse_preset(value: Any, source: str) -> str:
    if not isinstance(value, str) or value not in PRESETS:
        allowed = ", ".join(repr(n) for n in sorted(PRESETS))
        raise ConfigError(f"{source}: preset = {value!r} is not allowed; allowed values: {allowed}")
    return value


def _positive_int(key: str) -> Callable[[Any, str], int]:
    def parse(value: Any, source: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{source}: {key} = {value!r} is not allowed; "
                              "allowed values: a positive integer")
        return value

    return parse


def _non_negative_int(key: str) -> Callable[[Any, str], int]:
    def parse(value: Any, source: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{source}: {key} = {value!r} is not allowed; "
                              f"allowed values: {CONFIG_KEYS[key]}")
        return value

    return parse


def _parse_log_dir(value: Any, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: log_dir = {value!r} is not allowed; "
                          "allowed values: a non-empty folder path")
    return value


def _parse_bounds(value: Any, source: str) -> dict[str, tuple[float, float]]:
    """The Regime's own ``validate_bounds``, with errors that name the file and key."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: bounds must be a table of knob -> [lo, hi], got {value!r}")
    for knob, pair in value.items():
        if knob not in KNOBS:
            raise ConfigError(f"{source}: bounds.{knob} is not allowed; allowed keys: "
                              f"{', '.join(KNOBS)}")
        try:
            validate_bounds({knob: pair})
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"{source}: bounds.{knob} = {pair!r} is not allowed; allowed values: a pair "
                f"[lo, hi] of numbers, 0 <= lo <= hi ({err})"
            ) from None
    return validate_bounds(value)


def _parse_schedule(value: Any, source: str) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: schedule = {value!r} is not allowed; allowed values: "
                          f"{CONFIG_KEYS['schedule']}")
    if "kind" in value:
        return _one_schedule(value, f"{source}: schedule")
    if not value:
        raise ConfigError(f"{source}: schedule is empty; allowed values: "
                          f"{CONFIG_KEYS['schedule']}")
    per_group = {}
    for group, table in value.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: schedule.{group} = {table!r} is not allowed; "
                              "allowed values: a schedule table with a 'kind' key")
        per_group[str(group)] = _one_schedule(table, f"{source}: schedule.{group}")
    return per_group


#: Schedule factories accepted as ``kind`` besides the registered kinds (their arguments
#: become the other fields), e.g. ``{kind = "warmup_cosine", total_steps = 1000, ...}``.
SCHEDULE_FACTORIES: dict[str, Callable[..., Any]] = {"warmup_cosine": warmup_cosine, "wsd": wsd}


def _one_schedule(table: Mapping[str, Any], where: str) -> Any:
    kind = table.get("kind")
    if kind == "callable":
        raise ConfigError(f"{where} was a Python callable ({table.get('repr')}), which a file "
                          "cannot hold; pass it in code: Regime.from_config(optimizer, path, "
                          "schedule=...), or write a schedule table {kind, ...}")
    if kind not in base.kinds() and kind not in SCHEDULE_FACTORIES:
        known = sorted(base.kinds()) + sorted(SCHEDULE_FACTORIES)
        raise ConfigError(f"{where}.kind = {kind!r} is not allowed; allowed values: "
                          f"{', '.join(known)}")
    try:
        if kind not in base.kinds():
            return SCHEDULE_FACTORIES[kind](**{k: v for k, v in table.items() if k != "kind"})
        return base.from_dict(dict(table))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _parts_parser(key: str) -> Callable[[Any, str], list[Any]]:
    """Parser for ``controllers`` / ``signals``: a list of {name, params} (or names), or a
    table of name -> params; each entry is built from its registry."""

    def parse(value: Any, source: str) -> list[Any]:
        registry = _registry(key)
        if isinstance(value, Mapping):  # [controllers.plateau] tables: name -> params
            value = [{"name": name, "params": params or {}} for name, params in value.items()]
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} = {value!r} is not allowed; allowed values: "
                              f"{CONFIG_KEYS[key]}")
        built = []
        for i, entry in enumerate(value):
            where = f"{source}: {key}[{i}]"
            if isinstance(entry, str):
                entry = {"name": entry}
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ConfigError(f"{where} = {entry!r} is not allowed; allowed values: a table "
                                  "with 'name' and optional parameters")
            name = entry["name"]
            if name not in registry:
                raise ConfigError(f"{where}.name = {name!r} is not allowed; allowed values: "
                                  f"{', '.join(registry.names()) or '(none registered)'}")
            if "unrecorded" in entry:
                raise ConfigError(f"{where} ({name}): {entry['unrecorded']}")
            if not isinstance(entry.get("params") or {}, Mapping):
                raise ConfigError(f"{where}.params = {entry['params']!r} is not allowed; "
                                  "allowed values: a table of parameter -> value")
            params = dict(entry.get("params") or {})
            inline = {k: v for k, v in entry.items() if k not in ("name", "params")}
            if inline and params:
                raise ConfigError(f"{where} ({name}): give parameters inline or under "
                                  "'params', not both")
            params.update(inline)
            built.append(_build_part(registry, name, params, where))
        return built

    return parse


def _build_part(registry: Any, name: str, params: dict[str, Any], where: str) -> Any:
    accepted = list(registry.create(name).get_config())  # the recorded constructor args
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"{where} ({name}): parameter(s) {', '.join(unknown)} not allowed;"
                          f" allowed parameters: {', '.join(accepted) or '(none)'}")
    try:
        return registry.create(name, **params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} ({name}): {err}") from err


def _number(key: str, ok: Callable[[float], bool], allow_null: bool = False,
            words: tuple[str, ...] = ()) -> Callable[[Any, str], Any]:
    def parse(value: Any, source: str) -> Any:
        if (value is None and allow_null) or (isinstance(value, str) and value in words):
            return value
        if not _is_number(value) or not math.isfinite(value) or not ok(float(value)):
            raise ConfigError(f"{source}: {key} = {value!r} is not allowed; allowed values: "
                              f"{CONFIG_KEYS[key]}")
        return float(value)

    return parse


def _parse_guard(value: Any, source: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        accepted = list(Guard().get_config())
        unknown = sorted(set(value) - set(accepted))
        if unknown:
            raise ConfigError(f"{source}: guard.{unknown[0]} is not allowed; allowed "
                              f"parameters: {', '.join(accepted)}")
        for key, item in value.items():
            if item is not None and not _is_number(item):
                raise ConfigError(f"{source}: guard.{key} = {item!r} is not allowed; allowed "
                                  "values: a number")
        try:
            Guard(**value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: guard: {err}") from None
        return dict(value)
    raise ConfigError(f"{source}: guard = {value!r} is not allowed; allowed values: "
                      f"{CONFIG_KEYS['guard']}")


def _parse_keep_lr(value: Any, source: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: keep_lr = {value!r} is not allowed; allowed values: "
                          f"{CONFIG_KEYS['keep_lr']}")
    return value


def _parse_best_metric(value: Any, source: str) -> str | tuple[str, str]:
    metric = tuple(value) if isinstance(value, list) else value
    try:
        best_preference(metric)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: best_metric = {value!r} is not allowed; allowed values: "
                          f"{CONFIG_KEYS['best_metric']}") from None
    return metric  # type: ignore[no-any-return]


def _parse_seed(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source}: seed = {value!r} is not allowed; allowed values: an integer")
    return value


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "preset": _parse_preset,
    "total_steps": _positive_int("total_steps"),
    "metrics_every": _positive_int("metrics_every"),
    "warmup_steps": _non_negative_int("warmup_steps"),
    "log_dir": _parse_log_dir,
    "bounds": _parse_bounds,
    "schedule": _parse_schedule,
    "controllers": _parts_parser("controllers"),
    "signals": _parts_parser("signals"),
    "max_change": _number("max_change", lambda v: v > 1, allow_null=True),
    "max_lr_spread": _number("max_lr_spread", lambda v: v >= 1),
    "smoothing": _number("smoothing", lambda v: 0 <= v < 1),
    "clip_norm": _number("clip_norm", lambda v: v > 0, allow_null=True, words=("adaptive",)),
    "guard": _parse_guard,
    "accumulation_steps": _positive_int("accumulation_steps"),
    "snapshot_every": _non_negative_int("snapshot_every"),
    "seed": _parse_seed,
    "keep_lr": _parse_keep_lr,
    "best_metric": _parse_best_metric,
}


# ---- helpers ---------------------------------------------------------------------------
def _registry(key: str) -> Registry:
    """The controller or signal registry (importing cadence.controllers and
    cadence.signals registered every built-in part)."""
    return CONTROLLERS if key == "controllers" else SIGNALS


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _toml_loads(text: str) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as err:
            raise ImportError(
                "reading TOML needs Python 3.11+ (tomllib) or the 'tomli' package on 3.10; "
                "or write the configuration as YAML/JSON"
            ) from err
    return tomllib.loads(text)


def _yaml_loads(text: str) -> Any:
    try:
        import yaml
    except ModuleNotFoundError as err:
        raise ImportError(
            "reading YAML needs PyYAML: pip install 'cadence[config]'"
        ) from err
    try:
        return _sci_floats(yaml.safe_load(text))
    except yaml.YAMLError as err:
        raise ValueError(str(err)) from err


#: A number in exponent notation without a dot (``1e-6``, ``3E4``): a float in YAML 1.2,
#: TOML and JSON, but a string to PyYAML, which follows YAML 1.1.
_SCI_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+")


def _sci_floats(data: Any) -> Any:
    """``data`` with every string that is a number in exponent notation read as a float, as
    YAML 1.2 reads it (no configuration value is such a string; ``lr: [1e-6, 1e-3]`` is)."""
    if isinstance(data, str) and _SCI_FLOAT.fullmatch(data):
        return float(data.replace("_", ""))
    if isinstance(data, list):
        return [_sci_floats(v) for v in data]
    if isinstance(data, dict):
        return {k: _sci_floats(v) for k, v in data.items()}
    return data


_R = TypeVar("_R")


def construct(cls: Callable[..., _R], optimizer: Any, path: str | Path,
              overrides: Mapping[str, Any]) -> _R:
    """``cls(optimizer, **arguments from path)``; every ``ValueError`` about the
    configuration becomes a ``ConfigError`` naming the file, including those only the
    optimizer can reveal (a bound that excludes a group's lr, a schedule for a missing
    group)."""
    kwargs = regime_arguments(path, **overrides)
    try:
        return cls(optimizer, **kwargs)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from err


__all__ = [
    "CONFIG_KEYS",
    "ConfigError",
    "construct",
    "describe",
    "load_config_file",
    "regime_arguments",
    "resolve_config",
]
