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

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pulsecal.agents.graph.graph import CalibrationGraph
from pulsecal.agents.graph.maintain import (
    MAX_HOURS,
    STRATEGIES,
    DriftPath,
    Maintainer,
    MaintenanceReport,
    MaintenanceSettings,
    is_pair,
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


def _maintain_conf() -> type:
    """``maintain:`` in ``configs/calibrate.yaml``: ``MaintenanceSettings``' fields with their
    defaults (``hours`` is the run's own key), plus ``evaluate``, built from the settings
    so the two cannot drift apart. ``strategy`` is a ``str`` here (OmegaConf has no
    ``Literal``); ``settings_of`` refuses a value outside ``STRATEGIES``."""
    hints = typing.get_type_hints(MaintenanceSettings)
    fields: list[tuple[str, Any, Any]] = [
        (f.name, str if f.name == "strategy" else hints[f.name], dataclasses.field(default=f.default))
        for f in dataclasses.fields(MaintenanceSettings) if f.name != "hours"]
    fields.append(("evaluate", bool, dataclasses.field(default=True)))
    conf = dataclasses.make_dataclass("MaintainConf", fields)
    conf.__module__ = __name__
    conf.__doc__ = "``maintain:`` in ``configs/calibrate.yaml`` (``MaintenanceSettings``' fields, and ``evaluate``)."
    return conf


if TYPE_CHECKING:
    class MaintainConf:
        """What mypy sees of the class ``_maintain_conf`` builds: its fields are
        ``MaintenanceSettings``' (without ``hours``) and ``evaluate``."""

        def __init__(self, **fields: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...
else:
    MaintainConf = _maintain_conf()


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
    names = [f.name for f in dataclasses.fields(MaintenanceSettings) if f.name != "hours"]
    try:
        return MaintenanceSettings(hours=float(hours), **{k: getattr(m, k) for k in names})
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
        err = [v[0] for _, s in samples for k, v in s.items() if not is_pair(k)]
        cz = [v[0] for _, s in samples for k, v in s.items() if is_pair(k)]
        hours_total = total * self.tick_s / 3600.0
        line = (f"{self.label}: hour {tick * self.tick_s / 3600.0:.3g}/{hours_total:.3g}: checks {checks}, "
                f"recalibrations {sum(cals.values())}"
                + (" (" + ", ".join(f"{n}×{k}" if k > 1 else n for n, k in sorted(cals.items())) + ")" if cals else "")
                + f", shots {shots} (run {report.shots})"
                + (f", true mean X error {sum(err) / len(err):.3g}" if err else "")
                + (f", CZ error {sum(cz) / len(cz):.3g}" if cz else ""))
        self._write(line, self._clock())


def truth_evaluator(device: Any, qubits: Sequence[str], pairs: Sequence[tuple[str, str]] = ()) -> Any:
    """Per tick, the true (X, X90, limit) of each qubit whose pulses the store holds and the
    true (CZ error, leakage, limit) of each pair of ``pairs`` whose CZ it holds (key
    ``a-b``), or None when the device cannot score a qubit alone (neighbours simulated, or a
    backend)."""
    from pulsecal.agents.pipelines.bench_nodes import true_cz_errors, true_errors

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
        for p in pairs:
            if f"{p[0]}-{p[1]}.cz_amplitude_phi0" not in params:
                continue
            try:
                cz = true_cz_errors(dev, p, params)
            except (ValueError, KeyError):  # a pulse of the pair not playable
                continue
            out[f"{p[0]}-{p[1]}"] = (cz["error"], cz["leakage"], cz["coherence_limit"])
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
    pairs = [tuple(graph[n].target) for n in graph.names if n.startswith("cz_calibration:")]
    progress = HourProgress(f"{run_id} maintain {settings.strategy}", stream=stream, tick_s=settings.tick_s)
    with progress:
        m = Maintainer(graph, device, store, settings, journal=maintenance_journal(folder), ledger=ledger,
                       seed=seed, run_id=run_id, evaluate=truth_evaluator(device, qubits, pairs) if evaluate else None,
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
    if math.isfinite(me["cz_error"]):
        line += (f", CZ error {me['cz_error']:.3g} (limit {me['cz_limit']:.3g}, excess {me['cz_excess']:.3g}), "
                 f"every gate {me['gate_error']:.3g} (excess {me['gate_excess']:.3g})")
    if report.failed:
        line += f"; failed: {', '.join(sorted(report.failed))}"
    return line


__all__ = ["HourProgress", "MaintainConf", "check_hours", "run_maintenance", "settings_of", "summary",
           "summary_line", "timeline_of", "truth_evaluator"]
