"""Readout classification: fit a discriminator to single-shot IQ points, and use it.

The experiment (``ReadoutClassification``, an ``Experiment`` of ``agents.graph.experiment``)
prepares |0⟩ and |1⟩ (and |2⟩ in its three-state form) on one qubit, collects IQ shots with
the device's ``run_iq``, fits a discriminator and reports its assignment fidelity and
confusion matrix. The pieces are separate, as the graph needs them separately:

- fitting (side-effect free): ``fit_two_state`` (LDA axis Σ⁻¹(μ1 − μ0), then the threshold on
  that axis that maximises the empirical fidelity, which places it where the |1⟩ blob's
  decay tail asks for) and ``fit_three_state`` (Gaussian classes with one pooled covariance,
  equal priors);
- the discriminator as parameter values (``{t}.readout_angle`` …, ``values`` /
  ``discriminator_from_params``), so later nodes rebuild it from the store;
- ``counts_from_iq``: IQ points + discriminators -> counts, and ``ClassifiedReadout``, a
  device whose ``run`` returns them: the classified readout later experiments use instead
  of the device's counts;
- ``readout_plot.plot_iq``: the blobs coloured by prepared state, the boundary and the
  fidelity, drawn from the result's ``data`` alone (the report draws it from the journal).

docs/readout.md has the model, the parameters and the measured numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.drag import DragGate
from pulsecal.envs.iq_readout import optimal_prepared, optimal_two_state, prepared_fidelity
from pulsecal.envs.protocol import Barrier, Measure, Play, PulseSequence

from .experiment import REPETITION_TIME_S, ExperimentResult, target_name

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# -- discriminators ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoStateDiscriminator:
    """Read 1 iff I cos φ − Q sin φ > ``threshold``, φ = ``angle_rad``: the IQ plane turned
    by φ puts the |0⟩ → |1⟩ axis along +I. This is qibolab's ``iq_angle`` / ``threshold``
    convention (and Quantum Machines'), so the store's qibolab export carries them as they are.

    Attributes:
        angle_rad: the rotation φ of the IQ plane (the axis direction is −φ).
        threshold: position of the boundary along that axis.
        centres: fitted (I, Q) means of the prepared |0⟩ and |1⟩.
    """

    angle_rad: float
    threshold: float
    centres: tuple[tuple[float, float], ...]

    classes = 2

    def project(self, points: FloatArray) -> FloatArray:
        """(..., 2) points -> (...,) coordinate along the axis."""
        p = np.asarray(points, dtype=np.float64)
        return np.asarray(p[..., 0] * math.cos(self.angle_rad) - p[..., 1] * math.sin(self.angle_rad))

    def classify(self, points: FloatArray) -> IntArray:
        """(..., 2) points -> (...,) outcomes 0 / 1."""
        return (self.project(points) > self.threshold).astype(np.int64)

    def boundary(self, half_length: float) -> FloatArray:
        """(2, 2) end points of the boundary segment through the centres' midpoint line."""
        u = np.array([math.cos(self.angle_rad), -math.sin(self.angle_rad)])
        n = np.array([-u[1], u[0]])
        mid = 0.5 * (np.asarray(self.centres[0]) + np.asarray(self.centres[1]))
        foot = mid + (self.threshold - float(mid @ u)) * u
        return np.stack([foot - half_length * n, foot + half_length * n])


@dataclass(frozen=True)
class ThreeStateDiscriminator:
    """Gaussian classes with one pooled covariance and equal priors: a point reads as the
    class with the smallest Mahalanobis distance to its centre.

    Attributes:
        centres: fitted (I, Q) means of |0⟩, |1⟩, |2⟩.
        covariance: the pooled 2 × 2 covariance ((ii, iq), (iq, qq)).
    """

    centres: tuple[tuple[float, float], ...]
    covariance: tuple[tuple[float, float], ...]

    classes = 3

    def classify(self, points: FloatArray) -> IntArray:
        p = np.asarray(points, dtype=np.float64)
        inv = np.linalg.inv(np.asarray(self.covariance))
        d = p[..., None, :] - np.asarray(self.centres)
        m = np.einsum("...ci,ij,...cj->...c", d, inv, d)
        return np.argmin(m, axis=-1).astype(np.int64)


Discriminator = TwoStateDiscriminator | ThreeStateDiscriminator


def _points(name: str, x: FloatArray) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 2 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: shape {a.shape}: allowed (N, 2) finite IQ points with N >= 2")
    return a


def _pooled_covariance(groups: Sequence[FloatArray]) -> FloatArray:
    dof = sum(len(g) - 1 for g in groups)
    return np.asarray(sum((g - g.mean(axis=0)).T @ (g - g.mean(axis=0)) for g in groups) / dof)


def best_threshold(x0: FloatArray, x1: FloatArray) -> tuple[float, float]:
    """(threshold, empirical fidelity) on a 1D axis where |1⟩ lies above |0⟩: the cut
    between two sorted neighbours that maximises 1 − ½(P(1|0) + P(0|1)); among cuts of
    equal fidelity the middle one."""
    x = np.concatenate([x0, x1])
    lab = np.concatenate([np.zeros(len(x0)), np.ones(len(x1))])
    order = np.argsort(x, kind="stable")
    xs, ls = x[order], lab[order]
    # Cut after sorted position i: P(0|1) = ones at or below / n1, P(1|0) = zeros above / n0.
    ones_below = np.cumsum(ls)
    zeros_below = np.cumsum(1.0 - ls)
    fid = 1.0 - 0.5 * ((len(x0) - zeros_below) / len(x0) + ones_below / len(x1))
    fid = np.concatenate([[0.5], fid[:-1]])  # a cut below everything, none above everything
    cuts = np.concatenate([[xs[0] - 1.0], 0.5 * (xs[:-1] + xs[1:])])
    best = np.flatnonzero(fid >= fid.max() - 1e-12)
    i = int(best[len(best) // 2])
    return float(cuts[i]), float(fid[i])


def fit_two_state(points0: FloatArray, points1: FloatArray) -> TwoStateDiscriminator:
    """LDA axis w = Σ⁻¹(μ1 − μ0) (Σ the pooled covariance), threshold by ``best_threshold``
    on the projections (module docstring)."""
    a, b = _points("points0", points0), _points("points1", points1)
    mu0, mu1 = a.mean(axis=0), b.mean(axis=0)
    cov = _pooled_covariance([a, b])
    w = np.linalg.solve(cov + 1e-12 * np.trace(cov) * np.eye(2), mu1 - mu0)
    angle = -math.atan2(float(w[1]), float(w[0]))
    u = np.array([math.cos(angle), -math.sin(angle)])
    thr, _ = best_threshold(a @ u, b @ u)
    return TwoStateDiscriminator(angle, thr, (tuple(mu0), tuple(mu1)))


def fit_three_state(points0: FloatArray, points1: FloatArray, points2: FloatArray) -> ThreeStateDiscriminator:
    """Class means and the pooled covariance of the three prepared states."""
    groups = [_points(f"points{i}", p) for i, p in enumerate((points0, points1, points2))]
    cov = _pooled_covariance(groups)
    return ThreeStateDiscriminator(tuple(tuple(g.mean(axis=0)) for g in groups),
                                   tuple(tuple(r) for r in cov))


def confusion_matrix(disc: Discriminator, points_by_state: Sequence[FloatArray]) -> FloatArray:
    """(n, n) with [i, j] = fraction of shots prepared in i that read j; rows sum to 1."""
    n = disc.classes
    if len(points_by_state) != n:
        raise ValueError(f"points_by_state: {len(points_by_state)} groups: allowed {n} (one per class)")
    out = np.zeros((n, n))
    for i, p in enumerate(points_by_state):
        out[i] = np.bincount(disc.classify(p), minlength=n)[:n] / len(p)
    return out


def assignment_fidelity(confusion: FloatArray) -> float:
    """Mean of the diagonal: 1 − ½(P(1|0) + P(0|1)) for two states."""
    return float(np.mean(np.diag(np.asarray(confusion))))


def counts_from_iq(points: FloatArray, discriminators: Sequence[Discriminator]) -> IntArray:
    """IQ points (B, shots, k, 2) of k measured qubits -> counts (B, n^k), first qubit most
    significant, the device's ``run`` layout; every discriminator must have the same n."""
    p = np.asarray(points, dtype=np.float64)
    k = len(discriminators)
    if p.ndim != 4 or p.shape[2] != k or p.shape[3] != 2:
        raise ValueError(f"points: shape {p.shape}: allowed (B, shots, {k}, 2) for {k} discriminators")
    ns = {d.classes for d in discriminators}
    if len(ns) != 1:
        raise ValueError(f"discriminators: classes {sorted(ns)}: allowed one number of classes for all")
    n = ns.pop()
    index = np.zeros(p.shape[:2], dtype=np.int64)
    for j, d in enumerate(discriminators):
        index = index * n + d.classify(p[:, :, j, :])
    return np.stack([np.bincount(row, minlength=n ** k) for row in index]).astype(np.int64) if len(index) \
        else np.zeros((0, n ** k), dtype=np.int64)


class ClassifiedReadout:
    """A device whose ``run`` returns counts classified from single-shot IQ points with the
    stored discriminators: the readout later experiments see once readout is calibrated.

    ``run(sequences, shots)`` calls the device's ``run_iq`` and ``counts_from_iq`` with the
    discriminator of each measured qubit (in ``Measure`` order) rebuilt from ``params``;
    everything else (clock, ``dt_s``, ``advance``, truth) is the wrapped device's.

    Args:
        device: a device with ``run_iq``.
        params: the parameter values ``ReadoutClassification`` wrote.
        three_state: classify into |0⟩, |1⟩, |2⟩ (3^k outcomes) with the three-state values.
    """

    def __init__(self, device: Any, params: Mapping[str, float], three_state: bool = False) -> None:
        if not hasattr(device, "run_iq"):
            raise ValueError(f"device: {type(device).__name__} has no run_iq: allowed a device with single-shot "
                             "IQ readout")
        self.device = device
        self._params = dict(params)
        self._three_state = bool(three_state)
        self._discs: dict[str, Discriminator] = {}

    def discriminator(self, qubit: str) -> Discriminator:
        if qubit not in self._discs:
            self._discs[qubit] = discriminator_from_params(self._params, qubit, self._three_state)
        return self._discs[qubit]

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> IntArray:
        seqs = list(sequences)
        measured = [_measured(s, tuple(self.device.qubits)) for s in seqs]
        discs = [[self.discriminator(q) for q in m] for m in measured]  # refuses before any shot
        points = np.asarray(self.device.run_iq(seqs, shots), dtype=np.float64)
        rows = [counts_from_iq(points[i:i + 1], d)[0] for i, d in enumerate(discs)]
        n = 3 if self._three_state else 2
        return np.stack(rows) if rows else np.zeros((0, n), dtype=np.int64)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.device, name)


def _measured(seq: PulseSequence, every: tuple[str, ...]) -> tuple[str, ...]:
    """The qubits a sequence measures, in outcome order (no ``Measure``: every qubit)."""
    ms = [op for op in seq.ops if isinstance(op, Measure)]
    return tuple(ms[-1].qubits) if ms else every


# -- as parameter values ----------------------------------------------------------------------------

_CENTRE_KEYS = ("readout_i{s}", "readout_q{s}")


def values(prefix: str, disc: Discriminator) -> dict[str, float]:
    """The discriminator as ``"<prefix>.<name>"`` parameter values (docs/readout.md)."""
    out: dict[str, float] = {}
    for s, c in enumerate(disc.centres):
        out[f"{prefix}.readout_i{s}"], out[f"{prefix}.readout_q{s}"] = float(c[0]), float(c[1])
    if isinstance(disc, TwoStateDiscriminator):
        out[f"{prefix}.readout_angle"] = float(disc.angle_rad)
        out[f"{prefix}.readout_threshold"] = float(disc.threshold)
    else:
        cov = disc.covariance
        out[f"{prefix}.readout_cov_ii"], out[f"{prefix}.readout_cov_iq"] = float(cov[0][0]), float(cov[0][1])
        out[f"{prefix}.readout_cov_qq"] = float(cov[1][1])
    return out


def discriminator_from_params(params: Mapping[str, float], target: str, three_state: bool = False) -> Discriminator:
    """The discriminator ``values`` wrote for ``target``; raises ``KeyError`` naming a missing key."""
    t = target_name(target)

    def get(name: str) -> float:
        key = f"{t}.{name}"
        if key not in params:
            raise KeyError(f"{key}: missing from the parameters (written by readout_classification)")
        return float(params[key])

    if three_state:
        centres = tuple((get(f"readout_i{s}"), get(f"readout_q{s}")) for s in range(3))
        ii, iq, qq = get("readout_cov_ii"), get("readout_cov_iq"), get("readout_cov_qq")
        return ThreeStateDiscriminator(centres, ((ii, iq), (iq, qq)))
    centres = tuple((get(f"readout_i{s}"), get(f"readout_q{s}")) for s in range(2))
    return TwoStateDiscriminator(get("readout_angle"), get("readout_threshold"), centres)


# -- the experiment ---------------------------------------------------------------------------------

Prepare = Callable[[str, int, Mapping[str, float]], list[Any]]


def _pulse(gate: DragGate, dt_s: float, amplitude: float, beta_s: float, offset_hz: float) -> NDArray[np.complex128]:
    """The lifted-Gaussian DRAG pulse of the node library's ``pi_amplitude`` (peak of I) at
    ``offset_hz`` from the frame: a drive at frame + Δ is the envelope times e^{−i2πΔt}, t
    from the pulse centre, in the device's convention (a 1→2 pulse at Δ = α moves |1⟩ to
    |2⟩ with this sign, not the other)."""
    g, dg, x = gate.envelope(dt_s)
    return np.asarray(amplitude * (g + 1j * beta_s * dg) * np.exp(-2j * np.pi * offset_hz * x), dtype=np.complex128)


def frame_hz(device: Any, target: str, params: Mapping[str, float]) -> float:
    """``target``'s drive frame: ``params["<t>.frame_hz"]`` when given, else the simulated
    device's frame setting for the mode (the NCO a lab tunes, not a property of the qubit)."""
    key = f"{target}.frame_hz"
    if key in params:
        return float(params[key])
    mode = getattr(getattr(getattr(device, "params", None), "model", None), "mode", None)
    f = None if mode is None else mode(target).frame_hz
    if f is None:
        raise ValueError(f"params: {key} is missing and the device does not expose its frames: allowed a "
                         "mapping with the qubit's drive frame frequency")
    return float(f)


class ReadoutClassification:
    """Readout classification of one qubit (an ``Experiment``).

    Prepares |0⟩ (nothing), |1⟩ (a π pulse) and, with ``three_state``, |2⟩ (π, then a 1→2 π
    pulse at the anharmonicity), takes ``shots`` IQ points of each with the device's
    ``run_iq``, fits the discriminator and reports it as parameter values, its assignment
    fidelity and confusion matrix (two-fold cross-validated: fit on one half of the shots,
    score on the other, both ways), and ``data`` for ``plot_iq``.

    Default pulses: the node library's π pulse (``envs.drag.DragGate``, a lifted Gaussian
    of ``pulse_duration_s``, σ = T/4, on ``drive:<q>``) of peak ``{t}.pi_amplitude`` with
    ``{t}.drag_beta`` (0 when absent), at ``{t}.frequency_hz`` (the frame when absent), the
    frame being ``{t}.frame_hz`` or the device's; the 1→2 pulse has the same envelope, peak
    ``{t}.pi12_amplitude`` (else π amplitude / √2, the 1–2 transition's √2 larger matrix
    element), no DRAG, at ``{t}.frequency_hz + {t}.anharmonicity_hz``. Populations are
    all the preparation needs, so the pulses' phases are not tracked across them.
    ``prepare(qubit, level, params)`` replaces them.

    Status: ``bad_data`` when the blobs are not separated (fitted |μ1 − μ0| below
    ``min_separation`` pooled standard deviations, or fidelity ≤ 0.55); ``out_of_spec``
    when the fidelity is below ``min_fidelity``; else ``in_spec``. The cheap form with a
    discriminator already in ``params`` is a check: it scores the stored discriminator on
    fresh shots and is ``out_of_spec`` when a refit on those shots beats it by more than
    ``check_tolerance`` plus twice the shot-noise standard error (drifted blobs); it
    writes no values.

    Args:
        three_state: fit the three-state classifier too (needs ``{t}.anharmonicity_hz``).
        shots: IQ shots per prepared state (full form).
        cheap_shots: IQ shots per prepared state (cheap form).
        min_fidelity: in_spec threshold on the assignment fidelity, in (0.5, 1].
        min_separation: bad_data threshold on the fitted SNR |μ1 − μ0| / σ, >= 0.
        check_tolerance: fidelity loss the cheap check accepts, in [0, 0.5].
        pulse_duration_s: length of the default π pulses, in (0, 1e-6] s.
        plot_points: IQ points per state kept in ``data`` (subsampled), >= 1.
        prepare: ops preparing level 1 or 2 of a qubit, replacing the default pulses.
    """

    def __init__(self, *, three_state: bool = False, shots: int = 5000, cheap_shots: int = 1000,
                 min_fidelity: float = 0.8, min_separation: float = 1.0, check_tolerance: float = 0.01,
                 pulse_duration_s: float = 20e-9, plot_points: int = 300, prepare: Prepare | None = None) -> None:
        for key, v, lo in (("shots", shots, 20), ("cheap_shots", cheap_shots, 20), ("plot_points", plot_points, 1)):
            if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= 10_000_000):
                raise ValueError(f"ReadoutClassification.{key}={v!r} is out of range: allowed an integer in "
                                 f"[{lo}, 10000000]")
        for key, f, flo, fhi in (("min_fidelity", min_fidelity, 0.5, 1.0),
                                 ("min_separation", min_separation, 0.0, 100.0),
                                 ("check_tolerance", check_tolerance, 0.0, 0.5)):
            if not (isinstance(f, int | float) and not isinstance(f, bool) and flo <= f <= fhi) or (
                    key == "min_fidelity" and f == 0.5):
                bounds = "(0.5, 1]" if key == "min_fidelity" else f"[{flo}, {fhi}]"
                raise ValueError(f"ReadoutClassification.{key}={f!r} is out of range: allowed {bounds}")
        self.three_state = bool(three_state)
        self._shots, self._cheap_shots = shots, cheap_shots
        self.min_fidelity, self.min_separation = float(min_fidelity), float(min_separation)
        self.check_tolerance = float(check_tolerance)
        if not (isinstance(pulse_duration_s, int | float) and not isinstance(pulse_duration_s, bool)
                and 0 < pulse_duration_s <= 1e-6):
            raise ValueError(f"ReadoutClassification.pulse_duration_s={pulse_duration_s!r} is out of range: "
                             "allowed (0, 1e-6] s")
        self.gate = DragGate(duration_s=float(pulse_duration_s))
        self.plot_points = plot_points
        self._prepare = prepare

    @property
    def name(self) -> str:
        return "readout_classification_3" if self.three_state else "readout_classification"

    @property
    def reads(self) -> tuple[str, ...]:
        return ("{t}.pi_amplitude", "{t}.anharmonicity_hz") if self.three_state else ("{t}.pi_amplitude",)

    @property
    def writes(self) -> tuple[str, ...]:
        centres = tuple(f"{{t}}.readout_{c}{s}" for s in range(3 if self.three_state else 2) for c in "iq")
        shape = ("{t}.readout_cov_ii", "{t}.readout_cov_iq", "{t}.readout_cov_qq") if self.three_state \
            else ("{t}.readout_angle", "{t}.readout_threshold")
        return (*centres, *shape, "{t}.readout_fidelity", "{t}.readout_p01", "{t}.readout_p10")

    @property
    def states(self) -> int:
        return 3 if self.three_state else 2

    def shots(self, cheap: bool) -> int:
        return self.states * (self._cheap_shots if cheap else self._shots)

    # -- sequences

    def _pulse_ops(self, q: str, level: int, params: Mapping[str, float], device: Any) -> list[Any]:
        if self._prepare is not None:
            return list(self._prepare(q, level, params))
        if level == 0:
            return []
        dt_s = float(device.dt_s)
        amp = _param(params, f"{q}.pi_amplitude", 0.0, 1.0)
        beta = float(params.get(f"{q}.drag_beta", 0.0))
        offset = float(params[f"{q}.frequency_hz"]) - frame_hz(device, q, params) if f"{q}.frequency_hz" in params \
            else 0.0
        ops: list[Any] = [Play(_pulse(self.gate, dt_s, amp, beta, offset), channel=f"drive:{q}"), Barrier()]
        if level == 2:
            alpha = float(params[f"{q}.anharmonicity_hz"])
            amp12 = _param(params, f"{q}.pi12_amplitude", 0.0, 1.0) if f"{q}.pi12_amplitude" in params \
                else amp / math.sqrt(2.0)
            ops += [Play(_pulse(self.gate, dt_s, amp12, 0.0, offset + alpha), channel=f"drive:{q}"), Barrier()]
        for op in ops:
            if isinstance(op, Play) and float(np.max(np.abs(op.waveform))) > 1.0:
                raise ValueError(f"params: {q}.pi_amplitude={amp!r}, {q}.drag_beta={beta!r} make a pulse of peak "
                                 f"|u| = {float(np.max(np.abs(op.waveform))):.4g}: allowed |u| <= 1")
        return ops

    def sequences(self, q: str, params: Mapping[str, float], device: Any) -> list[PulseSequence]:
        """One sequence per prepared state |0⟩, |1⟩[, |2⟩] on ``device``, each measuring ``q``."""
        return [PulseSequence([*self._pulse_ops(q, s, params, device), Measure((q,))]) for s in range(self.states)]

    # -- run

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        if not isinstance(target, str):
            raise ValueError(f"target={target!r}: allowed one qubit name (readout classification is per qubit)")
        if not hasattr(device, "run_iq"):
            raise ValueError(f"device: {type(device).__name__} has no run_iq: allowed a device with single-shot "
                             "IQ readout (SimulatedMultiQubitDevice with params.iq)")
        for r in self.reads:
            key = r.format(t=target)
            if key not in params:
                raise ValueError(f"params: {key} is missing: allowed a mapping with {[x.format(t=target) for x in self.reads]}")
        dt_s = float(device.dt_s)
        seqs = self.sequences(target, params, device)
        n = self._cheap_shots if cheap else self._shots
        iq = np.asarray(device.run_iq(seqs, n), dtype=np.float64)[:, :, 0, :]
        seq_time = sum(_duration_s(s, dt_s) for s in seqs)
        device_time = n * (len(seqs) * REPETITION_TIME_S + seq_time)
        stored = None
        if cheap:
            try:
                stored = discriminator_from_params(params, target, self.three_state)
            except KeyError:
                stored = None
        return self.analyse(target, list(iq), rng, shots=n * len(seqs), device_time_s=device_time, stored=stored,
                            stored_fidelity=params.get(f"{target}.readout_fidelity"))

    def analyse(self, target: str, points_by_state: Sequence[FloatArray], rng: np.random.Generator, *,
                shots: int = 0, device_time_s: float = 0.0, stored: Discriminator | None = None,
                stored_fidelity: float | None = None) -> ExperimentResult:
        """Fit and judge IQ points (one (N, 2) array per prepared state); side-effect free."""
        pts = [_points(f"points_by_state[{i}]", p) for i, p in enumerate(points_by_state)]
        if len(pts) != self.states:
            raise ValueError(f"points_by_state: {len(pts)} groups: allowed {self.states}")
        fit = self._fit(pts)
        conf = self._cross_validated_confusion(pts, rng)
        fid = assignment_fidelity(conf)
        two = fit if isinstance(fit, TwoStateDiscriminator) else fit_two_state(pts[0], pts[1])
        pooled = _pooled_covariance(pts[:2])
        sep = float(np.hypot(*(np.asarray(two.centres[1]) - np.asarray(two.centres[0]))))
        snr = sep / math.sqrt(0.5 * float(np.trace(pooled)))
        quality = {"assignment_fidelity": fid, "snr_estimate": snr,
                   "fidelity_stderr": math.sqrt(max(fid * (1 - fid), 1e-12) / min(len(p) for p in pts))}
        data = self._data(pts, fit, two, conf, fid, rng)
        status: Any
        vals: dict[str, float] = {}
        if snr < self.min_separation or fid <= 0.55:
            status, msg = "bad_data", (f"{target}: blobs not separated (SNR {snr:.2f}, fidelity {fid:.3f}): "
                                       "check the π pulse and the readout")
        elif stored is not None:
            stored_conf = confusion_matrix(stored, pts)
            f_stored = assignment_fidelity(stored_conf)
            quality["stored_fidelity"] = f_stored
            loss = fid - f_stored
            allowed = self.check_tolerance + 2.0 * quality["fidelity_stderr"]
            ok = loss <= allowed and f_stored >= self.min_fidelity
            status = "in_spec" if ok else "out_of_spec"
            msg = (f"{target}: stored discriminator {f_stored:.4f} vs refit {fid:.4f} "
                   f"(loss {loss:+.4f}, allowed {allowed:.4f})"
                   + ("" if stored_fidelity is None else f"; stored fidelity {float(stored_fidelity):.4f}"))
        else:
            vals = values(target, fit)
            vals[f"{target}.readout_fidelity"] = fid
            # The node library's names: p01 = P(read 1 | prepared 0), p10 = P(read 0 | prepared 1),
            # the confusion matrix its experiments correct P(1) with.
            vals[f"{target}.readout_p01"] = float(conf[0, 1:].sum())
            vals[f"{target}.readout_p10"] = float(conf[1, 0])
            status = "in_spec" if fid >= self.min_fidelity else "out_of_spec"
            msg = f"{target}: assignment fidelity {fid:.4f} (SNR {snr:.2f}), {status}"
        return ExperimentResult(self.name, target, status, vals, quality, shots, device_time_s, data, msg)

    def _fit(self, pts: Sequence[FloatArray]) -> Discriminator:
        return fit_three_state(*pts) if self.three_state else fit_two_state(pts[0], pts[1])

    def _cross_validated_confusion(self, pts: Sequence[FloatArray], rng: np.random.Generator) -> FloatArray:
        halves = []
        for p in pts:
            perm = rng.permutation(len(p))
            halves.append((p[perm[: len(p) // 2]], p[perm[len(p) // 2:]]))
        conf = np.zeros((self.states, self.states))
        for a, b in ((0, 1), (1, 0)):
            disc = self._fit([h[a] for h in halves])
            conf += 0.5 * confusion_matrix(disc, [h[b] for h in halves])
        return conf

    def _data(self, pts: Sequence[FloatArray], fit: Discriminator, two: TwoStateDiscriminator, conf: FloatArray,
              fid: float, rng: np.random.Generator) -> dict[str, Any]:
        keep = [p[rng.permutation(len(p))[: self.plot_points]] for p in pts]
        spread = max(float(np.ptp(np.concatenate(pts), axis=0).max()), 1e-9)
        data: dict[str, Any] = {
            "kind": "iq_blobs",
            "points": [k.tolist() for k in keep],
            "states": [f"|{s}⟩" for s in range(self.states)],
            "centres": [list(c) for c in fit.centres],
            "boundary": two.boundary(0.6 * spread).tolist(),
            "confusion": conf.tolist(),
            "fidelity": fid,
            "x_label": "I (a.u.)",
            "y_label": "Q (a.u.)",
        }
        if isinstance(fit, ThreeStateDiscriminator):
            data["covariance"] = [list(r) for r in fit.covariance]
        return data


def _param(params: Mapping[str, float], key: str, lo: float, hi: float) -> float:
    v = float(params[key])
    if not (math.isfinite(v) and lo < abs(v) <= hi):
        raise ValueError(f"params: {key}={v!r} is out of range: allowed 0 < |{key}| <= {hi} (full-scale drive)")
    return v


def _duration_s(seq: PulseSequence, dt_s: float) -> float:
    return sum(len(op.waveform) * dt_s for op in seq.ops if isinstance(op, Play))


def optimal_gap(device: Any, target: str, params: Mapping[str, float],
                experiment: ReadoutClassification | None = None) -> dict[str, float]:
    """How far the two-state discriminator in ``params`` is from the optimal one, from the
    device's truth (evaluation only: IQ model, current T1, prepared level populations).

    Returns ``optimal`` (the Bayes discriminator's fidelity on perfect |0⟩/|1⟩ for this
    SNR and decay), ``optimal_prepared`` (the best threshold's fidelity on the states the
    experiment's pulses actually prepare, thermal population and pulse error included),
    ``fitted_prepared`` (the fitted discriminator, exact, on those states), ``fitted`` (it
    on perfect states) and ``gap`` = optimal_prepared − fitted_prepared."""
    exp = experiment if experiment is not None else ReadoutClassification()
    iq = device.params.iq.qubit(target)
    model = device.current_model()
    t1 = float(model.mode(target).t1_s) if hasattr(model, "mode") else math.inf
    disc = discriminator_from_params(params, target)
    assert isinstance(disc, TwoStateDiscriminator)
    pops = np.asarray(device.level_probabilities(exp.sequences(target, params, device)[:2]))
    opt = optimal_two_state(iq, t1)
    _, opt_prep = optimal_prepared(iq, t1, pops)
    # envs.iq_readout names a line by its axis direction, the discriminator by the rotation: −φ
    fit_prep = prepared_fidelity(iq, t1, -disc.angle_rad, disc.threshold, pops)
    fit_pure = prepared_fidelity(iq, t1, -disc.angle_rad, disc.threshold, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    return {"optimal": opt.fidelity, "optimal_prepared": opt_prep, "fitted_prepared": fit_prep,
            "fitted": fit_pure, "gap": opt_prep - fit_prep, "snr": iq.snr, "t1_s": t1}
