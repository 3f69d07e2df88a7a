"""Held-out bring-up of ``ring_8`` by the calibration graph, with and without planted faults.

    python -m pulsecal.agents.pipelines.bench_bringup --devices 2 --seed 0
    python -m pulsecal.agents.pipelines.bench_bringup --devices 1 --faults-only --json out.json

Each held-out device (``held_out_multi_qubit_devices`` of ``MultiQubitSampler(ring_8)``,
a stream no training seed reaches) is brought up twice by ``configs/graph/bringup.yaml``:
healthy, and with three planted faults (``envs.multi_qubit_faults``: a dead qubit, a TLS
on another qubit, a coupler stuck off between two healthy qubits, placed by the seed).
Priors are the targets' coarse ones: each qubit's frequency within ±20 MHz of its truth,
its π amplitude within ×[1/2, 2] of the one its Rabi rate asks for, DRAG β = 0, readout
uncalibrated (``bench_nodes.priors``, taken on the healthy device, so a fault is not in
the priors). ``spectators="none"`` (a qubit's neighbours are not simulated with it): the
neighbours' open-system simulation costs minutes per node on two shared cores, and the
lone-qubit truth score (``bench_nodes.true_errors``) needs it.

Printed per run and over the runs, against the bring-up's targets: the median over healthy
calibrated qubits of the true X and X90 errors over the coherence limit (≤ 1.1×), the
readout assignment gap of the fitted discriminator to the optimal one for the qubit's SNR
and decay (``readout.optimal_gap``, ≤ 0.5 %), the planted faults isolated *and named
right* (``agents.graph.faults``; every one), the false faults (findings on healthy qubits
or couplers; none), the findings the data could not name (``undetermined``), shots, device
time (≤ 5 min) and wall time. The truth is read only to
plant the faults, to draw the priors and for the scores after the run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pulsecal.agents.graph.faults import COUPLER_OFF, DEAD, TLS_LIKE, UNDETERMINED, Finding, isolate
from pulsecal.agents.graph.graph import graph_from_definition
from pulsecal.agents.graph.journal import GraphJournal
from pulsecal.agents.graph.readout import optimal_gap
from pulsecal.agents.graph.scheduler import CALIBRATED, Scheduler
from pulsecal.agents.graph.store import ParameterStore
from pulsecal.agents.pipelines.bench_nodes import priors, true_errors
from pulsecal.agents.pipelines.calibrate_report import _last_results, evaluate
from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_faults import Fault, plant_faults
from pulsecal.envs.multi_qubit_presets import (
    MultiQubitSampler,
    get_multi_qubit_preset,
    held_out_multi_qubit_devices,
)

GRAPH = Path(__file__).resolve().parents[2] / "configs" / "graph" / "bringup.yaml"
PLANTED = (Fault("dead"), Fault("tls"), Fault("coupler_off"))
EXPECTED = {"dead": DEAD, "tls": TLS_LIKE, "coupler_off": COUPLER_OFF}


@dataclass
class BringUp:
    """One bring-up's scores (module docstring)."""

    device: str
    faulty: bool
    planted: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    x_over_limit: dict[str, float] = field(default_factory=dict)
    sx_over_limit: dict[str, float] = field(default_factory=dict)
    readout_gap: dict[str, float] = field(default_factory=dict)
    # healthy qubits whose chain ran but whose rb1q did not calibrate: their true scores,
    # to tell a false alarm of the RB verdict from a gate that is really off
    unverified_over_limit: dict[str, list[float]] = field(default_factory=dict)
    isolated: int = 0
    false_faults: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    shots: int = 0
    device_time_s: float = 0.0
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _score_faults(planted: Sequence[Fault], findings: Sequence[Finding]) -> tuple[int, list[str], list[str]]:
    """(isolated and named right, false faults, missed): a planted fault counts when a
    finding sits on its target with its kind; a finding on a target nothing was planted on
    is a false fault."""
    by_target = {f.target: f for f in findings}
    isolated, missed = 0, []
    for p in planted:
        f = by_target.get(str(p.target))
        if f is not None and f.kind == EXPECTED[p.kind]:
            isolated += 1
        else:
            missed.append(f"{p.kind} {p.target}: " + ("not found" if f is None else f"named {f.kind}: {f.line}"))
    targets = {str(p.target) for p in planted}
    false = [f.line for f in findings if f.target not in targets]
    return isolated, false, missed


