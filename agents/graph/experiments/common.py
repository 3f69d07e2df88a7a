"""What every experiment of the node library shares: settings checks, running programs for
counts, the readout correction, weighted fits and the honest status of a fit.

Cost accounting (``ExperimentResult.shots`` / ``device_time_s``): each sequence is run
``shots`` times, and one shot of a sequence occupies the repetition time
(``experiment.REPETITION_TIME_S``, or the device's ``params.rep_time_s`` when it has one)
plus the sequence's own duration, so ``device_time_s = Σ_seq shots·(rep + duration)``.

Readout: P(1) is the fraction of shots read as 1. When the store holds the qubit's
assignment errors ``qN.readout_p01`` = P(read 1 | prepared 0) and ``qN.readout_p10`` =
P(read 0 | prepared 1) (the readout-classification node's confusion matrix), P(1) is
corrected to (P1 − p01)/(1 − p01 − p10); otherwise it is the raw fraction and the fits
carry the assignment error in their offset and contrast.

Confirmation (``agrees``): an experiment's verdict on a stored value compares two
estimates, the new one and the stored one, and both are noisy: the difference is tested
as z = |new − stored| / √(se_new² + se_stored²), where se_stored is the standard error the
writer of the stored value recorded beside it (``"<name>_stderr"``, ``stderr_key``; 0 for a
prior or an imported value, which carry none). The threshold ``CONFIRM_Z`` holds the
false-alarm rate of a whole bring-up: a ``ring_8`` bring-up makes up to ~100 such
comparisons (8 qubits × ~6 confirming nodes × up to 2 confirmations), and a Bonferroni
bound of 5 % over them is a two-sided 5e-4 per comparison, z = 3.48. Below a physical
tolerance (``min_tolerance``, each experiment's ``tolerance``) a difference is in spec
whatever its z: it is too small to matter for the gate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares
from scipy.stats import norm

from ....envs.drag import DragGate
from ..experiment import REPETITION_TIME_S, ExperimentResult, Status
from .pulses import QubitPulses, SequenceBuilder

FloatArray = NDArray[np.float64]


def check_int(owner: str, name: str, value: object, low: int, high: int) -> None:
    if not (isinstance(value, int | np.integer) and not isinstance(value, bool) and low <= int(value) <= high):
        raise ValueError(f"{owner}.{name}={value!r} is out of range: allowed an integer in [{low}, {high}]")


def check_float(owner: str, name: str, value: object, low: float, high: float) -> None:
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool) and math.isfinite(
        float(value)) and low <= float(value) <= high
    if not ok:
        raise ValueError(f"{owner}.{name}={value!r} is out of range: allowed a number in [{low}, {high}]")


# A bring-up's false-alarm budget over its number of confirmations (module docstring).
BRINGUP_FALSE_ALARM = 0.05
BRINGUP_CONFIRMATIONS = 100
CONFIRM_Z = float(norm.isf(BRINGUP_FALSE_ALARM / BRINGUP_CONFIRMATIONS / 2.0))


def stderr_key(name: str) -> str:
    """The store name of ``name``'s standard error: ``"q3.pi_amplitude_stderr"``."""
    return f"{name}_stderr"


def stored_stderr(params: Mapping[str, float], name: str) -> float:
    """The standard error recorded with the stored ``name`` (0 when none was: a prior)."""
    v = params.get(stderr_key(name))
    if v is None:
        return 0.0
    v = float(v)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"parameter {stderr_key(name)!r} = {v!r}: allowed a standard error >= 0")
    return v


def agrees(difference: float, se_new: float, se_stored: float, min_tolerance: float) -> bool:
    """Whether a new estimate ``difference`` away from the stored one is consistent with it
    (module docstring): |Δ| within ``min_tolerance`` or within ``CONFIRM_Z`` combined
    standard errors."""
    sigma = math.hypot(se_new, se_stored)
    return abs(difference) <= max(min_tolerance, CONFIRM_Z * sigma)


def check_shot_plan(owner: str, settings: object, min_points: int, max_points: int, *,
                    points: str = "points", shots: str = "shots_per_point") -> None:
    """Check a full/check_data plan pair: ``<points>`` and ``cheap_<points>`` in
    [min_points, max_points], ``<shots>`` and ``cheap_<shots>`` in [1, 10⁶]."""
    for name in (points, f"cheap_{points}"):
        check_int(owner, name, getattr(settings, name), min_points, max_points)
    for name in (shots, f"cheap_{shots}"):
        check_int(owner, name, getattr(settings, name), 1, 10**6)


