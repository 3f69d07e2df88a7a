"""The end of a ``pulsecal-calibrate`` run: its HTML report and the truth-only evaluation.

``report_input`` turns the scheduler's outcomes and the journal's last ``calibrate``
result per node into ``agents.graph.report.ReportInput`` (the 1Q errors and readout
fidelities on the device map are the run's own measurements: ``qN.gate_error`` from RB,
``qN.readout_fidelity`` from the readout node). ``evaluate`` scores the calibrated X and
X90 pulses against the simulation's truth, as ``bench_nodes`` does: evaluation only,
never read by a node.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pulsecal.agents.graph.experiment import ExperimentResult
from pulsecal.agents.graph.graph import CalibrationGraph
from pulsecal.agents.graph.journal import GraphJournal
from pulsecal.agents.graph.report import DeviceLayout, NodeRecord, NodeState, ReportInput
from pulsecal.agents.graph.scheduler import BLOCKED, CALIBRATED, FAILED, SKIPPED, RunReport

_STATES: dict[str, NodeState] = {CALIBRATED: "done", SKIPPED: "skipped", FAILED: "failed", BLOCKED: "blocked"}


def _last_results(journal: GraphJournal) -> dict[str, ExperimentResult]:
    out: dict[str, ExperimentResult] = {}
    for rec in journal.records():
        if rec.get("event") != "op" or rec.get("op") != "calibrate":
            continue
        r = rec.get("result", {})
        target = r.get("target")
        data = dict(r.get("data") or {})
        if "kind" not in data and "x" in data and "y" in data:
            # the node library's results are x/y curves (with fit) without naming the kind
            data["kind"] = "curve"
        out[str(rec.get("of"))] = ExperimentResult(
            str(r.get("experiment")), target if isinstance(target, str) else tuple(target), r.get("status"),
            dict(r.get("values", {})), dict(r.get("quality", {})), int(r.get("shots", 0)),
            float(r.get("device_time_s", 0.0)), data, str(r.get("message", "")))
    return out


def report_input(run_id: str, device: str, graph: CalibrationGraph, report: RunReport, journal: GraphJournal,
                 qubits: Sequence[str], edges: Sequence[tuple[str, str]], current: Mapping[str, float],
                 evaluation: Mapping[str, Any] | None = None) -> ReportInput:
    results = _last_results(journal)
    nodes = []
    for name in graph.names:
        o = report.outcomes.get(name)
        node = graph[name]
        nodes.append(NodeRecord(name, node.experiment.name, node.target,
                                _STATES.get(o.outcome, "pending") if o is not None else "pending",
                                results.get(name), o.attempts if o is not None else 0))
    dag = tuple((d, name) for name in graph.names for d in graph[name].dependencies)
    gate = {q: float(current[f"{q}.gate_error"]) for q in qubits
            if math.isfinite(current.get(f"{q}.gate_error", math.nan)) and 0 <= current[f"{q}.gate_error"] <= 1}
    fid = {q: float(current[f"{q}.readout_fidelity"]) for q in qubits if f"{q}.readout_fidelity" in current}
    gate2 = {(a, b): float(current[f"{a}-{b}.cz_gate_error"]) for a, b in edges
             if math.isfinite(current.get(f"{a}-{b}.cz_gate_error", math.nan))
             and 0 <= current[f"{a}-{b}.cz_gate_error"] <= 1}
    notes = ["1Q errors on the map are the run's RB results; readout fidelities its readout nodes'; CZ errors "
             "its interleaved 2Q RB results (couplers without a flux line have no CZ nodes)."]
    if evaluation:
        ratios = [f"{q} {v['mean_error_over_limit']:.2f}×" for q, v in evaluation.items()]
        notes.append("Truth-only evaluation (simulation, not measured): mean X/X90 error over the coherence "
                     "limit: " + ", ".join(ratios))
    return ReportInput(run_id=run_id, device=device, nodes=tuple(nodes), edges=dag,
                       layout=DeviceLayout(tuple(qubits), tuple(edges)), gate_error_1q=gate, readout_fidelity=fid,
                       gate_error_2q=gate2,
                       total_shots=report.shots, total_device_time_s=report.clock_s, notes=tuple(notes))


def evaluate(device: Any, current: Mapping[str, float], qubits: Sequence[str],
             report: RunReport) -> dict[str, dict[str, float]]:
    """Per qubit whose ``rb1q`` node calibrated: the true X and X90 errors and the true
    coherence limit (truth, evaluation only; needs ``device.spectators=none``)."""
    from pulsecal.agents.pipelines.bench_nodes import true_errors

    out: dict[str, dict[str, float]] = {}
    for q in qubits:
        o = report.outcomes.get(f"rb1q:{q}")
        if o is None or o.outcome != CALIBRATED:
            continue
        try:
            x, sx, limit = true_errors(device, q, current)
        except ValueError:  # neighbours simulated with it: the lone-qubit score does not apply
            continue
        out[q] = {"x_error": x, "sx_error": sx, "coherence_limit": limit,
                  "mean_error_over_limit": 0.5 * (x + sx) / limit}
    return out


def evaluate_pairs(device: Any, current: Mapping[str, float], edges: Sequence[tuple[str, str]],
                   report: RunReport) -> dict[str, dict[str, float]]:
    """Per coupler whose ``cz_calibration`` node calibrated: the stored CZ's true error,
    leakage and coherence limit and the pair's true static ZZ (``bench_nodes.true_cz_errors``;
    truth, evaluation only; needs ``device.spectators=none``)."""
    from pulsecal.agents.pipelines.bench_nodes import true_cz_errors

    out: dict[str, dict[str, float]] = {}
    for a, b in edges:
        o = report.outcomes.get(f"cz_calibration:{a}-{b}")
        if o is None or o.outcome != CALIBRATED:
            continue
        try:
            out[f"{a}-{b}"] = true_cz_errors(device, (a, b), current)
        except (ValueError, KeyError):  # neighbours simulated with it, or a value missing
            continue
    return out


__all__ = ["evaluate", "evaluate_pairs", "report_input"]
