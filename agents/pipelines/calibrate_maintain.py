"""``pulsecal-calibrate graph=maintain hours=24``: keep the calibrated device calibrated for hours of drift.

After the bring-up part of the run (which passes every node the store already holds in
spec, so ``store=<a bring-up run's store.json>`` starts maintenance straight away), a
``agents.graph.maintain.Maintainer`` walks ``hours`` of device time. Its journal is
``maintenance.jsonl`` beside ``journal.jsonl``; a killed run resumes at the tick the kill
interrupted. The drift follows one ``DriftPath`` seeded by the run's ``seed``, so a
resumed process sees the truth the killed one saw.

On a simulated preset with ``device.spectators=none`` every tick also samples the true X
and X90 errors of the store's current pulses (``bench_nodes.true_errors``, evaluation
only, never read by a decision); with neighbours simulated there is no lone-qubit truth
and the timeline shows checks, recalibrations and shots only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pulsecal.agents.graph.graph import CalibrationGraph
from pulsecal.agents.graph.maintain import (
    MAX_HOURS,
    STRATEGIES,
    DriftPath,
    Maintainer,
    MaintenanceReport,
    MaintenanceSettings,
    maintenance_journal,
    qubit_of,
)
from pulsecal.agents.graph.report_maintenance import MaintenanceEvent, MaintenanceTimeline
from pulsecal.agents.graph.store import ParameterStore
from pulsecal.configs.schema import ConfigError
from pulsecal.hardware.progress import SessionProgress

# Beyond the run's hours the path is held at its last state; the margin covers the
# operations of the last tick running past its end.
_PATH_MARGIN_S = 7200.0


@dataclass
class MaintainConf:
    """``maintain:`` in ``configs/calibrate.yaml`` (``MaintenanceSettings``' fields)."""

    strategy: str = "graph"
    tick_s: float = 300.0
    budget_shots_per_hour: int | None = None
    retry_after_s: float = 3600.0
    check_every_s: float = 3600.0
    bringup_every_s: float = 86400.0
    recalibrate_failed_checks: bool = True
    recheck_dependents: bool = False
    check_corrects: bool = True
    adaptive_timeouts: bool = True
    evaluate: bool = True


def check_hours(hours: Any) -> None:
    if hours is None:
        return
    ok = isinstance(hours, int | float) and not isinstance(hours, bool) and math.isfinite(hours)
    if not ok or not 0 < hours <= MAX_HOURS:
        raise ConfigError("hours", f"{hours!r}: allowed device hours > 0 and <= {MAX_HOURS:g} "
                          "(null: bring-up only)")


def settings_of(hours: float, m: MaintainConf) -> MaintenanceSettings:
    """``MaintenanceSettings`` from the config; a bad field is refused as ``maintain.<field>``."""
    if m.strategy not in STRATEGIES:
        raise ConfigError("maintain.strategy", f"{m.strategy!r}: allowed one of {list(STRATEGIES)}")
    try:
        return MaintenanceSettings(hours=float(hours), strategy=m.strategy,  # type: ignore[arg-type]
                                   tick_s=m.tick_s, budget_shots_per_hour=m.budget_shots_per_hour,
                                   retry_after_s=m.retry_after_s, check_every_s=m.check_every_s,
                                   bringup_every_s=m.bringup_every_s,
                                   recalibrate_failed_checks=m.recalibrate_failed_checks,
                                   recheck_dependents=m.recheck_dependents, check_corrects=m.check_corrects,
                                   adaptive_timeouts=m.adaptive_timeouts)
    except ValueError as err:
        # "MaintenanceSettings.<field>=<value>: allowed ..." -> key maintain.<field>, "<value>: allowed ..."
        name, _, problem = str(err).partition("=")
        raise ConfigError(f"maintain.{name.rpartition('.')[2]}", problem or str(err)) from None


class HourProgress(SessionProgress):
    """One line per finished hour of maintenance device time: checks, accepted
    recalibrations (by node), shots of the hour and of the run, and the sampled mean X error if there is one."""

    def __init__(self, label: str, *, stream: TextIO | None = None, tick_s: float = 300.0) -> None:
        super().__init__(label, stream=stream, interactive=False)
        self.tick_s = float(tick_s)
        self._seen = 0  # actions already counted into an earlier line
        self._samples_seen = 0
        self._accepted_seen = 0
        self._hour = -1

    def tick(self, report: MaintenanceReport, tick: int, total: int) -> None:
        hour = math.floor(tick * self.tick_s / 3600.0 + 1e-9)
        last = tick == total
        if self._hour < 0:  # a resumed run: earlier hours were printed by the killed process
            self._hour = math.floor(report.resumed_ticks * self.tick_s / 3600.0 + 1e-9)
            self._seen = len(report.actions) if report.resumed_ticks else 0
            self._samples_seen = len(report.samples) if report.resumed_ticks else 0
            self._accepted_seen = len(report.accepted) if report.resumed_ticks else 0
        if hour <= self._hour and not last:
            return
        new = report.actions[self._seen:]
        samples = report.samples[self._samples_seen:]
        accepted = report.accepted[self._accepted_seen:]
        self._seen, self._samples_seen, self._hour = len(report.actions), len(report.samples), hour
        self._accepted_seen = len(report.accepted)
        checks = sum(1 for a in new if a.action == "check")
        cals: dict[str, int] = {}  # accepted: full calibrations and checks' own corrections
        for _, n in accepted:
            cals[n] = cals.get(n, 0) + 1
        shots = sum(a.shots for a in new)
        err = [v[0] for _, s in samples for v in s.values()]
        hours_total = total * self.tick_s / 3600.0
        line = (f"{self.label}: hour {tick * self.tick_s / 3600.0:.3g}/{hours_total:.3g}: checks {checks}, "
                f"recalibrations {sum(cals.values())}"
                + (" (" + ", ".join(f"{n}×{k}" if k > 1 else n for n, k in sorted(cals.items())) + ")" if cals else "")
                + f", shots {shots} (run {report.shots})"
                + (f", true mean X error {sum(err) / len(err):.3g}" if err else ""))
        self._write(line, self._clock())


def truth_evaluator(device: Any, qubits: Sequence[str]) -> Any:
    """Per tick, the true (X, X90, limit) of each qubit whose pulses the store holds, or
    None when the device cannot score a qubit alone (neighbours simulated, or a backend)."""
    from pulsecal.agents.pipelines.bench_nodes import true_errors

    if getattr(device, "spectators", "none") != "none" or not hasattr(device, "current_model"):
        return None

    def evaluate(dev: Any, params: Mapping[str, float]) -> dict[str, tuple[float, float, float]]:
        out = {}
        for q in qubits:
            if f"{q}.pi_amplitude" not in params or f"{q}.frequency_hz" not in params:
                continue
            try:
                out[q] = true_errors(dev, q, params)
            except (ValueError, KeyError):  # pulses not playable yet
                continue
        return out

    return evaluate


def run_maintenance(graph: CalibrationGraph, device: Any, store: ParameterStore, folder: Path,
                    settings: MaintenanceSettings, *, seed: int, run_id: str, ledger: Any,
                    qubits: Sequence[str], evaluate: bool, config: Mapping[str, Any],
                    stream: TextIO | None = None, drift: Any = None) -> MaintenanceReport:
    """The maintenance part of a run (module docstring)."""
    path = None
    if drift is not None and hasattr(device, "set_drift_state"):
        def path(start: Mapping[tuple[str, ...], Any], clock: float) -> DriftPath:
            return DriftPath(drift, start, clock, settings.hours * 3600.0 + _PATH_MARGIN_S, seed=seed)
    # Scored: the qubits the graph calibrates (the others hold the spec-sheet priors).
    qubits = [q for q in qubits if any(graph[n].target == q for n in graph.names)]
    progress = HourProgress(f"{run_id} maintain {settings.strategy}", stream=stream, tick_s=settings.tick_s)
    with progress:
        m = Maintainer(graph, device, store, settings, journal=maintenance_journal(folder), ledger=ledger,
                       seed=seed, run_id=run_id, evaluate=truth_evaluator(device, qubits) if evaluate else None,
                       drift_path=path, progress=progress.tick, config=config)
        return m.run()


def summary(report: MaintenanceReport, settings: MaintenanceSettings) -> dict[str, Any]:
    """report.json's ``maintenance`` section (samples truth-only, as the bring-up's evaluation)."""
    d = report.to_dict()
    d["settings"] = settings.to_dict()
    d["recalibrations_per_qubit"] = {}
    for n, k in report.recalibrations.items():
        q = qubit_of(n)
        d["recalibrations_per_qubit"][q] = d["recalibrations_per_qubit"].get(q, 0) + k
    if report.samples:
        d["truth_only"] = True
    return d


def timeline_of(report: MaintenanceReport, settings: MaintenanceSettings,
                qubits: Sequence[str]) -> MaintenanceTimeline:
    """The report's maintenance section from a run (rows: the qubits it looked at or scored,
    then the pairs it looked at)."""
    seen = {qubit_of(a.node) for a in report.actions} | {q for _, s in report.samples for q in s}
    rows = [q for q in qubits if q in seen] + sorted(seen - set(qubits))
    return MaintenanceTimeline(
        strategy=settings.strategy, start_clock_s=report.start_clock_s, hours=settings.hours, qubits=tuple(rows),
        events=tuple(MaintenanceEvent(a.time_s, qubit_of(a.node), a.node, a.action, a.status, a.shots)
                     for a in report.actions),
        recalibrations=tuple((t, qubit_of(n), n) for t, n in report.accepted),
        samples=tuple(report.samples), shots_per_hour=tuple(report.shots_per_hour))


def summary_line(folder: Path, report: MaintenanceReport, settings: MaintenanceSettings) -> str:
    me = report.mean_errors()
    checks = sum(1 for a in report.actions if a.action == "check")
    line = (f"{folder}: maintained {settings.hours:g} h ({settings.strategy}): {checks} checks, "
            f"{sum(report.recalibrations.values())} recalibrations accepted, {report.shots} shots"
            + (f"; {report.resumed_ticks} ticks finished before this process" if report.resumed_ticks else ""))
    if math.isfinite(me["x_error"]):
        line += (f"; true time-averaged X error {me['x_error']:.3g} (coherence limit {me['coherence_limit']:.3g}, "
                 f"excess {me['x_excess']:.3g})")
    if report.failed:
        line += f"; failed: {', '.join(sorted(report.failed))}"
    return line


__all__ = ["HourProgress", "MaintainConf", "check_hours", "run_maintenance", "settings_of", "summary",
           "summary_line", "timeline_of", "truth_evaluator"]
