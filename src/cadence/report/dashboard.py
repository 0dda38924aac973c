"""Build one self-contained HTML dashboard from one or more run folders.

The page answers *what changed, when and why*: loss and validation curves, every knob of
every parameter group over time, the signals behind the decisions, and each event marked
on those curves with its source and reason (skips and rollbacks drawn in red), plus a
summary header and an event table. plotly.js is embedded inline, so the file opens with
no network. Several runs overlay on the same axes (one colour per run and group).

A run folder may come from anyone, so nothing read from it becomes markup: text in the page
is HTML-escaped; text handed to plotly (trace names, panel titles, category labels, hover
text), which plotly reads as a small subset of HTML, is escaped with ``_plain`` so it is
shown as written; and plotly embeds each figure's JSON in its ``<script>`` with ``<``, ``>``
and ``/`` written as ``\\u003c`` etc., which ``_script_safe`` checks (docs/security.md).
"""

from __future__ import annotations

import errno
import html
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cadence.report.run import ALERT_KINDS, RunData, load_run

#: At most this many points per drawn line (evenly thinned, last point kept).
MAX_POINTS = 4000
#: At most this many rows in the event table (the JSONL file keeps them all).
MAX_TABLE_ROWS = 1500
#: At most this many signal panels; signals named in events come first.
MAX_SIGNALS = 9
#: At most this many vertical lines per kind of alert (skip, rollback) and panel.
MAX_ALERT_LINES = 4000

_KIND_STYLE: dict[str, tuple[str, str]] = {  # kind -> (marker symbol, colour)
    "change": ("circle", "#636efa"),
    "replan": ("diamond", "#00a08b"),
    "drift": ("star", "#ab63fa"),
    "trial": ("triangle-up", "#ff7f0e"),
    "skip": ("x", "#e4002b"),
    "rollback": ("x-thin-open", "#b00020"),
    "restart": ("hexagram", "#1f77b4"),
}
_ALERT_LINE_COLOUR = {"skip": "rgba(228,0,43,0.35)", "rollback": "rgba(176,0,32,0.7)"}


def require_plotly() -> Any:
    """``plotly.graph_objects``, or an ``ImportError`` that says how to install it (call it
    before a long job whose end draws a dashboard)."""
    try:
        import plotly.graph_objects as go
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the cadence dashboard needs plotly; install the report extra: "
            "pip install 'cadence[report]'"
        ) from err
    return go


_require_plotly = require_plotly


#: The stages of drawing a page, in order (``progress`` is told each as it starts).
STAGES: tuple[str, ...] = ("reading runs", "loss", "validation metrics", "hyper-parameters",
                           "signals", "event timeline", "page")


def render_dashboard(runs: Sequence[str | Path | RunData], title: str | None = None,
                     progress: Callable[[str], None] | None = None) -> str:
    """Return the dashboard for ``runs`` (run folders or loaded ``RunData``) as HTML text.

    ``progress``, if given, is called with each name of :data:`STAGES` as it starts (the
    ``cadence report`` command shows them with rich on large runs).
    """
    if isinstance(runs, (str, Path, RunData)):
        raise TypeError(f"runs must be a sequence of run folders, got {type(runs).__name__}")
    tell = progress or (lambda stage: None)
    tell(STAGES[0])
    loaded = [r if isinstance(r, RunData) else load_run(r) for r in runs]
    if not loaded:
        raise ValueError("runs is empty; give at least one run folder")
    _dedupe_names(loaded)
    go = _require_plotly()
    import plotly.offline

    _HOVERS.clear()
    try:
        colours = _Colours()
        figures: list[tuple[str, str, Any]] = []  # (anchor id, heading, figure)
        makers = [
            ("loss", "Loss and validation", lambda: _loss_figure(go, loaded, colours)),
            ("metrics", "Validation metrics", lambda: _metrics_figure(go, loaded, colours)),
            ("knobs", "Hyper-parameters per group",
             lambda: _knobs_figure(go, loaded, colours)),
            ("signals", "Signals behind the decisions",
             lambda: _signals_figure(go, loaded, colours)),
            ("timeline", "Event timeline", lambda: _timeline_figure(go, loaded)),
        ]
        for stage, (anchor, heading, make) in zip(STAGES[1:], makers, strict=False):
            tell(stage)
            fig = make()
            if fig is not None:
                figures.append((anchor, heading, fig))
        tell(STAGES[-1])
        config = {"displaylogo": False, "responsive": True}
        parts = []
        for anchor, heading, fig in figures:
            div = _script_safe(fig.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"fig-{anchor}", config=config
            ))
            parts.append(f'<section id="{anchor}"><h2>{html.escape(heading)}</h2>{div}'
                         "</section>")
        page_title = title or "cadence · " + " vs ".join(r.name for r in loaded)
        return _PAGE.format(
            title=html.escape(page_title),
            css=_CSS,
            plotlyjs=plotly.offline.get_plotlyjs(),
            header=_summary_html(loaded, colours),
            nav=" · ".join(
                f'<a href="#{a}">{html.escape(h.split(" (")[0])}</a>' for a, h, _ in figures
            )
            + ' · <a href="#events">Events</a> · <a href="#config">Configuration</a>',
            figures="\n".join(parts),
            table=_event_table_html(loaded),
            configs=_config_html(loaded),
            n_figures=len(figures),
        )
    finally:
        _HOVERS.clear()


