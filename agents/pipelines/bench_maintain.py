"""Maintenance benchmark: the graph strategy against the fixed schedule on one drift path.

``python -m pulsecal.agents.pipelines.bench_maintain --qubits q0,q1,q2,q3 --hours 3`` brings
``ring_8`` up once from the spec-sheet priors with ``configs/graph/maintain.yaml``'s nodes
(simulated with ``spectators="none"``: each qubit or pair alone, as ``bench_nodes``; the
couplers between the chosen qubits too, unless ``--no-couplers``; the tunable qubits' idle
flux drifting by ``--flux-drift`` Φ0/sqrt(h), ``envs.multi_qubit_drift.with_flux_drift``), then runs
every strategy asked for on a copy of that device and of that store, with one seeded
``DriftPath`` replayed on all of them, so they see the same truth:

- ``graph``: check_state timeouts, check_data, diagnose (``agents/graph/maintain.py``);
- ``fixed``: a full bring-up every 24 h and hourly checks of every node, recalibrating a
  node whose check failed with its full experiment and then the dependents that leaves
  stale (``MaintenanceSettings.refresh_dependents``: the fixed schedule a lab would run);
- ``fixed_corrects``: the same, taking a failed check's own fit as the recalibration when
  it has one (as ``graph`` does: ``MaintenanceSettings.check_corrects``);
- ``fixed_checks``: the same schedule whose hourly checks only report.

Every tick (``--tick-s``) samples, before the strategy acts, the true X and X90 errors of
the store's current pulses on the simulator at that moment and the qubit's true
coherence limit (``bench_nodes.true_errors``), and each coupler's true CZ error with its
two-qubit coherence limit (``bench_nodes.true_cz_errors``): evaluation only, never read by
a decision. It prints per strategy the time-averaged X, CZ and every-gate errors (``table``),
each one's excess over its coherence limit, shots, recalibrations and wall time, then each
strategy's ratios to the graph's.

The fixed schedule's 24-hourly bring-up falls at the run's start, which is the shared
starting bring-up, so its shots "as run" hold no bring-up; ``with bring-up share`` adds
hours/24 of the measured bring-up's shots, its steady-state cost. The comparison at
matched shots uses the as-run number (the stricter one for the graph).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.agents.graph.graph import graph_from_definition, load_definition
from pulsecal.agents.graph.maintain import (
    DriftPath,
    Maintainer,
    MaintenanceReport,
    MaintenanceSettings,
)
from pulsecal.agents.graph.report_maintenance import draw_maintenance
from pulsecal.agents.graph.scheduler import Scheduler
from pulsecal.agents.graph.store import ParameterStore
from pulsecal.agents.pipelines.bench_nodes import true_cz_errors, true_errors
from pulsecal.agents.pipelines.calibrate import spec_sheet_priors
from pulsecal.agents.pipelines.calibrate_maintain import timeline_of
from pulsecal.envs.multi_qubit_drift import FLUX_DRIFT_PHI0_PER_SQRT_HOUR, with_flux_drift
from pulsecal.envs.multi_qubit_presets import MultiQubitPreset, get_multi_qubit_preset

STRATEGY_SETTINGS: dict[str, dict[str, Any]] = {
    "graph": {"strategy": "graph"},
    "fixed": {"strategy": "fixed", "check_corrects": False},
    "fixed_corrects": {"strategy": "fixed"},
    "fixed_checks": {"strategy": "fixed", "recalibrate_failed_checks": False},
}
_PATH_MARGIN_S = 7200.0


def copy_store(store: ParameterStore) -> ParameterStore:
    """An in-memory store with ``store``'s versions (each strategy writes its own)."""
    out = ParameterStore()
    for v in store.versions:
        d = v.to_dict()
        for k in ("version", "node", "values", "recorded_at"):
            d.pop(k)
        out.record(v.node, v.values, **d)
    return out


