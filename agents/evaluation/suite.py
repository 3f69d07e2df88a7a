"""One evaluation end to end: every enabled benchmark, then results.csv, results.md and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .benchmarks import FloatArray, calibration_rows, check_agents, drift_rows, shaping_rows
from .plots import write_plots
from .settings import AgentSpec, EvaluationSettings
from .tables import summarise, verdicts, write_csv, write_markdown


@dataclass(frozen=True)
class EvaluationReport:
    """Where the results went, and the numbers (rows, summary, verdicts)."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    files: list[Path]


def evaluate(settings: EvaluationSettings, agents: Sequence[AgentSpec] = ()) -> EvaluationReport:
    """Run every enabled benchmark and write results.csv, results.md and plots."""
    for a in agents:
        if not isinstance(a, AgentSpec):
            raise TypeError(f"agents holds a {type(a).__name__}: allowed AgentSpec")
    clash = sorted({a.name for a in agents} & {b.name for b in settings.baselines})
    if clash:
        raise ValueError(f"agents={clash!r} is out of range: allowed names other than the baselines'")
    # Every agent's env is built and checked first: nothing is lost to a late error.
    check_agents(settings, agents)
    rows = calibration_rows(settings, agents)
    shapes: dict[str, NDArray[np.complex128]] = {}
    dt = 0.0
    timelines: dict[str, tuple[FloatArray, FloatArray]] = {}
    if settings.pulse_shaping:
        shaping, shapes, dt = shaping_rows(settings, agents)
        rows += shaping
    if settings.drift:
        drift, timelines = drift_rows(settings, agents)
        rows += drift
    summary = summarise(rows)
    verdict = verdicts(summary, settings, rows)
    out = settings.out_dir
    files = [write_csv(out / "results.csv", rows), write_markdown(out / "results.md", summary, verdict, settings, rows)]
    if settings.plots:
        files += write_plots(out, rows, shapes, dt, timelines)
    return EvaluationReport(out, rows, summary, verdict, files)