def write_dashboard(
    runs: Sequence[str | Path | RunData], out: str | Path, title: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the dashboard for ``runs`` to ``out`` (parents created) and return its path;
    ``progress`` as for :func:`render_dashboard`."""
    path = Path(out)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; name an .html file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)  # before drawing: fail fast
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PermissionError(errno.EACCES, "not writable", str(path))
    page = render_dashboard(runs, title=title, progress=progress)
    path.write_text(page, encoding="utf-8")
    return path


# ---- figures ---------------------------------------------------------------------------
def _loss_figure(go: Any, runs: list[RunData], colours: _Colours) -> Any:
    fig = go.Figure()
    all_losses: list[float] = []
    for run in runs:
        steps, losses = run.loss_series()
        all_losses += losses
        colour = colours.get(run.name, None)
        xs, ys = _line(steps, losses)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=_plain(f"{run.name} · train loss"),
            line={"color": colour, "width": 1.5}, legendgroup=run.name,
        ))
        for name, (msteps, mvalues) in run.metric_series().items():
            if "loss" in name.lower():
                all_losses += mvalues
                fig.add_trace(go.Scatter(
                    x=msteps, y=mvalues, mode="lines+markers", name=_plain(f"{run.name} · {name}"),
                    line={"color": colour, "dash": "dash"}, legendgroup=run.name,
                ))
        # every event as a marker on the training-loss curve, hover = source and reason
        for kind, events in _by_kind(run.events).items():
            ev = _thin_events(events) if kind == "change" else events
            symbol, kcolour = _KIND_STYLE.get(kind, ("circle-open", "#555"))
            fig.add_trace(go.Scatter(
                x=[e["step"] for e in ev],
                y=[_interp(steps, losses, e["step"]) for e in ev],
                mode="markers", name=_plain(f"{run.name} · {kind} events"),
                marker={"symbol": symbol, "color": kcolour,
                        "size": 11 if kind in ALERT_KINDS else 7,
                        "line": {"width": 1, "color": "white"} if kind == "change" else None},
                hovertext=[_event_hover(e) for e in ev], hoverinfo="text",
                legendgroup=run.name,
            ))
    _add_alert_lines(fig, go, runs, all_losses)
    fig.update_layout(**_layout(height=430), yaxis_title="loss", xaxis_title="step")
    if _wants_log(all_losses):
        fig.update_yaxes(type="log")
    return fig


def _metrics_figure(go: Any, runs: list[RunData], colours: _Colours) -> Any | None:
    names = sorted({n for r in runs for n in r.metric_series()})
    if not names:
        return None
    fig, rows, cols = _panel_grid(names)
    for i, name in enumerate(names):
        row, col = divmod(i, cols)
        for run in runs:
            series = run.metric_series().get(name)
            if series is None:
                continue
            fig.add_trace(go.Scatter(
                x=series[0], y=series[1], mode="lines+markers", name=_plain(run.name),
                line={"color": colours.get(run.name, None)}, legendgroup=run.name,
                showlegend=i == 0,
            ), row=row + 1, col=col + 1)
    fig.update_layout(**_layout(height=300 * rows))
    fig.update_xaxes(title_text="step")
    return fig


def _knobs_figure(go: Any, runs: list[RunData], colours: _Colours) -> Any | None:
    from plotly.subplots import make_subplots

    knob_order = ["lr", "momentum", "beta2", "weight_decay", "clip_norm"]
    present = {k for r in runs for k in r.knob_series()}
    knobs = [k for k in knob_order if k in present] + sorted(present - set(knob_order))
    if not knobs:
        return None
    fig = make_subplots(rows=len(knobs), cols=1, shared_xaxes=True,
                        subplot_titles=[_plain(k) for k in knobs],
                        vertical_spacing=min(0.08, 0.3 / len(knobs)))
    for i, knob in enumerate(knobs, start=1):
        values_seen: list[float] = []
        for run in runs:
            for group, (steps, values) in run.knob_series().get(knob, {}).items():
                values_seen += values
                xs, ys = _line(steps, values)
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, mode="lines", name=_plain(f"{run.name} · {group}"),
                    line={"color": colours.get(run.name, group), "width": 1.5, "shape": "hv"},
                    legendgroup=f"{run.name}/{group}", showlegend=i == 1,
                    hovertemplate=f"{_template_text(group)}<br>step %{{x}}<br>"
                    f"{_template_text(knob)} %{{y:.4g}}<extra></extra>",
                ), row=i, col=1)
            # trial events carry factors, not values: they are marked on the loss curve
            changes = [e for e in run.events if e.get("knob") == knob
                       and e.get("kind") != "trial"]
            for kind, events in _by_kind(changes).items():
                ev = _thin_events(events)
                symbol, kcolour = _KIND_STYLE.get(kind, ("circle-open", "#555"))
                ys = [_as_num(e.get("new")) for e in ev]
                values_seen += [y for y in ys if y is not None]
                fig.add_trace(go.Scatter(
                    x=[e["step"] for e in ev], y=ys, mode="markers",
                    name=_plain(f"{run.name} · {kind} events"),
                    legendgroup=f"{run.name}/events/{kind}",
                    showlegend=False,
                    marker={"symbol": symbol, "size": 7, "color": kcolour,
                            "line": {"width": 1, "color": "white"}},
                    hovertext=[_event_hover(e) for e in ev], hoverinfo="text",
                ), row=i, col=1)
        _add_alert_lines(fig, go, runs, values_seen, row=i)
        if _wants_log(values_seen):
            fig.update_yaxes(type="log", row=i, col=1)
    fig.update_layout(**_layout(height=max(300, 230 * len(knobs))))
    fig.update_xaxes(title_text="step", row=len(knobs), col=1)
    return fig


def _signals_figure(go: Any, runs: list[RunData], colours: _Colours) -> Any | None:
    ordered = _rank_signals(runs)[:MAX_SIGNALS]
    if not ordered:
        return None
    fig, rows, cols = _panel_grid(ordered)
    for i, name in enumerate(ordered):
        row, col = divmod(i, cols)
        for run in runs:
            series = run.signal_series().get(name)
            if series is None:
                continue
            xs, ys = _line(*series)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", name=_plain(run.name), showlegend=i == 0,
                line={"color": colours.get(run.name, None), "width": 1.2},
                legendgroup=run.name,
            ), row=row + 1, col=col + 1)
            # where a decision used this signal, mark the value it saw
            used = [e for e in run.events if name in (e.get("signals") or {})]
            used = _thin_events(used)
            if used:
                fig.add_trace(go.Scatter(
                    x=[e["step"] for e in used],
                    y=[_as_num(e["signals"][name]) for e in used], mode="markers",
                    name=_plain(f"{run.name} · decisions"), showlegend=False,
                    marker={"size": 6, "color": "#e45756", "symbol": "circle-open"},
                    hovertext=[_event_hover(e) for e in used], hoverinfo="text",
                ), row=row + 1, col=col + 1)
    fig.update_layout(**_layout(height=260 * rows))
    return fig


#: Signals worth showing when events do not point at any (the loss and its trend).
_CORE_SIGNALS = ("loss", "loss_ema_short", "loss_slope", "grad_norm")


def _rank_signals(runs: list[RunData]) -> list[str]:
    """Logged signals, most relevant to the decisions first: named in a reason, then
    sharing a stem with an event source (``drift.z`` for ``drift_response``), then the
    core loss/gradient signals, then the rest by how often events carry them. Signals
    that never change are left out (they explain nothing)."""
    series: dict[str, list[float]] = {}
    for run in runs:
        for name, (_, values) in run.signal_series().items():
            series.setdefault(name, []).extend(values)
    reasons = " ".join(str(e.get("reason") or "") for r in runs for e in r.events)
    sources = {str(e.get("source") or "") for r in runs for e in r.events}
    carried: dict[str, int] = {}
    for run in runs:
        for i, name in enumerate(run.decision_signals()):
            carried[name] = min(carried.get(name, i), i)

    def rank(name: str) -> tuple[int, int, str]:
        stem = re.split(r"[./]", name)[0]
        if re.search(rf"\b{re.escape(name)}\b", reasons):
            tier = 0
        elif any(stem and (src.startswith(stem) or stem.startswith(src)) for src in sources
                 if src):
            tier = 1
        elif name in _CORE_SIGNALS:
            tier = 2
        else:
            tier = 3
        return tier, carried.get(name, 10**6), name

    varying = [n for n, v in series.items() if len(set(v)) > 1]
    return sorted(varying, key=rank)


def _timeline_figure(go: Any, runs: list[RunData]) -> Any | None:
    if not any(r.events for r in runs):
        return None
    fig = go.Figure()
    many = len(runs) > 1
    lanes: list[str] = []
    for run in runs:
        for kind, events in _by_kind(run.events).items():
            symbol, kcolour = _KIND_STYLE.get(kind, ("circle-open", "#555"))
            ev = _thin_events(events)
            ys = [_plain(f"{run.name} · {e.get('source') or '?'}" if many
                         else str(e.get("source") or "?")) for e in ev]
            for lane in ys:
                if lane not in lanes:
                    lanes.append(lane)
            fig.add_trace(go.Scatter(
                x=[e["step"] for e in ev], y=ys, mode="markers",
                name=_plain(f"{run.name} · {kind}" if many else kind),
                marker={"symbol": symbol, "color": kcolour,
                        "size": 12 if kind in ALERT_KINDS else 8},
                hovertext=[_event_hover(e) for e in ev], hoverinfo="text",
            ))
    fig.update_layout(**_layout(height=160 + 34 * len(lanes)), xaxis_title="step")
    fig.update_yaxes(type="category")
    return fig


def _add_alert_lines(fig: Any, go: Any, runs: list[RunData], values: list[float],
                     row: int | None = None) -> None:
    """Vertical lines at skipped steps and rollbacks, so trouble stands out on every curve:
    one trace per kind (segments from the panel's lowest to its highest value, separated
    by gaps), not one shape per event, which plotly builds thousands of times slower."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    for kind, colour in _ALERT_LINE_COLOUR.items():
        steps = sorted({e["step"] for r in runs for e in r.events if e.get("kind") == kind
                        and e.get("step") is not None})
        if not steps:
            continue
        steps = _thin(steps, steps, MAX_ALERT_LINES)[0]
        xs: list[Any] = []
        ys: list[Any] = []
        for step in steps:
            xs += [step, step, None]
            ys += [lo, hi, None]
        where = {"row": row, "col": 1} if row is not None else {}
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=_plain(f"{kind} lines"), showlegend=False,
            hoverinfo="skip", connectgaps=False, legendgroup=f"alerts/{kind}",
            line={"color": colour, "width": 2 if kind == "rollback" else 1,
                  "dash": "solid" if kind == "rollback" else "dot"},
        ), **where)


