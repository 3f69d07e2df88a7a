"""A demo report of ``ring_8`` from real simulated measurements, before the graph lands.

``python -m pulsecal.agents.graph.report_demo out/`` measures a simulated ``ring_8``
(textbook experiments written out here, fitted with scipy), assembles a ``ReportInput`` the
way the graph will, and writes the report into ``out/`` (docs/calibration_report.md):

- every qubit but one: spectroscopy (a weak 500 ns drive swept ±20 MHz around the prior,
  fitted with the Rabi formula), Rabi (amplitude of a 20 ns pulse), readout (prepared
  |0⟩ and |1⟩), Ramsey (0.5 MHz artificial detuning, damped cosine: frequency and T2*),
  single-qubit RB (X/SX plays from the Rabi fit, virtual Z; ``envs.rb``'s Cliffords and fit);
- q5's spectroscopy searches a window 60 MHz off its frequency: no peak, ``bad_data``
  twice, so the node fails and its dependents are blocked, as a planted fault would;
- a CZ chevron of q0–q1 (|11⟩ population over flux amplitude × length);
- a maintenance run of q1 and q3 over 8 h of drifting device time: a cheap Ramsey check
  every 30 min, a full Ramsey and RB when the frequency moved by more than 30 kHz.

Readout IQ points: the simulated device on main returns counts, not single shots, so q1's
IQ blobs are drawn from the measured counts (one Gaussian point per shot around the centre
of the outcome it read, at a stated SNR); the report's note says so. The 2Q gate errors on
the map are the pairs' coherence limits at 45 ns from the preset's T1/T2 (no CZ node exists
yet), also stated in a note. Everything else is measured.

The single-qubit experiments run with ``spectators="none"`` (one three-level mode, open
system: T1, T2 and thermal population) so the whole demo takes well under a minute on one
core; the chevron runs the pair as a closed system.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import curve_fit

from ...envs.multi_qubit_device import SimulatedMultiQubitDevice
from ...envs.multi_qubit_presets import get_multi_qubit_preset, make_multi_qubit_device
from ...envs.physics.coupled.metrics import coherence_limit_product
from ...envs.protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ
from ...envs.rb import fit_rb, gates_per_clifford, sequence_steps
from .experiment import ExperimentResult
from .report import DeviceLayout, NodeRecord, ReportInput, TimelineEvent, write_report

FloatArray = NDArray[np.float64]
DEVICE = "ring_8"
GATE_SAMPLES = 20
SPEC_SAMPLES = 500
SPEC_AMPLITUDE = 0.02  # Ω/2π = 1 MHz: a π pulse in 500 ns, so the line is ~2 MHz wide
RAMSEY_DETUNING_HZ = 0.5e6
IQ_SNR = 3.0  # blob separation / blob width
FAULTY_QUBIT = "q5"
FAULT_OFFSET_HZ = 60e6


def _time(dev: SimulatedMultiQubitDevice, n_seqs: int, shots: int, samples: int) -> float:
    """Device time of a run: shots × repetition time for every sequence, plus its samples."""
    rep = float(dev.params.rep_time_s)
    return n_seqs * shots * rep + n_seqs * shots * samples * float(dev.dt_s)


def _p1(counts: NDArray[np.int64]) -> FloatArray:
    c = np.asarray(counts, dtype=np.float64)
    return c[:, 1] / c.sum(axis=1)


def _play(q: str, amplitude: float, samples: int = GATE_SAMPLES) -> Play:
    return Play(np.full(samples, amplitude, dtype=np.complex128), channel=f"drive:{q}")


# -- single-qubit experiments ---------------------------------------------------------------


def spectroscopy(dev: SimulatedMultiQubitDevice, q: str, prior_offset_hz: float, shots: int = 100) -> ExperimentResult:
    """Sweep a weak drive ±20 MHz around ``prior_offset_hz`` from q's frame; fit the Rabi
    formula of a square pulse (peak, Rabi rate, contrast, offset)."""
    dt = float(dev.dt_s)
    t = np.arange(SPEC_SAMPLES) * dt
    det = prior_offset_hz + np.linspace(-20e6, 20e6, 81)  # 0.5 MHz steps: four points in the ~2 MHz line
    # A phase ramp e^{−2πiΔt} on the samples drives at the frame + Δ.
    seqs = [PulseSequence((Play(SPEC_AMPLITUDE * np.exp(-2j * np.pi * d * t), channel=f"drive:{q}"),
                           Measure((q,)))) for d in det]
    y = _p1(dev.run(seqs, shots))
    duration = SPEC_SAMPLES * dt

    def model(d: FloatArray, f0: float, rabi: float, a: float, b: float) -> FloatArray:
        w = np.sqrt(rabi**2 + (d - f0) ** 2)
        return b + a * rabi**2 / w**2 * np.sin(np.pi * w * duration) ** 2

    cost = _time(dev, len(seqs), shots, SPEC_SAMPLES)
    data: dict[str, object] = {"kind": "curve", "x": (det / 1e6).tolist(), "y": y.tolist(),
                               "x_label": "drive detuning from the frame (MHz)", "y_label": "P(|1⟩)"}
    contrast = float(y.max() - np.median(y))
    noise = math.sqrt(0.25 / shots)
    if contrast < 6 * noise:
        return ExperimentResult("spectroscopy", q, "bad_data", {}, {"contrast": contrast}, shots * len(seqs), cost,
                                data, f"no peak in ±20 MHz around {prior_offset_hz / 1e6:+.0f} MHz "
                                      f"(contrast {contrast:.2f} < {6 * noise:.2f})")
    p0 = (float(det[np.argmax(y)]), 1e6, float(y.max() - y.min()), float(y.min()))
    popt, pcov = curve_fit(model, det, y, p0=p0, maxfev=20000)
    fine = np.linspace(det[0], det[-1], 400)
    data |= {"fit_x": (fine / 1e6).tolist(), "fit": model(fine, *popt).tolist(),
             "vlines": [{"x": popt[0] / 1e6, "label": f"{popt[0] / 1e3:+.0f} kHz"}]}
    err = float(math.sqrt(max(pcov[0, 0], 0.0)))
    return ExperimentResult("spectroscopy", q, "in_spec", {f"{q}.frequency_offset_hz": float(popt[0])},
                            {"frequency_hz_stderr": err, "residual": float(np.std(y - model(det, *popt)))},
                            shots * len(seqs), cost, data, f"peak at {popt[0] / 1e3:+.0f} ± {err / 1e3:.0f} kHz")


def rabi(dev: SimulatedMultiQubitDevice, q: str, shots: int = 200) -> ExperimentResult:
    """P(|1⟩) over the amplitude of a 20 ns square pulse; fit B + A·(1 − cos(π a / a_π))/2."""
    amps = np.linspace(0.0, 1.0, 21)
    seqs = [PulseSequence((_play(q, a), Measure((q,)))) for a in amps]
    y = _p1(dev.run(seqs, shots))

    def model(a: FloatArray, a_pi: float, amp: float, b: float) -> FloatArray:
        return b + amp * (1 - np.cos(np.pi * a / a_pi)) / 2

    popt, pcov = curve_fit(model, amps, y, p0=(float(amps[np.argmax(y)]) or 0.5, 0.95, 0.02), maxfev=20000)
    fine = np.linspace(0, 1, 300)
    a_pi = float(popt[0])
    return ExperimentResult(
        "rabi", q, "in_spec", {f"{q}.pi_amplitude": a_pi},
        {"pi_amplitude_stderr": float(math.sqrt(max(pcov[0, 0], 0))), "residual": float(np.std(y - model(amps, *popt)))},
        shots * len(seqs), _time(dev, len(seqs), shots, GATE_SAMPLES),
        {"kind": "curve", "x": amps.tolist(), "y": y.tolist(), "fit_x": fine.tolist(),
         "fit": model(fine, *popt).tolist(), "x_label": "drive amplitude u (20 ns square pulse)",
         "y_label": "P(|1⟩)", "vlines": [{"x": a_pi, "label": f"π at {a_pi:.3f}"}]},
        f"π amplitude {a_pi:.4f}")


def readout(dev: SimulatedMultiQubitDevice, q: str, a_pi: float, rng: np.random.Generator, *, iq: bool,
            shots: int = 2000) -> ExperimentResult:
    """Prepare |0⟩ and |1⟩ (π pulse) and read; assignment fidelity 1 − (P(1|0) + P(0|1))/2."""
    seqs = [PulseSequence((Delay(GATE_SAMPLES * float(dev.dt_s), channel=f"drive:{q}"), Measure((q,)))),
            PulseSequence((_play(q, a_pi), Measure((q,))))]
    counts = np.asarray(dev.run(seqs, shots))
    e10, e01 = counts[0, 1] / shots, counts[1, 0] / shots
    fid = float(1 - (e10 + e01) / 2)
    confusion = (counts / shots).tolist()
    data: dict[str, object]
    if iq:
        # One point per shot (a subsample) at the centre of the outcome it read, blob width
        # |c1 − c0| / SNR: the counts are measured, the positions drawn.
        c = np.array([[1.0, 0.4], [-0.2, -0.9]])
        width = float(np.linalg.norm(c[1] - c[0])) / IQ_SNR
        pts, labels = [], []
        for prep in (0, 1):
            n = 300
            outcome = rng.permutation(np.repeat([0, 1], counts[prep]))[:n]
            pts.append(c[outcome] + rng.normal(scale=width, size=(n, 2)))
            labels += [prep] * n
        mid, d = (c[0] + c[1]) / 2, c[1] - c[0]
        perp = np.array([-d[1], d[0]]) * 2.0
        data = {"kind": "iq", "points": np.concatenate(pts).tolist(), "labels": labels,
                "boundary": [(mid - perp).tolist(), (mid + perp).tolist()], "confusion": confusion,
                "x_label": "I (arb.)", "y_label": "Q (arb.)"}
    else:
        data = {"kind": "confusion", "confusion": confusion, "rows": "prepared |0⟩, |1⟩", "columns": "read 0, 1"}
    return ExperimentResult("readout", q, "in_spec", {f"{q}.assignment_fidelity": fid},
                            {"p1_given_0": float(e10), "p0_given_1": float(e01)}, 2 * shots,
                            _time(dev, 2, shots, GATE_SAMPLES), data,
                            f"assignment fidelity {100 * fid:.2f} %")


def _ramsey_seqs(q: str, a_pi: float, delays: FloatArray, correction_hz: float) -> list[PulseSequence]:
    half = _play(q, a_pi / 2)
    # The frame follows the qubit at the correction plus the artificial detuning.
    return [PulseSequence((half, Delay(float(t), channel=f"drive:{q}"),
                           VirtualZ(2 * np.pi * (RAMSEY_DETUNING_HZ - correction_hz) * float(t), frame=q),
                           half, Measure((q,)))) for t in delays]


def _ramsey_model(t: FloatArray, f: float, t2: float, a: float, b: float, phi: float) -> FloatArray:
    return b + a * np.exp(-t / t2) * np.cos(2 * np.pi * f * t + phi)


def ramsey(dev: SimulatedMultiQubitDevice, q: str, a_pi: float, correction_hz: float = 0.0, shots: int = 200,
           n: int = 33, span_s: float = 16e-6) -> ExperimentResult:
    """Two π/2 pulses around a delay, the frame advanced at 0.5 MHz; a damped cosine gives
    the residual detuning (fitted frequency − 0.5 MHz) and T2*."""
    delays = np.linspace(0.0, span_s, n)
    seqs = _ramsey_seqs(q, a_pi, delays, correction_hz)
    y = _p1(dev.run(seqs, shots))
    popt, pcov = curve_fit(_ramsey_model, delays, y, p0=(RAMSEY_DETUNING_HZ, 15e-6, -0.45, 0.5, 0.0),
                           bounds=([0.1e6, 0.5e-6, -1, 0, -np.pi], [0.9e6, 1e-3, 1, 1, np.pi]), maxfev=20000)
    residual_hz = float(popt[0] - RAMSEY_DETUNING_HZ)
    fine = np.linspace(0, span_s, 400)
    cost = _time(dev, n, shots, 2 * GATE_SAMPLES) + shots * float(delays.sum())
    return ExperimentResult(
        "ramsey", q, "in_spec", {f"{q}.frequency_offset_hz": correction_hz + residual_hz, f"{q}.t2_star_s": float(popt[1])},
        {"frequency_hz_stderr": float(math.sqrt(max(pcov[0, 0], 0))), "residual": float(np.std(y - _ramsey_model(delays, *popt)))},
        shots * n, cost,
        {"kind": "curve", "x": (delays * 1e6).tolist(), "y": y.tolist(), "fit_x": (fine * 1e6).tolist(),
         "fit": _ramsey_model(fine, *popt).tolist(), "x_label": "delay (µs)", "y_label": "P(|1⟩)"},
        f"detuning {residual_hz / 1e3:+.1f} kHz, T2* {popt[1] * 1e6:.1f} µs")


def ramsey_check(dev: SimulatedMultiQubitDevice, q: str, a_pi: float, correction_hz: float, t2_s: float,
                 shots: int = 100) -> tuple[float, int, float]:
    """The cheap form: twelve delays over three artificial periods (four per period, well
    above aliasing), the damped cosine with T2* held; returns the residual detuning (Hz),
    the shots and the device time."""
    delays = np.arange(12, dtype=np.float64) * (0.25 / RAMSEY_DETUNING_HZ)
    y = _p1(dev.run(_ramsey_seqs(q, a_pi, delays, correction_hz), shots))
    popt, _ = curve_fit(lambda t, f, a, b, phi: _ramsey_model(t, f, t2_s, a, b, phi), delays, y,
                        p0=(RAMSEY_DETUNING_HZ, -0.45, 0.5, 0.0),
                        bounds=([0.2e6, -1, 0, -np.pi], [0.8e6, 1, 1, np.pi]), maxfev=20000)
    cost = _time(dev, len(delays), shots, 2 * GATE_SAMPLES) + shots * float(delays.sum())
    return float(popt[0] - RAMSEY_DETUNING_HZ), shots * len(delays), cost


def rb(dev: SimulatedMultiQubitDevice, q: str, a_pi: float, rng: np.random.Generator, correction_hz: float = 0.0,
       lengths: Sequence[int] = (1, 8, 20, 40, 70, 100), n_random: int = 6, shots: int = 50) -> ExperimentResult:
    """Single-qubit RB with square X (a_π) and SX (a_π/2) plays; the frame follows the
    qubit at ``correction_hz`` between plays."""
    dt = float(dev.dt_s)
    x, sx = _play(q, a_pi), _play(q, a_pi / 2)
    seqs = []
    n_plays = 0
    for m in lengths:
        for _ in range(n_random):
            steps, _ = sequence_steps(rng.integers(0, 24, int(m)).tolist())
            ops: list[Play | VirtualZ | Measure] = []
            emitted = 0.0
            for k, (kind, phi) in enumerate(steps):
                want = phi - 2 * np.pi * correction_hz * k * GATE_SAMPLES * dt
                if want != emitted:
                    ops.append(VirtualZ(want - emitted, frame=q))
                    emitted = want
                ops.append(x if kind == "X" else sx)
            n_plays += len(steps)
            seqs.append(PulseSequence((*ops, Measure((q,)))))
    counts = np.asarray(dev.run(seqs, shots), dtype=np.float64)
    per_seq = (counts[:, 0] / shots).reshape(len(lengths), n_random)
    surv = per_seq.mean(axis=1)
    sem = per_seq.std(axis=1, ddof=1) / math.sqrt(n_random)
    p, sig = fit_rb(lengths, surv, [shots * n_random] * len(lengths))
    ms = np.asarray(lengths, dtype=np.float64)
    amp = float(np.sum((surv - 0.5) * p**ms) / np.sum(p ** (2 * ms)))
    err = (1 - p) / 2 / gates_per_clifford()
    fine = np.linspace(0, ms.max(), 200)
    rep = float(dev.params.rep_time_s)
    cost = len(seqs) * shots * rep + n_plays * shots * GATE_SAMPLES * dt
    return ExperimentResult(
        "rb", q, "in_spec", {f"{q}.gate_error": float(err)},
        {"p": float(p), "p_stderr": float(sig), "error_per_gate_stderr": float(sig / 2 / gates_per_clifford())},
        len(seqs) * shots, cost,
        {"kind": "curve", "x": ms.tolist(), "y": surv.tolist(), "y_err": sem.tolist(), "fit_x": fine.tolist(),
         "fit": (amp * p**fine + 0.5).tolist(), "x_label": "Cliffords m", "y_label": "survival P(|0⟩)"},
        f"error per gate {err:.2e} (p = {p:.5f}; square pulses, no DRAG)")


# -- the pair -------------------------------------------------------------------------------


def chevron(dev: SimulatedMultiQubitDevice, a: str, b: str, a_pi: dict[str, float], shots: int = 100) -> ExperimentResult:
    """|11⟩ population after a square flux pulse on ``a`` (tunable) over amplitude × length:
    the |11⟩ ↔ |20⟩ exchange; the chosen point is the deepest full swap."""
    amps = np.linspace(0.140, 0.170, 13)
    lengths = np.arange(10, 85, 5)
    seqs = [PulseSequence((_play(a, a_pi[a]), _play(b, a_pi[b]), Barrier(),
                           Play(np.full(int(n), amp), channel=f"flux:{a}"), Measure((a, b))))
            for amp in amps for n in lengths]
    counts = np.asarray(dev.run(seqs, shots), dtype=np.float64)
    z = (counts[:, 3] / shots).reshape(len(amps), len(lengths))
    i, j = np.unravel_index(int(np.argmin(z)), z.shape)
    pair = f"{a}-{b}"
    return ExperimentResult(
        "chevron", (a, b), "in_spec",
        {f"{pair}.cz_amplitude_phi0": float(amps[i]), f"{pair}.swap_length_s": float(lengths[j] * 1e-9)},
        {"min_p11": float(z[i, j])}, len(seqs) * shots,
        _time(dev, len(seqs), shots, int(lengths.mean()) + GATE_SAMPLES),
        {"kind": "map", "x": lengths.tolist(), "y": amps.tolist(), "z": z.tolist(),
         "marker": [float(lengths[j]), float(amps[i])], "x_label": "flux pulse length (ns)",
         "y_label": f"flux amplitude on {a} (Φ0)", "z_label": "P(|11⟩)"},
        f"full swap at {amps[i]:.4f} Φ0, {lengths[j]} ns")


# -- the run --------------------------------------------------------------------------------


def build_demo_report(seed: int = 0, *, maintenance_hours: float = 8.0) -> ReportInput:
    """Measure a simulated ring_8 and assemble its report input (see the module docstring)."""
    rng = np.random.default_rng(seed)
    preset = get_multi_qubit_preset(DEVICE)
    dev = make_multi_qubit_device(DEVICE, np.random.default_rng(seed + 1), open_system=True, spectators="none")
    qubits = preset.coupling_map.qubits
    nodes: list[NodeRecord] = []
    edges: list[tuple[str, str]] = []
    gate_1q: dict[str, float] = {}
    fidelity: dict[str, float] = {}
    a_pi: dict[str, float] = {}
    t2: dict[str, float] = {}
    for q in qubits:
        names = {k: f"{k}:{q}" for k in ("spectroscopy", "rabi", "readout", "ramsey", "rb")}
        edges += [(names["spectroscopy"], names["rabi"]), (names["rabi"], names["readout"]),
                  (names["readout"], names["ramsey"]), (names["ramsey"], names["rb"])]
        if q == FAULTY_QUBIT:
            tries = [spectroscopy(dev, q, FAULT_OFFSET_HZ) for _ in range(2)]
            nodes.append(NodeRecord(names["spectroscopy"], "spectroscopy", q, "failed", tries[-1], len(tries)))
            nodes += [NodeRecord(names[k], k, q, "blocked") for k in ("rabi", "readout", "ramsey", "rb")]
            continue
        spec = spectroscopy(dev, q, 0.0)
        r = rabi(dev, q)
        a_pi[q] = float(r.values[f"{q}.pi_amplitude"])
        ro = readout(dev, q, a_pi[q], rng, iq=(q == "q1"))
        fidelity[q] = float(ro.values[f"{q}.assignment_fidelity"])
        ram = ramsey(dev, q, a_pi[q])
        t2[q] = float(ram.values[f"{q}.t2_star_s"])
        bench = rb(dev, q, a_pi[q], rng, float(ram.values[f"{q}.frequency_offset_hz"]))
        gate_1q[q] = float(bench.values[f"{q}.gate_error"])
        for kind, res in (("spectroscopy", spec), ("rabi", r), ("readout", ro), ("ramsey", ram), ("rb", bench)):
            nodes.append(NodeRecord(names[kind], kind, q, "done", res, 1))
    pair_dev = make_multi_qubit_device(DEVICE, np.random.default_rng(seed + 2), open_system=False, spectators="none")
    gate_2q: dict[tuple[str, str], float] = {}
    modes = {m.name: m for m in preset.params.model.modes}  # type: ignore[union-attr]
    cz_s = preset.gate_durations_s["cz"]
    for a, b in preset.coupling_map.edges:
        pair = f"{a}-{b}"
        tunable = a if int(a[1:]) % 2 == 0 else b
        other = b if tunable == a else a
        for q in (a, b):
            edges.append((f"ramsey:{q}", f"chevron:{pair}"))
        edges.append((f"chevron:{pair}", f"cz:{pair}"))
        if FAULTY_QUBIT in (a, b):
            nodes += [NodeRecord(f"chevron:{pair}", "chevron", (a, b), "blocked"),
                      NodeRecord(f"cz:{pair}", "cz", (a, b), "blocked")]
        elif pair == "q0-q1":
            res = chevron(pair_dev, tunable, other, a_pi)
            nodes += [NodeRecord(f"chevron:{pair}", "chevron", (a, b), "done", res, 1),
                      NodeRecord(f"cz:{pair}", "cz", (a, b), "pending")]
        else:
            nodes += [NodeRecord(f"chevron:{pair}", "chevron", (a, b), "pending"),
                      NodeRecord(f"cz:{pair}", "cz", (a, b), "pending")]
        ma, mb = (modes[x] for x in (a, b))
        gate_2q[(a, b)] = float(coherence_limit_product(cz_s, [ma.t1_s, mb.t1_s], [ma.t2_s, mb.t2_s]))
    timeline, m_shots, m_time = _maintenance(dev, ("q1", "q3"), a_pi, t2, rng, maintenance_hours,
                            {q: float(n.result.values[f"{q}.frequency_offset_hz"]) for n in nodes
                             if n.experiment == "ramsey" and n.result is not None
                             for q in [str(n.target)]}, gate_1q)
    results = [n.result for n in nodes if n.result is not None]
    return ReportInput(
        run_id=f"demo-{DEVICE}-seed{seed}", device=DEVICE, nodes=tuple(nodes), edges=tuple(edges),
        layout=DeviceLayout(qubits, preset.coupling_map.edges), gate_error_1q=gate_1q, readout_fidelity=fidelity,
        gate_error_2q=gate_2q, timeline=timeline,
        total_shots=sum(r.shots for r in results) + m_shots,
        total_device_time_s=sum(r.device_time_s for r in results) + m_time,
        notes=(f"Demo from simulated measurements of {DEVICE} (pulsecal.agents.graph.report_demo, seed {seed}): "
               "1Q errors are RB, readout fidelities measured from prepared |0⟩ and |1⟩.",
               f"2Q errors on the map are the pairs' coherence limits at the preset's CZ duration "
               f"({preset.gate_durations_s['cz'] * 1e9:.0f} ns) and T1/T2: no CZ node exists yet.",
               "q1's IQ blobs are drawn from its measured counts (one point per shot at the centre of the "
               f"outcome it read, SNR {IQ_SNR:g}): the device on main reads out counts, not single shots.",
               f"{FAULTY_QUBIT}'s spectroscopy searches a window {FAULT_OFFSET_HZ / 1e6:.0f} MHz off its "
               "frequency (a wrong prior, planted): it fails and blocks its dependents."),
    )


def _maintenance(dev: SimulatedMultiQubitDevice, qubits: Sequence[str], a_pi: dict[str, float], t2: dict[str, float],
                 rng: np.random.Generator, hours: float, correction: dict[str, float],
                 gate_1q: dict[str, float]) -> tuple[tuple[TimelineEvent, ...], int, float]:
    """Every 30 min of device time: a cheap Ramsey check per qubit; when the frequency moved
    by more than 30 kHz, a full Ramsey and an RB (its error is the gate error plotted).
    Returns the events, the shots and the device time they spent."""
    shots, busy_s = 0, 0.0
    events: list[TimelineEvent] = []
    t0 = float(dev.clock_s)
    corr = dict(correction)
    for q in qubits:
        events.append(TimelineEvent(0.0, f"ramsey:{q}", "calibrate", "in_spec", gate_1q[q]))
    step = 1800.0
    while float(dev.clock_s) - t0 + step <= hours * 3600:
        dev.advance(step)
        for q in qubits:
            now = float(dev.clock_s) - t0
            residual, check_shots, check_s = ramsey_check(dev, q, a_pi[q], corr[q], t2[q])
            shots, busy_s = shots + check_shots, busy_s + check_s
            if abs(residual) <= 30e3:
                events.append(TimelineEvent(now, f"ramsey:{q}", "check", "in_spec"))
                continue
            events.append(TimelineEvent(now, f"ramsey:{q}", "check", "out_of_spec"))
            full = ramsey(dev, q, a_pi[q], corr[q])
            corr[q] = float(full.values[f"{q}.frequency_offset_hz"])
            bench = rb(dev, q, a_pi[q], rng, corr[q])
            shots += full.shots + bench.shots
            busy_s += full.device_time_s + bench.device_time_s
            events.append(TimelineEvent(float(dev.clock_s) - t0, f"ramsey:{q}", "calibrate", "in_spec",
                                        float(bench.values[f"{q}.gate_error"])))
    return tuple(events), shots, busy_s


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulsecal.agents.graph.report_demo",
                                     description="Write a demo calibration report of a simulated ring_8.")
    parser.add_argument("out", type=Path, help="folder to write index.html and its PNGs into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hours", type=float, default=8.0, help="maintenance run length (device time)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed={args.seed}: allowed an integer >= 0")
    if not 0 <= args.hours <= 48:
        parser.error(f"--hours={args.hours}: allowed 0 to 48")
    index = write_report(args.out, build_demo_report(args.seed, maintenance_hours=args.hours))
    print(index)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