def bench_preset(flux_drift: float | None) -> MultiQubitPreset:
    """ring_8, with the idle-flux random walk of ``flux_drift`` Φ0/sqrt(h) on its tunable
    qubits (``envs.multi_qubit_drift.with_flux_drift``; None or 0: the preset's drift)."""
    preset = get_multi_qubit_preset("ring_8")
    if not flux_drift:
        return preset
    return dataclasses.replace(preset, drift=with_flux_drift(preset.drift, preset.params.model, flux_drift))


def maintenance_graph(qubits: Sequence[str], couplers: bool, definition: str | None = None) -> Any:
    preset = get_multi_qubit_preset("ring_8")
    path = definition or str(resources.files("pulsecal.configs") / "graph" / "maintain.yaml")
    d = load_definition(path)
    d["qubits"] = list(qubits)
    if not couplers:
        d["coupler_nodes"] = None
    # the device's channels decide which couplers get the flux CZ (and which the ECR)
    return graph_from_definition(d, preset.coupling_map.qubits, preset.coupling_map.edges,
                                 channels=tuple(preset.params.channels.all))


def graph_pairs(graph: Any) -> list[tuple[str, str]]:
    """The couplers whose CZ the graph calibrates (scored by the evaluation)."""
    return [tuple(graph[n].target) for n in graph.names if n.startswith("cz_calibration:")]


def run_bench(qubits: Sequence[str], hours: float, *, seed: int = 0, drift_seed: int = 5, tick_s: float = 300.0,
              strategies: Sequence[str] = ("graph", "fixed", "fixed_checks"), couplers: bool = True,
              definition: str | None = None, log: Any = print, figures: str | None = None,
              json_path: str | None = None,
              flux_drift: float | None = FLUX_DRIFT_PHI0_PER_SQRT_HOUR) -> dict[str, Any]:
    preset = bench_preset(flux_drift)
    graph = maintenance_graph(qubits, couplers, definition)
    pairs = graph_pairs(graph)
    device = preset.make(np.random.default_rng(seed), spectators="none")
    store = ParameterStore()
    store.record("priors", spec_sheet_priors(preset, device.dt_s, seed, 20e6, 2.0), experiment="spec_sheet")
    t0 = time.perf_counter()
    bring = Scheduler(graph, device, store, qubits=preset.coupling_map.qubits, edges=preset.coupling_map.edges,
                      seed=seed).run()
    out: dict[str, Any] = {"qubits": list(qubits), "pairs": ["-".join(p) for p in pairs], "hours": hours,
                           "seed": seed, "drift_seed": drift_seed, "tick_s": tick_s,
                           "flux_drift_phi0_per_sqrt_hour": flux_drift or 0.0, "bringup": {"shots": bring.shots, "clock_s": bring.clock_s,
                                                         "counts": bring.to_dict()["counts"],
                                                         "failed": list(bring.failed),
                                                         "wall_s": time.perf_counter() - t0},
                           "strategies": {}}
    log(f"bring-up: {bring.shots} shots, {bring.clock_s:.1f} s device time, {bring.to_dict()['counts']}, "
        f"wall {out['bringup']['wall_s']:.0f} s")

    unscored: dict[str, int] = {}

    def evaluate(dev: Any, params: Mapping[str, float]) -> dict[str, tuple[float, float, float]]:
        out = {}
        for q in qubits:
            try:
                out[q] = true_errors(dev, q, params)
            except ValueError:  # the store's pulse is not playable (amplitude past the AWG range)
                unscored[current] = unscored.get(current, 0) + 1
        for p in pairs:
            if f"{'-'.join(p)}.cz_amplitude_phi0" not in params:
                continue  # its CZ never calibrated (its bring-up failed or was blocked)
            try:
                cz = true_cz_errors(dev, p, params)
            except ValueError:  # a flux pulse past the line's range, or a qubit's pulse unplayable
                unscored[current] = unscored.get(current, 0) + 1
                continue
            out["-".join(p)] = (cz["error"], cz["leakage"], cz["coherence_limit"])
        return out

    for name in strategies:
        current = name
        settings = MaintenanceSettings(hours=hours, tick_s=tick_s, **STRATEGY_SETTINGS[name])
        dev = copy.deepcopy(device)
        st = copy_store(store)

        def path(start: Mapping[tuple[str, ...], Any], clock: float) -> DriftPath:
            return DriftPath(preset.drift, start, clock, hours * 3600.0 + _PATH_MARGIN_S, seed=drift_seed)

        t1 = time.perf_counter()
        rep = Maintainer(graph, dev, st, settings, seed=seed + 1, evaluate=evaluate, drift_path=path).run()
        row = strategy_row(rep)
        row["wall_s"] = time.perf_counter() - t1
        # Qubit-ticks whose pulse was not playable: left out of the averages, counted here.
        row["unscored_samples"] = unscored.get(name, 0)
        row["report"] = rep.to_dict()
        out["strategies"][name] = row
        if figures:
            Path(figures).mkdir(parents=True, exist_ok=True)
            png = Path(figures) / f"maintenance_{name}.png"
            draw_maintenance(timeline_of(rep, settings, qubits), png)
            log(f"{name}: timeline {png}")
        if json_path:  # after every strategy: a long run stopped early keeps what finished
            Path(json_path).write_text(json.dumps(out, indent=1))
        log(f"{name}: wall {row['wall_s']:.0f} s, shots {row['shots']}, X error {row['x_error']:.3e}, "
            f"excess {row['x_excess']:.3e}, CZ error {row['cz_error']:.3e}, excess {row['cz_excess']:.3e}, "
            f"unscored gate-ticks {row['unscored_samples']}, failed {row['failed']}")
    return out


