"""Configuration files and schedule strings are data: nothing in them can run code.

YAML is read with ``yaml.safe_load``, so tags that would build Python objects are refused
with a ``ConfigError`` naming the file, before anything runs. Schedule specs
(``"warmup(100, then=cosine(900))"``) are walked as an ``ast`` whitelist: a call of a
schedule factory, keyword arguments, plain constants, a unary minus and lists/tuples.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cadence.schedules as S
from cadence.regime.config import ConfigError, load_config_file
from cadence.schedules.cli import MAX_SPEC_CHARS, parse_spec


# ---- YAML configuration files ----------------------------------------------------------
def _python_tags(marker: Path) -> dict[str, str]:
    """YAML documents whose tags, under an unsafe loader, would run code or import names."""
    touch = f'["touch {marker}"]'
    return {
        "object/apply": f"preset: !!python/object/apply:os.system {touch}\n",
        "object/apply top": f"!!python/object/apply:os.system {touch}\n",
        "object/new": f"preset: !!python/object/new:subprocess.Popen [{touch}]\n",
        "name": "preset: !!python/name:os.system\n",
        "module": "preset: !!python/module:os\n",
        "object": "controllers:\n  - !!python/object:collections.OrderedDict {}\n",
        "apply in a list": f"controllers:\n  - name: plateau\n    patience: "
                           f"!!python/object/apply:os.system {touch}\n",
    }


@pytest.mark.parametrize("name", sorted(_python_tags(Path("m"))))
def test_yaml_python_tags_are_refused_and_run_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    pytest.importorskip("yaml", reason="YAML configs need the [config] extra (pyyaml)")
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    path = tmp_path / "evil.yaml"
    path.write_text(_python_tags(marker)[name], encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = str(info.value)
    assert str(path) in message  # names the file
    assert "python/" in message  # and the tag that was refused
    assert not marker.exists()
    assert not (tmp_path / "m").exists()


def test_yaml_custom_tags_are_refused_too(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="YAML configs need the [config] extra (pyyaml)")
    path = tmp_path / "evil.yml"
    path.write_text("preset: !mytag auto\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"evil\.yml.*!mytag"):
        load_config_file(path)


def test_regime_from_config_refuses_a_yaml_config_that_would_run_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same file through the public path a user takes (``Regime.from_config``)."""
    pytest.importorskip("yaml", reason="YAML configs need the [config] extra (pyyaml)")
    import torch

    import cadence

    marker = tmp_path / "marker"
    path = tmp_path / "regime.yaml"
    path.write_text(_python_tags(marker)["object/apply"], encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ConfigError, match="regime.yaml"):
        cadence.Regime.from_config(opt, path)
    assert not marker.exists()
    assert os.listdir(tmp_path) == ["regime.yaml"]


def test_plain_yaml_still_loads(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="YAML configs need the [config] extra (pyyaml)")
    path = tmp_path / "ok.yaml"
    path.write_text("preset: plateau\ntotal_steps: 100\nbounds:\n  lr: [1.0e-6, 1.0]\n",
                    encoding="utf-8")
    assert load_config_file(path) == {
        "preset": "plateau", "total_steps": 100, "bounds": {"lr": [1e-6, 1.0]}}


