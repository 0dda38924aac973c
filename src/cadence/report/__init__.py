"""Run dashboard: one self-contained HTML file from run folders (``cadence report``)."""

from cadence.report.dashboard import render_dashboard, write_dashboard
from cadence.report.run import RunData, is_run_folder, load_run

__all__ = ["RunData", "is_run_folder", "load_run", "render_dashboard", "write_dashboard"]