def strategy_row(rep: MaintenanceReport) -> dict[str, Any]:
    me = rep.mean_errors()
    checks = sum(1 for a in rep.actions if a.action == "check")
    by_node: dict[str, int] = {}
    for a in rep.actions:
        key = f"{a.node.partition(':')[0]}/{a.action}"
        by_node[key] = by_node.get(key, 0) + a.shots
    return {**me, "shots": rep.shots, "shots_per_hour": list(rep.shots_per_hour), "checks": checks,
            "calibrations": len(rep.actions) - checks, "accepted": sum(rep.recalibrations.values()),
            "failed": sorted(rep.failed), "shots_by_template": dict(sorted(by_node.items(), key=lambda kv: -kv[1]))}


_COLUMNS = (("X error", "x_error"), ("X90 err", "sx_error"), ("X limit", "coherence_limit"),
            ("X excess", "x_excess"), ("CZ error", "cz_error"), ("CZ limit", "cz_limit"),
            ("CZ excess", "cz_excess"), ("gate err", "gate_error"), ("gate exc", "gate_excess"))


def table(out: Mapping[str, Any]) -> str:
    """The benchmark's table: per strategy the time-averaged true errors (X and X90 over the
    qubits, CZ over the couplers, ``gate``: the mean over every gate of the device, each
    qubit's X and each coupler's CZ weighted alike), each gate's error above its coherence
    limit (``excess``), shots, checks, calibrations; then every strategy's ratios to graph."""
    hours = float(out["hours"])
    share = out["bringup"]["shots"] * hours / 24.0
    pairs = out.get("pairs") or []
    rows = [f"ring_8 {','.join(out['qubits'])} (couplers {','.join(pairs) or 'none'}), {hours:g} h, tick "
            f"{out['tick_s']:g} s, drift seed {out['drift_seed']}, flux drift "
            f"{out.get('flux_drift_phi0_per_sqrt_hour', 0.0):g} Φ0/√h (true errors of the store's gates, "
            "time-averaged over ticks and gates)",
            f"{'strategy':<13} " + " ".join(f"{h:>9}" for h, _ in _COLUMNS)
            + f" {'shots':>9} {'w/ bring-up':>11} {'checks':>6} {'cals':>5} {'wall s':>6}"]
    for name, r in out["strategies"].items():
        with_share = r["shots"] + (share if name.startswith("fixed") else 0.0)
        rows.append(f"{name:<13} " + " ".join(f"{r.get(k, math.nan):9.3e}" for _, k in _COLUMNS)
                    + f" {r['shots']:9d} {with_share:11.0f} {r['checks']:6d} {r['calibrations']:5d} "
                    f"{r['wall_s']:6.0f}"
                    + (f"  ({r['unscored_samples']} gate-ticks unplayable, not averaged)"
                       if r.get("unscored_samples") else ""))
    g = out["strategies"].get("graph")
    if g is not None:
        for name, r in out["strategies"].items():
            if name == "graph":
                continue
            rows.append(f"{name}/graph: X error {_ratio(r['x_error'], g['x_error'])} (excess "
                        f"{_ratio(r['x_excess'], g['x_excess'])}), CZ error "
                        f"{_ratio(r.get('cz_error', math.nan), g.get('cz_error', math.nan))} (excess "
                        f"{_ratio(r.get('cz_excess', math.nan), g.get('cz_excess', math.nan))}), gate error "
                        f"{_ratio(r.get('gate_error', math.nan), g.get('gate_error', math.nan))} (excess "
                        f"{_ratio(r.get('gate_excess', math.nan), g.get('gate_excess', math.nan))}); shots "
                        f"(graph/{name}) {_ratio(g['shots'], r['shots'])} as run, "
                        f"{_ratio(g['shots'], r['shots'] + share)} with its bring-up share")
    return "\n".join(rows)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 and math.isfinite(a) and math.isfinite(b) else "n/a"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qubits", default="q0,q3", help="comma-separated ring_8 qubits")
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0, help="device, priors and operations")
    ap.add_argument("--drift-seed", type=int, default=5, help="the drift path all strategies share")
    ap.add_argument("--tick-s", type=float, default=300.0)
    ap.add_argument("--strategies", default="graph,fixed,fixed_checks",
                    help=f"comma-separated, of {list(STRATEGY_SETTINGS)}")
    ap.add_argument("--couplers", action=argparse.BooleanOptionalAction, default=True,
                    help="maintain the couplers' nodes (idle check, coupler probe, ZZ, CZ, 2Q RB)")
    ap.add_argument("--flux-drift", type=float, default=FLUX_DRIFT_PHI0_PER_SQRT_HOUR,
                    help="random walk of the tunable qubits' idle flux, Φ0/sqrt(h) (0: none; "
                         "envs.multi_qubit_drift.FLUX_DRIFT_PHI0_PER_SQRT_HOUR)")
    ap.add_argument("--graph", default=None, help="a graph definition YAML (default configs/graph/maintain.yaml)")
    ap.add_argument("--json", default="", help="also write the results (with every report) to this file")
    ap.add_argument("--figures", default="", help="write each strategy's maintenance_<strategy>.png here")
    args = ap.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    for s in strategies:
        if s not in STRATEGY_SETTINGS:
            ap.error(f"--strategies: {s!r}: allowed {list(STRATEGY_SETTINGS)}")
    qubits = [q for q in args.qubits.split(",") if q]
    known = get_multi_qubit_preset("ring_8").coupling_map.qubits
    for q in qubits:
        if q not in known:
            ap.error(f"--qubits: {q!r}: allowed ring_8 qubits {list(known)}")
    if not 0 < args.hours <= 720:
        ap.error(f"--hours: {args.hours}: allowed > 0 and <= 720")
    if not (math.isfinite(args.flux_drift) and 0 <= args.flux_drift <= 0.01):
        ap.error(f"--flux-drift: {args.flux_drift}: allowed >= 0 and <= 0.01 Φ0/sqrt(h)")
    t0 = time.perf_counter()
    out = run_bench(qubits, args.hours, seed=args.seed, drift_seed=args.drift_seed, tick_s=args.tick_s,
                    strategies=strategies, couplers=args.couplers, definition=args.graph,
                    log=lambda s: print(s, flush=True), figures=args.figures or None, json_path=args.json or None,
                    flux_drift=args.flux_drift)
    print(table(out))
    print(f"(wall time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