# ---- schedule specs --------------------------------------------------------------------
REFUSED: dict[str, tuple[str, str]] = {  # spec -> (what the message says, the piece it quotes)
    "cosine.__class__": ("attribute access", "cosine.__class__"),
    "cosine(10).__class__": ("attribute access", "cosine(10).__class__"),
    "warmup(10, then=cosine.__init__.__globals__)": ("attribute access",
                                                     "cosine.__init__.__globals__"),
    "os.system('true')": ("attribute access", "os.system"),
    "cosine(10)[0]": ("subscripts", "cosine(10)[0]"),
    "cosine([1][0])": ("subscripts", "[1][0]"),
    "__import__('os').system('true')": ("attribute access", "__import__('os').system"),
    "__import__('os')": ("calling '__import__' is not allowed", "__import__"),
    "eval('1')": ("calling 'eval' is not allowed", "eval"),
    "getattr(cosine, 'x')": ("calling 'getattr' is not allowed", "getattr"),
    "cosine(open('x'))": ("calling 'open' is not allowed", "open"),
    "(lambda: 1)()": ("only a schedule name may be called", "lambda: 1"),
    "cosine(lambda: 1)": ("lambdas", "lambda: 1"),
    "cosine([x for x in (1,)])": ("comprehensions", "[x for x in (1,)]"),
    "join([cosine(1) for _ in 'ab'], [1])": ("comprehensions", "[cosine(1) for _ in 'ab']"),
    "cosine(*[10])": ("*args", "*[10]"),
    "cosine(**{'total_steps': 10})": ("**kwargs", "**{'total_steps': 10}"),
    "cosine(x)": ("names are not allowed", "x"),
    "cosine(total_steps=__builtins__)": ("names are not allowed", "__builtins__"),
    "warmup(10, then=cosine)": ("a schedule must be called", "cosine"),
    "cosine(1 + 2)": ("operators", "1 + 2"),
    "cosine(10 ** 10 ** 10)": ("operators", "10 ** 10 ** 10"),
    "cosine({'a': 1})": ("dicts and sets", "{'a': 1}"),
    "cosine(f'{1}')": ("f-strings", "f'{1}'"),
    "cosine(b'10')": ("bytes constants", "b'10'"),
    "cosine(1j)": ("complex constants", "1j"),
    "cosine(-'a')": ("a sign may only precede a number", "-'a'"),
    "cosine((y := 3))": ("assignments", "(y := 3)"),
    "1 + 2": ("operators", "1 + 2"),
}


@pytest.mark.parametrize("spec", sorted(REFUSED))
def test_schedule_spec_refuses_anything_but_factory_calls_and_literals(spec: str) -> None:
    what, piece = REFUSED[spec]
    with pytest.raises(ValueError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert what in message, message
    assert piece in message, message


def test_a_refused_spec_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for spec in (f"__import__('os').system('touch {tmp_path}/a')",
                 f"warmup(1, then=__import__('os').system('touch {tmp_path}/b'))",
                 f"cosine(10, floor=open('{tmp_path}/c', 'w'))",
                 f"cosine([__import__('os').system('touch {tmp_path}/d')][0])"):
        with pytest.raises(ValueError):
            parse_spec(spec)
    assert os.listdir(tmp_path) == []


def test_oversized_or_deeply_nested_specs_are_refused_cleanly() -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_SPEC_CHARS}"):
        parse_spec("cosine(" + "1" * MAX_SPEC_CHARS + ")")
    with pytest.raises(ValueError, match="nested too deeply|cannot parse"):
        parse_spec("-" * 3000 + "1")
    with pytest.raises(ValueError, match="nested too deeply|cannot parse"):
        parse_spec("step(" * 500 + ")" * 500)


def test_valid_specs_still_parse() -> None:
    assert parse_spec("cosine(1000)") == S.cosine(1000)
    assert parse_spec("warmup(100, then=cosine(900))") == S.warmup(100, then=S.cosine(900))
    assert parse_spec(" warmup(50, then=cosine(950, floor=0.1)) ") == S.warmup(
        50, then=S.cosine(950, floor=0.1))
    assert parse_spec("join([constant(0.5), cosine(10)], [4])") == S.join(
        [S.constant(0.5), S.cosine(10)], [4])
    assert parse_spec("join((constant(0.5), cosine(10)), (4,))") == S.join(
        [S.constant(0.5), S.cosine(10)], [4])
    assert parse_spec("multistep([30, 60], gamma=0.1)") == S.multistep([30, 60], gamma=0.1)
    assert parse_spec("exponential(0.99, staircase=True)") == S.exponential(0.99,
                                                                            staircase=True)
    assert parse_spec("inverse_sqrt(10, timescale=None)") == S.inverse_sqrt(10, timescale=None)
    assert parse_spec("product(constant(0.5), cosine(10))") == S.product(
        S.constant(0.5), S.cosine(10))
    assert parse_spec("constant(+0.5)") == S.constant(0.5)
    # a unary minus reaches the factory, which judges the value itself
    with pytest.raises(ValueError, match="-5"):
        parse_spec("cosine(-5)")
