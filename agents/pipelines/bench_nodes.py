"""Bring-up benchmark of the single-qubit node library from coarse priors.

``python -m pulsecal.agents.pipelines.bench_nodes`` runs, on every qubit of ``ring_8`` and
of a few held-out sampled ``ring_8`` variations, the chain spectroscopy → Rabi → Ramsey →
T1 → fine amplitude → DRAG (pair) → DRAG (train) → fine amplitude → 1Q RB from priors drawn per qubit (seeded): frequency within
±20 MHz, π amplitude within ×[½, 2] (log-uniform), DRAG β = 0. It prints, per qubit, the
final true error of the calibrated X and X90 gates (device truth, evaluation only:
``envs.physics.metrics.gate_fidelity`` on the qubit's simulated subsystem) over the
qubit's true coherence limit (``coupled.metrics.coherence_limit`` of its mode: T1, T2
and thermal excitation), the RB node's own verdict (from measured T1/T2*), and the shots
and device time of every node; then medians. docs/calibration_nodes.md has the numbers.

The devices are simulated with ``spectators="none"`` (each qubit alone, 3 levels, open
system): the neighbourhood (three 3-level modes, open) costs ~15 s per 20-sample pulse,
~0.13 s with the spectators cut to 2 levels, which the 2500-Clifford RB sequences of 24
qubits cannot afford; the evaluation scores a lone qubit's pulses.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pulsecal.agents.graph.experiment import ExperimentResult
from pulsecal.agents.graph.experiments import (
    RB1Q,
    T1,
    DragCalibration,
    FineAmplitude,
    QubitPulses,
    Rabi,
    Ramsey,
    Spectroscopy,
)
from pulsecal.agents.graph.experiments.pulses import DEFAULT_GATE, program
from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_presets import (
    MultiQubitSampler,
    get_multi_qubit_preset,
    held_out_multi_qubit_devices,
)
from pulsecal.envs.physics.coupled.metrics import coherence_limit
from pulsecal.envs.physics.metrics import gate_fidelity

# Fine amplitude before DRAG: the X·Y90/Y·X90 crossing moves with an amplitude error (a
# 2 % error biased β by ~0.05 ns, 20 % of the coherence limit on the X gate); the train
# then refines β and a last fine amplitude takes up the amplitude β shifted.
CHAIN = (Spectroscopy(), Rabi(), Ramsey(), T1(), FineAmplitude(), DragCalibration(), DragCalibration.train(), FineAmplitude(), RB1Q())
PRIOR_FREQUENCY_HZ = 20e6
PRIOR_AMPLITUDE = (0.5, 2.0)


@dataclass
class QubitRun:
    device: str
    qubit: str
    results: list[ExperimentResult] = field(default_factory=list)
    x_error: float = math.nan
    sx_error: float = math.nan
    limit: float = math.nan
    params: dict[str, float] = field(default_factory=dict)

    @property
    def shots(self) -> int:
        return sum(r.shots for r in self.results)

    @property
    def device_time_s(self) -> float:
        return sum(r.device_time_s for r in self.results)

    @property
    def calibrated(self) -> bool:
        """Every calibration node (all but the final RB check) ran without bad_data."""
        cal = [r for r in self.results if r.experiment != "rb1q"]
        return len(cal) == len(CHAIN) - 1 and all(r.status != "bad_data" for r in cal)

    @property
    def completed(self) -> bool:
        return len(self.results) == len(CHAIN) and all(r.status != "bad_data" for r in self.results)


def priors(device: SimulatedMultiQubitDevice, qubit: str, rng: np.random.Generator) -> dict[str, float]:
    """Coarse priors around the device truth at clock 0 (what a lab has before bring-up):
    the only place the bench reads the truth before the evaluation."""
    mode = device.params.model.mode(qubit)  # type: ignore[union-attr]
    assert mode.rabi_max_hz is not None
    nominal = 1.0 / (2.0 * mode.rabi_max_hz * DEFAULT_GATE.area_s(device.dt_s))
    lo, hi = (math.log(v) for v in PRIOR_AMPLITUDE)
    return {
        f"{qubit}.frequency_hz": mode.frequency_hz + float(rng.uniform(-PRIOR_FREQUENCY_HZ, PRIOR_FREQUENCY_HZ)),
        f"{qubit}.pi_amplitude": nominal * math.exp(float(rng.uniform(lo, hi))),
        f"{qubit}.drag_beta": 0.0,
    }


def true_errors(device: SimulatedMultiQubitDevice, qubit: str, params: Mapping[str, float]) -> tuple[float, float, float]:
    """(X error, X90 error, coherence limit) of the calibrated pulses at the device's clock
    (truth, evaluation only)."""
    pulses = QubitPulses.from_params(device, qubit, params)
    errs = []
    for fraction, target in ((1.0, "X"), (0.5, "SX")):
        names, op = device.schedule_propagator(program(pulses).play(pulses.waveform(fraction)).sequence())
        if names != (qubit,):
            raise ValueError(f"the evaluation needs the qubit alone: the device simulates {names}")
        kind = "superoperator" if device.open_system else "unitary"
        errs.append(1.0 - float(gate_fidelity(op, target, kind=kind)))
    model = device.current_model()
    limit = float(coherence_limit(model.restrict((qubit,)), pulses.duration_s))  # type: ignore[union-attr]
    return errs[0], errs[1], limit


def true_cz_errors(device: SimulatedMultiQubitDevice, pair: tuple[str, str],
                   params: Mapping[str, float]) -> dict[str, float]:
    """Truth of pair ``a-b``'s stored CZ at the device's clock (evaluation only): ``error``
    1 − F to CZ with the stored virtual Zs, ``error_vz`` with the best ones, ``leakage``,
    ``coherence_limit`` of a two-qubit gate of the pulse's duration on the pair's true
    T1/T2 (``coupled.metrics.coherence_limit``), ``error_over_limit``, and the true static ZZ
    ``zz_hz`` of the pair at idle. The pair must be simulated alone (spectators="none")."""
    from pulsecal.agents.graph.experiments.pair import cz_roles
    from pulsecal.envs import cz_calibration_core as core
    from pulsecal.envs.physics.coupled import metrics as m2
    from pulsecal.envs.physics.coupled import spectrum
    from pulsecal.envs.protocol import Measure, Play, PulseSequence

    t = "-".join(pair)
    roles = cz_roles(device, pair, params)
    pulse = core.CZPulse(dt_s=device.dt_s)
    wave = pulse.waveform(float(params[f"{t}.cz_amplitude_phi0"]), float(params[f"{t}.cz_length_s"]))
    # The pair measured: the device simulates the modes a sequence touches and measures (a
    # sequence without a Measure measures every qubit of the device).
    seq = PulseSequence((Play(wave.astype(np.complex128), channel=f"flux:{roles.tunable}"),
                         Measure((roles.control, roles.tunable))))
    names, op = device.schedule_propagator(seq)
    if set(names) != set(pair):
        raise ValueError(f"the evaluation needs the pair alone: the device simulates {names}")
    model = device.current_model().restrict(names, {})  # type: ignore[union-attr]
    kind: m2.OpKind = "superoperator" if device.open_system else "unitary"
    phases = {pair[0]: float(params[f"{t}.cz_phase_a_rad"]), pair[1]: float(params[f"{t}.cz_phase_b_rad"])}
    best = m2.gate_fidelity(model, op, "CZ", kind=kind, virtual_z=True)
    corrected = core._apply_local_z(model, op, kind, {q: core.VZ_SIGN * ph for q, ph in phases.items()})
    f_set = m2.gate_fidelity(model, corrected, "CZ", kind=kind, virtual_z=False)
    limit = float(m2.coherence_limit(model, wave.size * pulse.dt_s))
    err = 1.0 - float(f_set.fidelity)
    return {"error": err, "error_vz": 1.0 - float(best.fidelity), "leakage": float(m2.leakage(model, op, kind=kind)),
            "coherence_limit": limit, "error_over_limit": err / limit, "zz_hz": float(spectrum.static_zz_hz(model))}


def calibrate_qubit(device: SimulatedMultiQubitDevice, name: str, qubit: str, seed: int) -> QubitRun:
    rng = np.random.default_rng(seed)
    run = QubitRun(name, qubit)
    params = priors(device, qubit, rng)
    run.params = dict(params)
    for exp in CHAIN:
        res = exp.run(device, qubit, params, rng)
        run.results.append(res)
        if res.status == "bad_data":
            break
        params.update(res.values)
    run.params = dict(params)
    try:
        run.x_error, run.sx_error, run.limit = true_errors(device, qubit, params)
    except ValueError:  # a chain stopped before its pulses were playable
        pass
    return run


def devices(n_held_out: int, seed: int, spectators: str, spectator_levels: int | None
            ) -> list[tuple[str, SimulatedMultiQubitDevice]]:
    preset = get_multi_qubit_preset("ring_8")
    population: list[tuple[str, MultiQubitParams]] = [("ring_8", preset.params)]
    sampled = held_out_multi_qubit_devices(n_held_out, MultiQubitSampler(preset="ring_8"), seed) if n_held_out else ()
    population += [(f"held_out_{i}", p) for i, p in enumerate(sampled)]
    out = []
    for i, (name, params) in enumerate(population):
        out.append((name, SimulatedMultiQubitDevice(params, preset.drift, rng=np.random.default_rng(seed + i),
                                                    spectators=spectators,  # type: ignore[arg-type]
                                                    spectator_levels=spectator_levels)))
    return out


def run_bench(n_held_out: int = 2, seed: int = 0, qubits: Sequence[str] | None = None,
              spectators: str = "none", spectator_levels: int | None = None) -> list[QubitRun]:
    runs = []
    for d_index, (name, dev) in enumerate(devices(n_held_out, seed, spectators, spectator_levels)):
        for q_index, q in enumerate(qubits or dev.qubits):
            runs.append(calibrate_qubit(dev, name, q, seed * 1000 + 100 * d_index + q_index))
    return runs


def _fmt(v: float, spec: str) -> str:
    return format(v, spec) if math.isfinite(v) else "—"


def report(runs: Sequence[QubitRun]) -> str:
    lines = ["device      qubit  X err/limit  X90 err/limit  limit     RB r/limit(measured)  RB status     "
             "shots   device s  stopped at"]
    for r in runs:
        rb = r.results[-1] if r.completed else None
        stop = "" if r.completed else next((f"{x.experiment}: {x.message}" for x in r.results
                                            if x.status == "bad_data"), "")
        lines.append(
            f"{r.device:<11} {r.qubit:<6} {_fmt(r.x_error / r.limit, '11.3f')}  {_fmt(r.sx_error / r.limit, '13.3f')}  "
            f"{_fmt(r.limit, '.2e')}  {_fmt(rb.quality['error_over_limit'] if rb else math.nan, '20.2f')}  "
            f"{(rb.status if rb else '—'):<12}  {r.shots:6d}  {r.device_time_s:8.2f}  {stop}")
    ok = [r for r in runs if r.calibrated and math.isfinite(r.x_error)]
    failed = [r for r in runs if not r.calibrated]
    rb_bad = [r for r in runs if r.calibrated and not r.completed]
    if failed:
        lines.append(f"{len(failed)} of {len(runs)} qubits stopped on bad_data before RB (their errors above are "
                     "of the parameters they stopped with)")
    if rb_bad:
        lines.append(f"{len(rb_bad)} calibrated qubits got bad_data from the RB check")
    verdicts = [r.results[-1].status for r in runs if r.completed]
    lines.append("RB verdicts: " + ", ".join(f"{v} {verdicts.count(v)}" for v in ("in_spec", "out_of_spec")))
    if ok:
        xr = statistics.median(r.x_error / r.limit for r in ok)
        sr = statistics.median(r.sx_error / r.limit for r in ok)
        mean = statistics.median(0.5 * (r.x_error + r.sx_error) / r.limit for r in ok)
        lines.append(f"median over the {len(ok)} calibrated qubits: X {xr:.3f}×, X90 {sr:.3f}×, mean of the two {mean:.3f}× "
                     "the coherence limit")
    by_device: dict[str, list[QubitRun]] = {}
    for r in runs:
        by_device.setdefault(r.device, []).append(r)
    for name, rs in by_device.items():
        lines.append(f"{name}: {sum(x.shots for x in rs)} shots, {sum(x.device_time_s for x in rs):.1f} s of device "
                     f"time for {len(rs)} qubits run one after another")
    lines.append("per node (each qubit, full form): " + ", ".join(
        f"{e.name} {e.shots(False)} shots" for e in CHAIN))
    first = next((r for r in runs if r.completed), None)
    if first is not None:
        lines.append("device time per node (s, first completed qubit): " + ", ".join(
            f"{x.experiment} {x.device_time_s:.2f}" for x in first.results))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-out", type=int, default=2, help="held-out sampled ring_8 devices besides the preset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qubits", default="", help="comma-separated qubits (default: all)")
    ap.add_argument("--json", default="", help="also write the per-qubit results to this file")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    qubits = [q for q in args.qubits.split(",") if q] or None
    runs = run_bench(args.held_out, args.seed, qubits)
    print(report(runs))
    print(f"(wall time {time.perf_counter() - t0:.0f} s)")
    if args.json:
        rows: list[dict[str, Any]] = [{
            "device": r.device, "qubit": r.qubit, "x_error": r.x_error, "sx_error": r.sx_error,
            "coherence_limit": r.limit, "shots": r.shots, "device_time_s": r.device_time_s,
            "params": r.params,
            "nodes": [{"experiment": x.experiment, "status": x.status, "shots": x.shots,
                       "device_time_s": x.device_time_s, "message": x.message} for x in r.results],
        } for r in runs]
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