def bring_up(name: str, params: MultiQubitParams, faults: Sequence[Fault], seed: int,
             graph_definition: dict[str, Any]) -> BringUp:
    preset = get_multi_qubit_preset("ring_8")
    healthy = SimulatedMultiQubitDevice(params, None, spectators="none")
    start = {}
    prior_rng = np.random.default_rng([seed, 0x9410])
    for q in healthy.qubits:
        start.update(priors(healthy, q, prior_rng))
    truth, drift, planted = plant_faults(params, preset.drift, faults, np.random.default_rng([seed, 0xFA17]))
    device = SimulatedMultiQubitDevice(truth, drift, rng=np.random.default_rng(seed), spectators="none",
                                       max_dimension=81)
    qubits, edges = tuple(preset.coupling_map.qubits), tuple(preset.coupling_map.edges)
    # The device's channels decide which couplers get the flux-CZ nodes and which the ECR
    # (graph.py), as pulsecal-calibrate builds the graph.
    graph = graph_from_definition(graph_definition, qubits, edges, channels=tuple(truth.channels.all))
    out = BringUp(name, bool(faults), [f.to_dict() for f in planted])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_bringup_") as tmp:
        journal = GraphJournal(Path(tmp), fsync=False)
        store = ParameterStore(None)
        store.record("priors", start, experiment="bench_nodes.priors", run_id=name)
        report = Scheduler(graph, device, store, qubits=qubits, edges=edges, journal=journal, seed=seed,
                           run_id=name).run()
        findings = isolate(report, graph, _last_results(journal),
                           [r for r in journal.records() if r.get("event") == "op"])
    out.wall_s = time.perf_counter() - t0
    current = store.current()
    out.findings = [f.to_dict() for f in findings]
    out.counts = report.to_dict()["counts"]
    out.shots, out.device_time_s = report.shots, report.clock_s
    out.isolated, out.false_faults, out.missed = _score_faults(planted, findings)
    faulty_qubits = {str(f.qubit) for f in planted if f.qubit is not None}
    for q, v in evaluate(device, current, qubits, report).items():
        if q not in faulty_qubits:
            out.x_over_limit[q] = v["x_error"] / v["coherence_limit"]
            out.sx_over_limit[q] = v["sx_error"] / v["coherence_limit"]
    for q in qubits:
        o = report.outcomes.get(f"fine_amplitude_2:{q}")
        if q in faulty_qubits or q in out.x_over_limit or o is None or o.outcome != CALIBRATED:
            continue
        x_err, sx_err, limit = true_errors(device, q, current)
        out.unverified_over_limit[q] = [x_err / limit, sx_err / limit]
    for q in qubits:
        o = report.outcomes.get(f"readout:{q}")
        if q in faulty_qubits or o is None or o.outcome != CALIBRATED:
            continue
        out.readout_gap[q] = float(optimal_gap(device, q, current)["gap"])
    return out


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def report_lines(runs: Sequence[BringUp]) -> list[str]:
    lines = ["run                      nodes (done/failed/blocked)  X/limit  X90/limit  readout gap  "
             "faults named  false  shots    device s  wall s"]
    for r in runs:
        c = r.counts
        x = _median(list(r.x_over_limit.values()))
        sx = _median(list(r.sx_over_limit.values()))
        gap = _median(list(r.readout_gap.values()))
        lines.append(f"{r.device + (' +faults' if r.faulty else ''):<24} "
                     f"{c.get('calibrated', 0):>3}/{c.get('failed', 0)}/{c.get('blocked', 0):<22} {x:>6.3f}×  "
                     f"{sx:>7.3f}×  {gap * 100:>9.2f} %  {r.isolated}/{len(r.planted):<11} "
                     f"{len(r.false_faults):<5}  {r.shots:<7}  {r.device_time_s:>8.1f}  {r.wall_s:>6.0f}")
        for f in r.findings:
            lines.append(f"    finding {f['line']}")
        for m in r.missed:
            lines.append(f"    MISSED {m}")
        for line in r.false_faults:
            lines.append(f"    FALSE {line}")
        for q, (x_r, sx_r) in r.unverified_over_limit.items():
            lines.append(f"    {q}: RB did not pass; true X error {x_r:.3f}×, X90 {sx_r:.3f}× the coherence limit")
    xs = [v for r in runs for v in r.x_over_limit.values()]
    sxs = [v for r in runs for v in r.sx_over_limit.values()]
    gaps = [v for r in runs for v in r.readout_gap.values()]
    planted = sum(len(r.planted) for r in runs)
    undetermined = sum(f["kind"] == UNDETERMINED for r in runs for f in r.findings)
    lines.append(
        f"over {len(runs)} runs: median X error {_median(xs):.3f}× and X90 {_median(sxs):.3f}× the coherence limit "
        f"(target <= 1.1×; {len(xs)} healthy qubits); median readout gap to the optimal discriminator "
        f"{_median(gaps) * 100:.2f} % (max {max(gaps, default=math.nan) * 100:.2f} %; target <= 0.5 %); faults "
        f"isolated and named {sum(r.isolated for r in runs)}/{planted}; false faults "
        f"{sum(len(r.false_faults) for r in runs)}; undetermined findings {undetermined}; device time max {max(r.device_time_s for r in runs) / 60:.2f} min "
        f"(target <= 5 min); shots max {max(r.shots for r in runs)}; wall time {sum(r.wall_s for r in runs):.0f} s")
    return lines


