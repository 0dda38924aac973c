"""The results database: one SQLite row per run, with everything needed to rebuild any
table or plot (full configuration, evaluation curve, final and best metrics).

JSON columns hold dicts; non-finite floats are stored as ``null``. The schema version
lives in ``schema_version``; opening a database written by a newer schema is refused.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DONE_STATUSES = ("ok", "diverged")  # rows with these statuses are never re-run

_COLUMNS: dict[str, str] = {
    "run_key": "TEXT PRIMARY KEY",
    "workload": "TEXT NOT NULL",
    "method": "TEXT NOT NULL",
    "lr": "REAL NOT NULL",
    "seed": "INTEGER NOT NULL",
    "steps": "INTEGER",
    "status": "TEXT NOT NULL",  # ok | diverged | error
    "diverged": "INTEGER NOT NULL DEFAULT 0",
    "error": "TEXT",
    "config": "TEXT NOT NULL",  # JSON: spec + workload info + method info
    "final_metrics": "TEXT",  # JSON: {"test_acc": ..., "selection_loss": ..., ...}
    "best_metrics": "TEXT",  # JSON: best over the curve, same keys
    "curve": "TEXT",  # JSON list: {"step", "time", "lr", "batch_loss", "<split>_<metric>"}
    "wall_time": "REAL",  # seconds, whole run including evaluation
    "train_time": "REAL",  # seconds, training steps only (clock paused for evaluation)
    "peak_mem_mb": "REAL",
    "cadence_version": "TEXT",
    "created": "TEXT",
    "machine": "TEXT",  # JSON
}
_JSON_COLUMNS = ("config", "final_metrics", "best_metrics", "curve", "machine")


def _clean(value: Any) -> Any:
    """Replace non-finite floats by None, recursively, so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class ResultsDB:
    """A thin wrapper around one SQLite file (``":memory:"`` works for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.row_factory = sqlite3.Row
        self._init_schema()

    def _init_schema(self) -> None:
        cur = self.conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = cur.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            cur.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise ValueError(
                f"database {self.path!r} has schema_version={row[0]}, newer than this "
                f"cadence ({SCHEMA_VERSION}); upgrade cadence to read it"
            )
        cols = ", ".join(f"{k} {v}" for k, v in _COLUMNS.items())
        cur.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
        cur.execute("CREATE INDEX IF NOT EXISTS runs_wm ON runs (workload, method)")
        self.conn.commit()

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("SELECT version FROM schema_version").fetchone()[0])

    def insert(self, row: dict[str, Any]) -> None:
        """Insert or replace one run (keyed by ``run_key``)."""
        missing = {"run_key", "workload", "method", "lr", "seed", "status", "config"} - set(row)
        if missing:
            raise ValueError(f"run row is missing {sorted(missing)}")
        unknown = set(row) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"run row has unknown columns {sorted(unknown)}")
        values = {
            k: json.dumps(_clean(v), sort_keys=True) if k in _JSON_COLUMNS else _clean(v)
            for k, v in row.items()
        }
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.conn.execute(
            f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", tuple(values.values())
        )
        self.conn.commit()

    def done_keys(self) -> set[str]:
        """Keys of finished runs (ok or diverged); errored runs are retried."""
        marks = ", ".join("?" for _ in DONE_STATUSES)
        cur = self.conn.execute(
            f"SELECT run_key FROM runs WHERE status IN ({marks})", DONE_STATUSES
        )
        return {r[0] for r in cur}

    def rows(self, workload: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        """All runs (optionally of one workload / method), JSON columns decoded."""
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if workload is not None:
            query += " AND workload = ?"
            args.append(workload)
        if method is not None:
            query += " AND method = ?"
            args.append(method)
        out = []
        for r in self.conn.execute(query + " ORDER BY workload, method, lr, seed", args):
            d = dict(r)
            for k in _JSON_COLUMNS:
                if d.get(k) is not None:
                    d[k] = json.loads(d[k])
            out.append(d)
        return out

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