def check_acceptance(owner: str, settings: Any, *, contrast: bool = True) -> None:
    """Check the fit acceptance settings: ``min_contrast`` in [0, 1] (when ``contrast``) and
    ``max_chi2`` in [1, 10⁶]."""
    if contrast:
        check_float(owner, "min_contrast", settings.min_contrast, 0.0, 1.0)
    check_float(owner, "max_chi2", settings.max_chi2, 1.0, 1e6)


# What a single-qubit experiment that plays the qubit's gate pulse reads from the store.
QUBIT_PULSE_READS = ("{t}.frequency_hz", "{t}.pi_amplitude")


class QubitEstimate:
    """A base of the single-qubit experiments whose only inputs are the qubit's frequency and
    π amplitude (the pulse they play, shaped by their ``gate`` setting) and which estimate one
    stored parameter, ``ESTIMATE``, with its standard error beside it (``stderr_key``).

    ``run`` checks the target and builds the qubit's pulses, the experiment's ``scan``
    measures and fits; its result is ``bad_data`` (a fit not to trust) or ``estimate`` (the
    verdict on one that is). A subclass names them in its class statement:
    ``class Rabi(QubitEstimate, name="rabi", title="Rabi", estimate="pi_amplitude")``,
    ``title`` being how its messages name it.
    """

    NAME: ClassVar[str]
    TITLE: ClassVar[str]
    ESTIMATE: ClassVar[str]
    gate: DragGate

    def __init_subclass__(cls, *, name: str = "", title: str, estimate: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.NAME, cls.TITLE, cls.ESTIMATE = name, title, estimate

    @property
    def name(self) -> str:
        return self.NAME

    @property
    def reads(self) -> tuple[str, ...]:
        return QUBIT_PULSE_READS

    @property
    def writes(self) -> tuple[str, ...]:
        key = f"{{t}}.{self.ESTIMATE}"
        return (key, stderr_key(key))

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        q = check_target(self.name, target, device)
        return self.scan(device, QubitPulses.from_params(device, q, params, gate=self.gate), params, cheap)

    def scan(self, device: Any, pulses: QubitPulses, params: Mapping[str, float], cheap: bool) -> ExperimentResult:
        """Measure and fit with ``pulses``, the target qubit's pulses from ``params``."""
        raise NotImplementedError

    def flat_scan(self, q: str, m: ScanMeasurement, missing: str, *, x: Sequence[float] | FloatArray,
                  x_label: str, extra_data: Mapping[str, Any] | None = None) -> ExperimentResult | None:
        """The ``no_response`` result of a scan a constant explains (``flat_chi2`` below
        ``FLAT_CHI2``; ``missing`` names the response it lacks, "no line"), else None: the scan
        is worth a fit."""
        flat = flat_chi2(m)
        if not flat < FLAT_CHI2:
            return None
        return no_response(self.name, q, m, flat, f"{q} {self.TITLE}: {missing}: P(1) flat within shot noise "
                           f"(reduced chi2 of a constant {flat:.2f})", x=x, x_label=x_label, extra_data=extra_data)

    def bad_data(self, q: str, m: ScanMeasurement, problem: str, shared: Mapping[str, Any], *,
                 symptom: str = "") -> ExperimentResult:
        """The result of a fit not to trust, ``problem`` saying why; ``shared`` holds the
        keyword arguments of ``result`` every result of the run shares (quality, curves)."""
        return result(self.name, q, "bad_data", m, message=f"{q} {self.TITLE}: {problem}", symptom=symptom,
                      **shared)

    def estimate(self, q: str, m: ScanMeasurement, value: float, stderr: float, *, ok: bool, message: str,
                 shared: Mapping[str, Any], values: Mapping[str, float] | None = None,
                 symptom: str = "") -> ExperimentResult:
        """The verdict on a trusted fit: ``in_spec`` when ``ok`` (the new estimate agrees with
        the stored one, ``agrees``), else ``out_of_spec``; either way the result carries the
        estimate ``value`` ± ``stderr`` and any other ``values`` to record."""
        key = f"{q}.{self.ESTIMATE}"
        status: Status = "in_spec" if ok else "out_of_spec"
        return result(self.name, q, status, m, values={key: value, stderr_key(key): stderr, **(values or {})},
                      message=message, symptom=symptom, **shared)


class PointScan:
    """A scan of ``points`` settings at ``shots_per_point`` each; its check_data form is the
    same scan at ``cheap_points`` × ``cheap_shots_per_point``. A mixin of the experiment
    dataclasses that declare those four fields."""

    points: int
    cheap_points: int
    shots_per_point: int
    cheap_shots_per_point: int

    def _check_scan(self, owner: str, min_points: int, max_points: int) -> None:
        check_shot_plan(owner, self, min_points, max_points)

    def _plan(self, cheap: bool) -> tuple[int, int]:
        return (self.cheap_points, self.cheap_shots_per_point) if cheap else (self.points, self.shots_per_point)

    def shots(self, cheap: bool) -> int:
        """Shots one run costs (``cheap``: the check_data form)."""
        points, shots = self._plan(cheap)
        return points * shots


def check_target(name: str, target: object, device: Any) -> str:
    if not isinstance(target, str):
        raise ValueError(f"{name}: target={target!r}: allowed one qubit name such as 'q3'")
    qubits = tuple(getattr(device, "qubits", ()))
    if qubits and target not in qubits:
        raise ValueError(f"{name}: target={target!r} is not a qubit of the device: allowed {list(qubits)}")
    return target


def repetition_time_s(device: Any) -> float:
    rep = getattr(getattr(device, "params", None), "rep_time_s", None)
    return float(rep) if isinstance(rep, int | float) and rep > 0 else REPETITION_TIME_S


@dataclass(frozen=True)
class ScanMeasurement:
    """P(1) of a batch of programs, and what it cost."""

    p1: FloatArray
    sd: FloatArray
    shots: int
    device_time_s: float


def readout_errors(params: Mapping[str, float], target: str) -> tuple[float, float] | None:
    """(p01, p10) from the store, or None when either is absent; bad values name the key."""
    k01, k10 = f"{target}.readout_p01", f"{target}.readout_p10"
    if k01 not in params or k10 not in params:
        return None
    e0, e1 = float(params[k01]), float(params[k10])
    for k, v in ((k01, e0), (k10, e1)):
        if not (math.isfinite(v) and 0.0 <= v < 0.5):
            raise ValueError(f"parameter {k!r} = {v!r}: allowed an assignment error in [0, 0.5)")
    return e0, e1


def measure(device: Any, programs: Sequence[SequenceBuilder], shots: int, params: Mapping[str, float],
            target: str) -> ScanMeasurement:
    """Run every program ``shots`` times; P(1) per program (readout-corrected when the store
    has the errors) with its binomial standard deviation (floored at 1/(2·shots) so a
    point at 0 or 1 still has a weight)."""
    seqs = [p.sequence() for p in programs]
    counts = np.asarray(device.run(seqs, int(shots)), dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != 2:
        raise ValueError(f"device returned counts of shape {counts.shape}: allowed (B, 2) for one measured qubit")
    p1 = counts[:, 1] / counts.sum(axis=1)
    var = np.maximum(p1 * (1.0 - p1), 0.25 / shots) / shots
    err = readout_errors(params, target)
    if err is not None:
        scale = 1.0 - err[0] - err[1]
        p1 = (p1 - err[0]) / scale
        var = var / scale**2
    rep = repetition_time_s(device)
    time_s = float(sum(shots * (rep + p.duration_s) for p in programs))
    return ScanMeasurement(p1, np.sqrt(var), int(shots) * len(programs), time_s)


@dataclass(frozen=True)
class Fit:
    """A weighted least-squares fit: values, standard errors (scaled by √χ²_red when above 1)
    and the reduced χ² against the shot noise."""

    values: FloatArray
    stderr: FloatArray
    chi2_red: float
    curve: FloatArray
    ok: bool = True
    extra: dict[str, float] = field(default_factory=dict)


def weighted_fit(model: Callable[[FloatArray, FloatArray], FloatArray], x: FloatArray, y: FloatArray,
                 sd: FloatArray, starts: Sequence[Sequence[float]], lower: Sequence[float],
                 upper: Sequence[float]) -> Fit:
    """Best of several starts of ``model(x, p)`` fitted to ``y ± sd``."""
    best = None
    lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    for p0 in starts:
        start = np.clip(np.asarray(p0, dtype=np.float64), lo, hi)
        try:
            res = least_squares(lambda p: (model(x, p) - y) / sd, start, bounds=(lo, hi), x_scale="jac")
        except (ValueError, np.linalg.LinAlgError):
            continue
        if best is None or res.cost < best.cost:
            best = res
    if best is None:
        n = len(lower)
        return Fit(np.full(n, np.nan), np.full(n, np.nan), math.inf, np.full_like(y, np.nan), ok=False)
    dof = max(1, x.size - best.x.size)
    chi2 = float(2.0 * best.cost / dof)
    try:
        # Parameters differ by many orders of magnitude (Hz next to seconds): the covariance
        # is inverted on unit-norm Jacobian columns, else pinv's cutoff drops whole directions.
        norms = np.linalg.norm(best.jac, axis=0)
        norms = np.where(norms > 0, norms, 1.0)
        js = best.jac / norms
        cov = np.linalg.pinv(js.T @ js) / np.outer(norms, norms)
        se = np.sqrt(np.maximum(np.diag(cov), 0.0)) * math.sqrt(max(chi2, 1.0))
    except np.linalg.LinAlgError:
        se = np.full(best.x.size, np.nan)
    return Fit(best.x, se, chi2, model(x, best.x), ok=bool(best.success))


def result(name: str, target: str, status: Status, m: ScanMeasurement, *, values: Mapping[str, float] | None = None,
           quality: Mapping[str, float] | None = None, x: Sequence[float] = (), fit: Sequence[float] = (),
           x_label: str = "", y_label: str = "P(1)", message: str = "",
           extra_data: Mapping[str, Any] | None = None, symptom: str = "") -> ExperimentResult:
    data: dict[str, Any] = {
        "x": [float(v) for v in x], "y": [float(v) for v in m.p1], "y_err": [float(v) for v in m.sd],
        "fit": [float(v) if math.isfinite(v) else None for v in fit], "x_label": x_label, "y_label": y_label,
    }
    data.update(extra_data or {})
    if symptom:
        data["symptom"] = symptom
    return ExperimentResult(name, target, status, dict(values or {}),
                            {k: float(v) for k, v in (quality or {}).items()}, m.shots, m.device_time_s,
                            data, message)


# What a failed result saw, for the graph's fault isolation (``agents.graph.faults``):
# ``data["symptom"]`` of a result that is not in spec.
NO_RESPONSE = "no_response"      # no line, no Rabi oscillation: the qubit does not answer
DISTORTED = "distorted"          # a response the textbook model does not fit (a split line)
COHERENCE = "coherence"          # T1 or T2* far below what the scan (or the spec) allows
T1_DROP = "t1_drop"              # T1 significantly below the one measured earlier in the run
UNDECIDED = "undecided"          # a verdict's interval straddles its threshold: too few shots
SYMPTOMS = (NO_RESPONSE, DISTORTED, COHERENCE, T1_DROP, UNDECIDED)


# A scan whose points a constant fits within this reduced χ² shows no response at all
# (31 points of a real Rabi or spectroscopy scan give hundreds).
FLAT_CHI2 = 3.0


def flat_chi2(m: ScanMeasurement) -> float:
    """Reduced χ² of the best constant through the scan: ~1 when nothing responds."""
    w = 1.0 / np.square(m.sd)
    mean = float(np.sum(w * m.p1) / np.sum(w))
    return float(np.sum(w * np.square(m.p1 - mean)) / max(1, m.p1.size - 1))


def no_response(name: str, target: str, m: ScanMeasurement, flat: float, message: str, *,
                x: Sequence[float] | FloatArray, x_label: str, extra_data: Mapping[str, Any] | None = None) -> ExperimentResult:
    """The bad-data result of a scan a constant explains (``flat_chi2`` below ``FLAT_CHI2``).

    Nothing in such a scan can pass whatever a line or oscillation fit would say, so none is
    made: the constant is the model that explains the data, and it is what the result
    records as its fit (with its reduced χ²). A lab's flat scans are rare, but a dead qubit or a
    platform that answers noise (qibolab's ``dummy``) makes every scan flat, and multi-start fits
    to noise would be most of the graph's own time per job there."""
    w = 1.0 / np.square(m.sd)
    level = float(np.sum(w * m.p1) / np.sum(w))
    return result(name, target, "bad_data", m, quality={"chi2_red": flat, "contrast": 0.0}, x=[float(v) for v in x],
                  fit=[level] * int(m.p1.size), x_label=x_label, extra_data=extra_data, message=message,
                  symptom=NO_RESPONSE)


def response_symptom(contrast: float, min_contrast: float) -> str:
    """The symptom of a scan whose fit failed: ``NO_RESPONSE`` when the response it found is
    below ``min_contrast`` (or none was fitted), else ``DISTORTED`` (a response the model
    does not fit)."""
    return NO_RESPONSE if not contrast >= min_contrast else DISTORTED


def fit_problem(fit: Fit, max_chi2: float) -> str | None:
    """Why a fit is not trustworthy, or None."""
    if not fit.ok or not np.all(np.isfinite(fit.values)):
        return "the fit did not converge"
    if fit.chi2_red > max_chi2:
        return f"residuals too large for shot noise (reduced chi2 {fit.chi2_red:.2f} > {max_chi2})"
    return None
