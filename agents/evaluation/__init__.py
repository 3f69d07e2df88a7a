"""The evaluation suite: agents and baselines on a fixed, seeded set of held-out devices.

Three benchmarks, each with a target for the agents:

- **calibration** (20 ns DRAG gate from the default miscalibration): every method gets
  the same devices, starting parameters and shot budget; reported per method and
  budget: median and 90th percentile of the final infidelity and of its ratio to the
  coherence limit, leakage, shots (as reported and as the device counted them), wall
  time. Target for an agent: median <= 1.1× and p90 <= 1.5× the coherence limit at
  <= 1000 shots.
- **pulse shaping** (6 ns X gate on ``transmon_short``): the calibrated DRAG pulse, the
  GRAPE model optimum, and agents. Target: <= 1e-3, and the gap to the model optimum.
- **drift tracking** (24 h on ``transmon_drifting``): a baseline rerun every hour (and
  never, for scale) against agents. Target: >= 2× lower time-averaged error at <= the
  hourly shot spend.

Agents are ``pulsecal.hardware.policy.Policy``s (``pulsecal.agents.policies``: a
``FunctionPolicy`` for a plain function, an ``SB3Policy`` for a trained model), played with
explicit recurrent state as a replay session plays them; baselines anything implementing
``baselines.Baseline``. The evaluation set is fixed by (n_devices, seed) alone: never
choose either by looking at results. Outputs: ``results.csv`` (one row per method, budget
and device), ``results.md`` (summary and pass/fail) and PNG plots.

Modules by job: ``settings`` (what to run), ``benchmarks`` (rows from runs), ``tables``
(summaries, verdicts, csv/md), ``plots`` (PNGs), ``suite`` (all of it, end to end).
"""

from __future__ import annotations

from .benchmarks import calibration_rows, drift_rows, shaping_rows
from .plots import ZOOM_MEDIAN_RATIO, plot_calibration, write_plots
from .settings import DRIFT_MISCALIBRATION, ENV_IDS, TASKS, AgentSpec, EvaluationSettings, Targets
from .suite import EvaluationReport, evaluate
from .tables import (
    CSV_FIELDS,
    VERDICT_FIELDS,
    read_results_csv,
    summarise,
    verdicts,
    write_csv,
    write_markdown,
)

__all__ = [
    "CSV_FIELDS",
    "DRIFT_MISCALIBRATION",
    "ENV_IDS",
    "TASKS",
    "VERDICT_FIELDS",
    "ZOOM_MEDIAN_RATIO",
    "AgentSpec",
    "EvaluationReport",
    "EvaluationSettings",
    "Targets",
    "calibration_rows",
    "drift_rows",
    "evaluate",
    "plot_calibration",
    "read_results_csv",
    "shaping_rows",
    "summarise",
    "verdicts",
    "write_csv",
    "write_markdown",
    "write_plots",
]
