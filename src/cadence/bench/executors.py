"""Where benchmark runs execute: the local process pool (``runner``) or a Ray cluster.

``ray_results(specs, run_one)`` sends each :class:`~cadence.bench.runner.RunSpec` to a Ray
task (one CPU each) that calls ``run_one`` and returns the row; rows come back to the driver
as they finish, and the driver alone writes them to the SQLite database, so a suite run
on Ray has the same rows and the same resume rule as one run on the local pool (runs
already in the database are never sent). Ray is imported here only, lazily: ``import
cadence`` and the local pool never need it (extra ``[ray]``).

Every Ray worker must be able to ``import cadence`` (and the ``[bench]`` extra): on one
machine that is the driver's own environment; on a cluster, install cadence on the nodes
or pass a ``runtime_env``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

EXECUTORS = ("local", "ray")


class MissingExtra(ImportError):
    """An optional dependency of the chosen executor is not installed."""


def import_ray() -> Any:
    """The ``ray`` module, or :class:`MissingExtra` naming the extra that installs it."""
    try:
        import ray
    except ImportError as err:
        raise MissingExtra(
            "the ray executor needs Ray, which is not installed: pip install 'cadence[ray]' "
            f"(or pip install ray); {err}"
        ) from err
    return ray


def failed_row(spec: Any, error: str) -> dict[str, Any]:
    """An ``error`` row for a run whose worker died before returning one (it is retried
    on resume, like any errored run)."""
    return {
        "run_key": spec.key(), "workload": spec.workload, "method": spec.method,
        "lr": spec.lr, "seed": spec.seed, "steps": spec.steps, "status": "error",
        "diverged": 0, "error": error, "config": {**asdict(spec), "executor": "ray"},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def ray_results(
    specs: Sequence[Any],
    run: Callable[[Any], dict[str, Any]],
    address: str | None = None,
    num_cpus: int | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run ``run(spec)`` (``runner.run_one``) for each of ``specs`` as a Ray task and yield
    each row as soon as its task finishes.

    Uses the Ray instance already initialised in this process if there is one; otherwise
    connects to ``address`` (e.g. ``"auto"`` or ``"ray://head:10001"``) or, when it is
    ``None``, starts a local instance with ``num_cpus`` CPUs (default: all), and shuts down
    what it started when done.
    """
    if not specs:
        return
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if runtime_env:
            options["runtime_env"] = runtime_env
        if address is None:
            options["num_cpus"] = num_cpus
        ray.init(address=address, **options)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run)
        pending = {task.remote(spec): spec for spec in specs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as err:  # the worker died (OOM, node lost)
                    row = failed_row(spec, f"{type(err).__name__}: {err}\n"
                                           f"{traceback.format_exc()}")
                yield row
    finally:
        if started:
            ray.shutdown()  # also ends tasks still pending
        else:
            for ref in pending:  # the driver stopped early: free the cluster
                ray.cancel(ref)


__all__ = ["EXECUTORS", "MissingExtra", "failed_row", "import_ray", "ray_results"]