# ---- HTML pieces -----------------------------------------------------------------------
def _summary_html(runs: list[RunData], colours: _Colours) -> str:
    cards = []
    for run in runs:
        cfg = run.config
        opt = cfg.get("optimizer") or {}
        groups = cfg.get("groups") or []
        controllers = ", ".join(
            f"{name} ({n} change{'s' if n != 1 else ''})" if n else f"{name} (idle)"
            for name, n in run.controllers().items()
        ) or "—"
        kinds = run.events_by_kind()
        wall = run.wall_time()
        rows = [
            ("preset", cfg.get("preset", "—")),
            ("optimizer", opt.get("class", "—") if isinstance(opt, dict) else opt),
            ("steps", f"{run.last_step():,} of {cfg.get('total_steps') or '?'}"),
            ("groups", ", ".join(str(g.get("name", "?")) for g in groups if isinstance(g, dict))
             or "—"),
            ("controllers", controllers),
            ("changes by source", ", ".join(f"{s}: {n}" for s, n in
                                            run.changes_by_source().items()) or "none"),
            ("wall time", f"{wall:.1f} s" if wall is not None else "—"),
            ("started", cfg.get("started", "—")),
        ]
        badges = "".join(
            f'<span class="badge kind-{html.escape(k)}">{n} {html.escape(k)}</span>'
            for k, n in kinds.items()
        )
        alerts = sum(kinds.get(k, 0) for k in ("skip", "rollback"))
        warn = (f'<p class="alert">{alerts} skipped step(s) / rollback(s) — see the red '
                "marks</p>" if alerts else "")
        if run.bad_lines:
            warn += f'<p class="alert">{run.bad_lines} malformed log line(s) ignored</p>'
        table = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
        )
        cards.append(
            f'<div class="card" style="border-top-color:{colours.get(run.name, None)}">'
            f"<h3>{html.escape(run.name)}</h3><p class='path'>{html.escape(str(run.path))}</p>"
            f"<div>{badges}</div>{warn}<table>{table}</table></div>"
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def _event_table_html(runs: list[RunData]) -> str:
    many = len(runs) > 1
    rows = []
    events = sorted(
        ((r.name, e) for r in runs for e in r.events), key=lambda p: (p[1].get("step") or 0)
    )
    for name, e in events[:MAX_TABLE_ROWS]:
        kind = str(e.get("kind") or "change")
        sigs = ", ".join(f"{k}={_fmt(v)}" for k, v in _pick_signals(e, 4))
        cells = ([name] if many else []) + [
            e.get("step"), kind, e.get("source") or "", e.get("group") or "all",
            e.get("knob") or "", f"{_fmt(e.get('old'))} → {_fmt(e.get('new'))}"
            if e.get("knob") else "", e.get("reason") or "", sigs,
        ]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f'<tr class="kind-{html.escape(kind)}">{tds}</tr>')
    heads = (["run"] if many else []) + [
        "step", "kind", "source", "group", "knob", "old → new", "reason", "signals"
    ]
    more = (f"<p>Showing the first {MAX_TABLE_ROWS} of {len(events)} events; "
            "events.jsonl holds them all.</p>" if len(events) > MAX_TABLE_ROWS else "")
    if not events:
        return '<section id="events"><h2>Events</h2><p>No events: nothing changed.</p></section>'
    head = "".join(f"<th>{h}</th>" for h in heads)
    return (f'<section id="events"><h2>Events ({len(events)})</h2>{more}'
            f'<div class="tablewrap"><table class="events"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div></section>")


def _config_html(runs: list[RunData]) -> str:
    blocks = "".join(
        f"<details><summary>{html.escape(r.name)}: config.json</summary>"
        f"<pre>{html.escape(json.dumps(r.config, indent=2, sort_keys=True, default=str))}"
        "</pre></details>"
        for r in runs
    )
    return f'<section id="config"><h2>Configuration</h2>{blocks}</section>'


# ---- small helpers ---------------------------------------------------------------------
class _Colours:
    """One stable colour per (run, group) across every figure."""

    def __init__(self) -> None:
        import plotly.colors

        self._palette = plotly.colors.qualitative.Plotly + plotly.colors.qualitative.D3
        self._assigned: dict[tuple[str, str | None], str] = {}

    def get(self, run: str, group: str | None) -> str:
        key = (run, group)
        if key not in self._assigned:
            self._assigned[key] = self._palette[len(self._assigned) % len(self._palette)]
        return self._assigned[key]


def _layout(height: int) -> dict[str, Any]:
    return {
        "template": "plotly_white", "height": height, "hovermode": "closest",
        "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
        "legend": {"orientation": "v", "font": {"size": 11}},
    }


def _panel_grid(titles: list[str]) -> tuple[Any, int, int]:
    """Subplots for one panel per title, three to a row: ``(figure, rows, cols)``; panel
    ``i`` sits at ``divmod(i, cols)`` (0-based)."""
    from plotly.subplots import make_subplots

    cols = min(3, len(titles))
    rows = -(-len(titles) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_plain(t) for t in titles],
                        horizontal_spacing=0.07)
    return fig, rows, cols