def run_bench(n_devices: int, seed: int, *, healthy: bool = True, faulty: bool = True,
              progress: bool = False, first: int = 0) -> list[BringUp]:
    """Held-out devices ``first`` .. ``first + n_devices − 1``, each healthy and/or faulty."""
    definition = yaml.safe_load(GRAPH.read_text())
    sampled = held_out_multi_qubit_devices(first + n_devices, MultiQubitSampler(preset="ring_8"))
    runs = []
    for i, params in enumerate(sampled):
        if i < first:
            continue
        for with_faults in ((False,) if healthy else ()) + ((True,) if faulty else ()):
            runs.append(bring_up(f"held_out_{i}", params, PLANTED if with_faults else (), seed + i, definition))
            if progress:
                print(report_lines(runs[-1:])[1], file=sys.stderr, flush=True)
    return runs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=2, help="held-out ring_8 devices (each run healthy and faulty)")
    ap.add_argument("--first", type=int, default=0, help="index of the first held-out device")
    ap.add_argument("--seed", type=int, default=0, help="seeds the device noise, priors and fault placement")
    ap.add_argument("--faults-only", action="store_true", help="only the runs with planted faults")
    ap.add_argument("--healthy-only", action="store_true", help="only the healthy runs")
    ap.add_argument("--json", type=Path, default=None, help="write every run's scores here")
    a = ap.parse_args(argv)
    if a.devices < 1:
        ap.error(f"--devices={a.devices}: allowed an integer >= 1")
    if a.first < 0:
        ap.error(f"--first={a.first}: allowed an integer >= 0")
    runs = run_bench(a.devices, a.seed, healthy=not a.faults_only, faulty=not a.healthy_only, progress=True,
                     first=a.first)
    for line in report_lines(runs):
        print(line)
    if a.json is not None:
        a.json.write_text(json.dumps([r.to_dict() for r in runs], indent=1) + "\n")


if __name__ == "__main__":
    main()