def _by_kind(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("step") is None:
            continue
        out.setdefault(str(event.get("kind") or "change"), []).append(event)
    return out


def _thin(xs: list[Any], ys: list[Any], limit: int = MAX_POINTS) -> tuple[list[Any], list[Any]]:
    if len(xs) <= limit:
        return xs, ys
    stride = -(-len(xs) // limit)
    idx = list(range(0, len(xs), stride))
    if idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


def _line(xs: list[Any], ys: list[Any]) -> tuple[Any, Any]:
    """A thinned line as float arrays: plotly takes arrays whole (and embeds them as typed
    arrays) instead of checking a list element by element."""
    import numpy as np

    txs, tys = _thin(xs, ys)
    return np.asarray(txs, dtype=float), np.asarray(tys, dtype=float)


def _thin_events(events: list[dict[str, Any]], limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    return _thin(events, events, limit)[0]


def _interp(steps: list[int], values: list[float], step: float) -> float | None:
    """Value of the curve at ``step`` (linear interpolation), so markers sit on the line."""
    if not steps:
        return None
    import bisect

    i = bisect.bisect_left(steps, step)
    if i <= 0:
        return values[0]
    if i >= len(steps):
        return values[-1]
    s0, s1 = steps[i - 1], steps[i]
    if s1 == s0:
        return values[i]
    w = (step - s0) / (s1 - s0)
    return values[i - 1] * (1 - w) + values[i] * w


def _wants_log(values: list[float]) -> bool:
    vals = [v for v in values if v is not None]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 30


def _as_num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


#: Hover texts of the events of the page being drawn (an event shows on several panels).
_HOVERS: dict[int, str] = {}


def _event_hover(e: dict[str, Any]) -> str:
    """Hover text for one event (cached while a page is drawn)."""
    key = id(e)
    if key not in _HOVERS:
        _HOVERS[key] = _event_hover_text(e)
    return _HOVERS[key]


def _event_hover_text(e: dict[str, Any]) -> str:
    """Hover text for one event: plotly's HTML subset, every value from the file escaped."""
    head = f"<b>{_plain(e.get('kind') or 'change')}</b> · step {_plain(e.get('step'))}"
    lines = [head, f"source: {_plain(e.get('source') or '?')}"]
    if e.get("knob"):
        lines.append(f"{_plain(e.get('group') or 'all')}/{_plain(e['knob'])}:"
                     f" {_plain(_fmt(e.get('old')))} → {_plain(_fmt(e.get('new')))}")
    if e.get("reason"):
        lines.append(_plain(_wrap(str(e["reason"]))).replace("\n", "<br>"))
    sigs = _pick_signals(e, 5)
    if sigs:
        lines.append(", ".join(f"{_plain(k)}={_plain(_fmt(v))}" for k, v in sigs))
    return "<br>".join(lines)


def _plain(text: Any) -> str:
    """``text`` for a plotly string (trace name, title, category, hover text): plotly reads
    those as a subset of HTML (``<b>``, ``<a href>``, ``<br>``, entities), so ``&``, ``<``
    and ``>`` are escaped and the text is shown exactly as written, never as a tag."""
    return html.escape(str(text), quote=False)


def _template_text(text: Any) -> str:
    """``_plain`` for a ``hovertemplate``, whose ``%{...}`` would also be substituted."""
    return _plain(text).replace("%", "&#37;")


#: What may not appear inside an embedded script: a closing tag, a comment opener, or
#: a line separator that ends a JS string in older engines.
_SCRIPT_BREAKERS = re.compile(r"</script|<!--|<script|\u2028|\u2029", re.IGNORECASE)


def _script_safe(div: str) -> str:
    """Check a figure's HTML from plotly: the one ``<script>`` it holds must not contain
    anything that closes it early, whatever the data. plotly (>= 5.18) escapes ``<``, ``>``
    and ``/`` in the embedded JSON; this guards the dashboard against a plotly that does not."""
    start = div.find("<script")
    end = div.rfind("</script>")
    body = div[div.find(">", start) + 1:end] if 0 <= start < end else ""
    if start < 0 or end < 0 or _SCRIPT_BREAKERS.search(body):
        raise RuntimeError(
            "plotly embedded figure data in a <script> without escaping '<' and '/'; "
            "upgrade plotly (pip install 'plotly>=5.18') to draw this run safely"
        )
    return div


def _pick_signals(e: dict[str, Any], k: int) -> list[tuple[str, Any]]:
    """The ``k`` signals of an event most likely behind it: named in its reason, then
    sharing a stem with its source, then the rest in logged order."""
    reason, source = str(e.get("reason") or ""), str(e.get("source") or "")
    items = list((e.get("signals") or {}).items())

    def tier(item: tuple[str, Any]) -> int:
        name = item[0]
        stem = re.split(r"[./]", name)[0]
        if name in reason:
            return 0
        return 1 if stem and source.startswith(stem) else 2

    return sorted(items, key=tier)[:k]  # sorted is stable: logged order within a tier


def _wrap(text: str, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _dedupe_names(runs: list[RunData]) -> None:
    """Runs with the same folder name (e.g. two ``cadence/`` arms) get their parent prefixed."""
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        if seen[run.name] > 1:
            run.name = f"{run.path.resolve().parent.name}/{run.name}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 24px 40px;color:#222}
h1{font-size:22px;margin:18px 0 4px}
h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd}
nav{font-size:13px;color:#666;margin-bottom:10px} nav a{color:#3366cc;text-decoration:none}
.cards{display:flex;flex-wrap:wrap;gap:14px}
.card{border:1px solid #ddd;border-top:4px solid #636efa;border-radius:6px;padding:8px 14px;
 min-width:320px;flex:1;background:#fafafa}
.card h3{margin:4px 0} .card .path{font-size:11px;color:#888;margin:0 0 6px;word-break:break-all}
.card table{font-size:13px;border-collapse:collapse}
.card th{text-align:left;padding:2px 10px 2px 0;
 color:#555;font-weight:600;vertical-align:top;white-space:nowrap} .card td{padding:2px 0}
.badge{display:inline-block;font-size:12px;border-radius:10px;padding:1px 8px;margin:2px 4px 4px 0;
 background:#e8eaff}
.badge.kind-skip,.badge.kind-rollback{background:#e4002b;color:white;font-weight:600}
.badge.kind-restart{background:#ffd59e}
.alert{color:#b00020;font-weight:600;margin:4px 0}
.tablewrap{max-height:520px;overflow:auto;border:1px solid #ddd}
table.events{border-collapse:collapse;font-size:12px;width:100%}
table.events th{position:sticky;top:0;background:#f0f0f0;text-align:left;padding:4px 6px}
table.events td{padding:3px 6px;border-top:1px solid #eee;vertical-align:top}
tr.kind-skip td,tr.kind-rollback td{background:#fde0e4;color:#8a0019;font-weight:600}
tr.kind-restart td{background:#fff4e0} tr.kind-drift td,tr.kind-replan td{background:#eef8f4}
pre{font-size:12px;background:#f6f6f6;padding:8px;overflow:auto}
#cadence-js-errors{color:#b00020} #cadence-js-errors:empty{display:none}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{css}</style>
<script>
window.cadenceErrors = [];
window.addEventListener("error", function (e) {{
  window.cadenceErrors.push(String(e.message || e));
  var box = document.getElementById("cadence-js-errors");
  if (box) box.textContent = "CADENCE_" + "JS_ERROR: " + window.cadenceErrors.join(" | ");
}});
</script>
<script>{plotlyjs}</script>
</head><body data-cadence-figures="{n_figures}">
<h1>{title}</h1>
<nav>{nav}</nav>
<pre id="cadence-js-errors"></pre>
{header}
{figures}
{table}
{configs}
<script>
(function () {{
  var drawn = 0;
  document.querySelectorAll(".plotly-graph-div").forEach(function (d) {{
    if (d.querySelector(".main-svg")) drawn += 1;
  }});
  document.body.setAttribute("data-cadence-rendered", String(drawn));
  if (window.cadenceErrors.length) {{
    document.getElementById("cadence-js-errors").textContent =
      "CADENCE_" + "JS_ERROR: " + window.cadenceErrors.join(" | ");
  }}
}})();
</script>
</body></html>
"""
