"""A verified verdict on a calibrated DRAG gate, from checks of its own (fresh shots).

What a lab wants after a calibration is not the calibration's own estimate but an
independent answer: is this gate at its coherence limit, and how sure are we? This module
runs a fixed set of error-amplifying *check sequences* (fixed depths, none of them the
probes a calibration fits on) through the ``Device`` protocol, so it runs the same on the
simulated device and on backends, and reads them into a ``Verdict``:
``calibrated`` with a measured 1 − F and its 90 % interval, or ``failed`` with a ``Reason``.

The model (``docs/verification.md`` derives it):

    1 − F = coherence limit (stated T1, T2; ``StatedCoherence``)
            + θ_amp²/6 + θ_drag²/6 + θ_det²/6   (coherent residuals, per gate)

Each residual angle θ has a posterior on a grid from the binomial likelihood of its
family's checks (amplitude SX·X^n, DRAG SY·(X̄·X)^n, Ramsey SX·τ·SY; readout offset and
contrast measured by two checks, decay of each train predicted from the stated T1/T2);
the interval on 1 − F is the 5–95 % range of the sum under those posteriors. Two identity
trains of the same length, (X·X̄·X̄·X)^n and (X·X̄·X̄·X)^n·X, test what the sum does not contain:
their sum of excited populations is 1 + (leaked population), independent of decay, and the
odd one's loss against a single X is the decay, which the stated T1/T2 bound from above.
Analysis (``analyse_checks``) is a pure function of counts; ``verify_devices`` runs the
checks. Layering: envs only (numpy/scipy), no engine.

The default ``VerificationSettings()`` measures what the coherence model assumes: the
trains' decay (on the poles and on the equator) becomes two rate ratios inside the estimate
and its interval, the pulse's leakage is computed at the stated anharmonicity, and it runs
in up to three pooled stages. A false ``calibrated`` is a silent failure, worse than a
refused run, so the default is the verification whose ``calibrated`` holds on devices the
model does not describe (docs/verification.md). ``VerificationSettings.quick()`` takes the
stated limit as exact and only alarms on a decay that is clearly faster: cheaper, but a gate
whose physics lies outside that model (an AWG tail that lengthens it, a TLS, a DRAG leakage
floor) can pass as ``calibrated``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import chi2

from ._validation import finite, require
from .drag import DragGate, parameter_rows
from .physics import Transmon, coherence_limit, leakage, unitaries
from .probes import Step, gate_steps_sequence
from .protocol import Device, Play, PulseSequence, SimulatedTruth, run_on_devices

FloatArray = NDArray[np.float64]

VERDICT_VERSION = 1


class Reason(enum.StrEnum):
    """Why a calibration failed: a closed set of codes, extended by adding members.

    The string value is what reports and tables carry (``failed: <value>``)."""

    AMPLITUDE_LIMIT = "amplitude_limit"
    LOW_READOUT_CONTRAST = "low_readout_contrast"
    FREQUENCY_OUT_OF_RANGE = "frequency_out_of_range"
    LEAKAGE = "leakage"
    UNSTABLE_OR_TLS_LIKE = "unstable_or_tls_like"
    BUDGET_TOO_SMALL = "budget_too_small"
    DECAY_FASTER_THAN_COHERENCE = "decay_faster_than_coherence"
    RESIDUAL_ERROR = "residual_error"  # a coherent residual alone puts 1 − F over the threshold


Status = Literal["calibrated", "failed"]
Family = Literal["amplitude", "drag", "detuning"]
FAMILIES: tuple[Family, ...] = ("amplitude", "drag", "detuning")


@dataclass(frozen=True)
class StatedCoherence:
    """The T1 and T2 the lab states for a qubit (its characterisation, not measured here).

    The verdict's coherence limit is computed from these; a device that decays faster than
    they say is caught by the identity-train check (``Reason.DECAY_FASTER_THAN_COHERENCE``).
    ``anharmonicity_hz`` (α, from spectroscopy; None: not stated) and ``levels`` let the
    verdict compute the X pulse's leakage (``leakage_model``), which no check of a few
    hundred shots resolves.
    """

    t1_s: float
    t2_s: float
    anharmonicity_hz: float | None = None
    levels: int = 3

    def __post_init__(self) -> None:
        for name in ("t1_s", "t2_s"):
            v = finite(f"StatedCoherence.{name}", getattr(self, name))
            require(0 < v <= 10.0, f"StatedCoherence.{name}", v, "(0, 10] s")
        require(self.t2_s <= 2 * self.t1_s * (1 + 1e-9), "StatedCoherence.t2_s", self.t2_s,
                f"<= 2·t1_s = {2 * self.t1_s!r} s")
        if self.anharmonicity_hz is not None:
            a = finite("StatedCoherence.anharmonicity_hz", self.anharmonicity_hz)
            require(1e6 <= abs(a) <= 5e9, "StatedCoherence.anharmonicity_hz", a, "None or 1 MHz <= |α| <= 5 GHz")
        require(isinstance(self.levels, int) and not isinstance(self.levels, bool) and 3 <= self.levels <= 6,
                "StatedCoherence.levels", self.levels, "an integer in [3, 6]")

    def limit(self, gate_duration_s: float) -> float:
        """Coherence-limited 1 − F of a gate of this duration (``physics.coherence_limit``)."""
        return float(coherence_limit(gate_duration_s, np.array(self.t1_s), np.array(self.t2_s)))


def stated_coherence_of(device: Device) -> StatedCoherence | None:
    """T1/T2 of a simulated device's model at its clock (simulation states the truth);
    None for a device without truth (hardware: the lab states them, e.g. from a store)."""
    if isinstance(device, SimulatedTruth):
        t = device.current_transmon()
        return StatedCoherence(float(t.t1_s), float(min(t.t2_s, 2 * t.t1_s)), float(t.anharmonicity_hz),
                               int(min(max(t.levels, 3), 6)))
    return None


def model_leakage(waveform: ArrayLike, dt_s: float, stated: StatedCoherence) -> float | None:
    """Leakage per gate of the X ``waveform`` (S,) on a closed ``stated.levels``-level
    transmon of the stated anharmonicity, driven so that the pulse's area is π (its
    calibrated amplitude fixes the drive strength); None when α is not stated.

    A gate that leaks ℓ from the qubit subspace has F ≈ 1 − ℓ. On held-out devices this
    matches the simulated leakage to 10–20 % (3 levels; docs/verification.md)."""
    if stated.anharmonicity_hz is None:
        return None
    w = np.asarray(waveform, dtype=np.complex128).reshape(1, -1)
    area = float(np.abs(np.sum(w[0])) * dt_s)
    model = Transmon(levels=stated.levels, anharmonicity_hz=float(stated.anharmonicity_hz),
                     rabi_max_hz=0.5 / area, detuning_hz=0.0, t1_s=1.0, t2_s=1.0, dt_s=dt_s)
    return float(leakage(unitaries(model, w))[0])


@dataclass(frozen=True)
class VerificationSettings:
    """What the verification runs and how it decides.

    Attributes:
        shots_per_check: shots of each amplitude, DRAG and Ramsey check (>= 4).
        reference_shots: shots of each readout check and identity train (>= 4): the
            references the decay and leakage tests compare.
        amplitude_depths: n of SX·X^n (even, increasing): the shallowest sets the range.
        drag_depths: n of SY·(X̄·X)^n (increasing).
        ramsey_delays_s: τ of SX·τ·SY (increasing).
        train_fraction: identity-train length in units of the stated decay time
            1/Γ, Γ = (1/T1 + 1/T2)/2 (0.5: the loss is most sensitive to a faster decay).
        threshold: ``failed`` when the interval's upper bound exceeds threshold × limit.
        min_contrast: ``failed`` when the measured readout contrast is below this.
        z_alarm: one-sided z-score at which the decay or leakage test fails (3: 0.13 %
            false alarms per test on a device that behaves as stated).
        samples: Monte Carlo samples of the error posterior (fixed seed: deterministic).
        max_train_s: longest identity train (s), e.g. a backend's longest program; None:
            ``train_fraction``/Γ alone sets the length. A shorter train sees less of a
            faster decay (docs/verification.md). It bounds the T1 delay check too.
        t1_delay_fraction: None (off), or the delay of a T1 check X·τ in units of the
            stated T1 (ln 2 = 0.693: where a T1 half the stated one loses most against
            it); it runs with ``reference_shots`` and fails the gate as
            ``DECAY_FASTER_THAN_COHERENCE`` like the identity trains.
        stages: 1, or a sequential verification: the checks run up to ``stages`` times,
            stopping as soon as the verdict is clear (``verify_devices``); ``shots`` is one
            stage's cost, ``max_shots`` the most it spends.
        train_shots: shots of each identity train; None: ``reference_shots``. The trains
            are what bounds the gate's incoherent error (``measure_decay``), so they need
            more shots than the readout references.
        measure_decay: put the decay the identity trains measure into the estimate and
            its interval (1 − F = the limit at r × the stated decay rates + residuals, r
            from the trains) instead of assuming the stated limit and only alarming on a
            decay that is clearly faster (on by default; False: the limit is taken as
            stated, as in ``quick()``).
        gate_detuning_error: count a residual detuning θ_det (Ramsey phase per gate
            duration) as the error it makes in the X pulse, ``detuning_weight`` ×
            θ_det²/6 (0.18× for the DRAG envelope: during a π pulse a detuning mostly
            tilts the axis, and its Z part is a frame), instead of θ_det²/6. False
            overstates a detuning's 1 − F of the gate about fivefold (on by default).
        leakage_model: add the X pulse's leakage at the stated anharmonicity
            (``model_leakage``; nothing when ``StatedCoherence.anharmonicity_hz`` is None)
            to the estimate, with a 25 % model uncertainty. A DRAG pulse's leakage cancels
            in the identity trains' X·X̄ pairs, and where it does add up (random-axis
            trains) |2> relaxes as fast as it fills: at 0.5× the limit per gate it is
            below the shot noise of 500 shots (on by default).
        equator_trains: with ``measure_decay``, add two identity trains run on the
            equator, SY·(X·X̄·X̄·X)^n·SY and SY·(X·X̄·X̄·X)^n·SY† (``train_shots`` each): the
            pole trains see mostly T1, these mostly T2, and the decay is then measured as
            two rate ratios (T1 and T2 each r times the stated), so that a gate whose
            extra decay is dephasing (an AWG tail on a qubit with T2 ≪ T1) is bounded
            too (on by default).
    """

    shots_per_check: int = 32
    reference_shots: int = 64
    amplitude_depths: tuple[int, ...] = (2, 6, 18, 54)
    drag_depths: tuple[int, ...] = (1, 3, 9, 27)
    ramsey_delays_s: tuple[float, ...] = (0.1e-6, 0.3e-6, 0.9e-6, 2.7e-6)
    train_fraction: float = 0.5
    threshold: float = 1.5
    min_contrast: float = 0.3
    z_alarm: float = 3.0
    samples: int = 20000
    max_train_s: float | None = None
    t1_delay_fraction: float | None = None
    stages: int = 3
    train_shots: int | None = 256
    measure_decay: bool = True
    gate_detuning_error: bool = True
    leakage_model: bool = True
    equator_trains: bool = True

    def __post_init__(self) -> None:
        for name in ("shots_per_check", "reference_shots"):
            v = getattr(self, name)
            require(isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= 10**6,
                    f"VerificationSettings.{name}", v, "an integer in [4, 1e6]")
        for name, seq, even in (("amplitude_depths", self.amplitude_depths, True),
                                ("drag_depths", self.drag_depths, False)):
            ok = (len(seq) >= 1 and all(isinstance(d, int) and 1 <= d <= 4096 and (not even or d % 2 == 0)
                                         for d in seq) and list(seq) == sorted(set(seq)))
            require(ok, f"VerificationSettings.{name}", seq,
                    "increasing integers in [1, 4096]" + (", even" if even else ""))
        ok = (len(self.ramsey_delays_s) >= 1 and all(math.isfinite(t) and 0 < t <= 1e-3 for t in self.ramsey_delays_s)
              and list(self.ramsey_delays_s) == sorted(set(self.ramsey_delays_s)))
        require(ok, "VerificationSettings.ramsey_delays_s", self.ramsey_delays_s, "increasing delays in (0, 1e-3] s")
        require(0 < finite("VerificationSettings.train_fraction", self.train_fraction) <= 1,
                "VerificationSettings.train_fraction", self.train_fraction, "(0, 1]")
        require(finite("VerificationSettings.threshold", self.threshold) > 1,
                "VerificationSettings.threshold", self.threshold, "> 1")
        require(0 <= finite("VerificationSettings.min_contrast", self.min_contrast) < 1,
                "VerificationSettings.min_contrast", self.min_contrast, "[0, 1)")
        require(finite("VerificationSettings.z_alarm", self.z_alarm) > 0,
                "VerificationSettings.z_alarm", self.z_alarm, "> 0")
        require(isinstance(self.samples, int) and 1000 <= self.samples <= 10**6,
                "VerificationSettings.samples", self.samples, "an integer in [1000, 1e6]")
        if self.max_train_s is not None:
            require(0 < finite("VerificationSettings.max_train_s", self.max_train_s) <= 1.0,
                    "VerificationSettings.max_train_s", self.max_train_s, "None or (0, 1] s")
        require(isinstance(self.stages, int) and not isinstance(self.stages, bool) and 1 <= self.stages <= 64,
                "VerificationSettings.stages", self.stages, "an integer in [1, 64]")
        if self.train_shots is not None:
            v = self.train_shots
            require(isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= 10**6,
                    "VerificationSettings.train_shots", v, "None or an integer in [4, 1e6]")
        for name in ("measure_decay", "gate_detuning_error", "leakage_model", "equator_trains"):
            require(isinstance(getattr(self, name), bool), f"VerificationSettings.{name}", getattr(self, name),
                    "True or False")
        if self.t1_delay_fraction is not None:
            require(0 < finite("VerificationSettings.t1_delay_fraction", self.t1_delay_fraction) <= 5.0,
                    "VerificationSettings.t1_delay_fraction", self.t1_delay_fraction, "None or (0, 5]")

    @classmethod
    def quick(cls, **changes: Any) -> VerificationSettings:
        """The cheap checks, 640 shots in one stage: the identity trains at
        ``reference_shots`` (64), the stated limit taken as exact (only a decay clearly
        faster alarms), a detuning counted as θ_det²/6, no leakage model, no equator
        trains. Measured (docs/verification.md, bench_verdicts, 1,000 calibration shots):
        on the model-mismatch stress set 17.6 % of its ``calibrated`` verdicts are false
        (true 1 − F > 1.5× the limit) and on realistic devices its 90 % interval holds the
        truth in 76 % of cases; the defaults meet ≤ 1 % and 85–95 % on the preset and
        realistic sets (stress 3.6 %) at about three times the shots."""
        return cls(**{"stages": 1, "train_shots": None, "measure_decay": False, "gate_detuning_error": False,
                      "leakage_model": False, "equator_trains": False, **changes})

    @classmethod
    def compact(cls, **changes: Any) -> VerificationSettings:
        """The ``quick()`` checks at a quarter of the shots (160: 8 per family check, 16 per
        readout check and train), for budgets of a few hundred shots. Every depth is kept
        (the shallow ones unwrap the deep ones, so a large residual cannot alias onto a
        small one); the price is a wider interval, so more gates end ``budget_too_small``.
        ``compact(stages=4)`` runs them sequentially (up to 640 shots, stopping when the
        verdict is clear; docs/verification.md has the measured rates of both)."""
        return cls.quick(**{"shots_per_check": 8, "reference_shots": 16, **changes})

    @classmethod
    def trusted(cls, **changes: Any) -> VerificationSettings:
        """The defaults, ``VerificationSettings(**changes)`` (the name kept for configs and
        scripts that ask for it): the identity trains at 256 shots each and their measured
        decay inside the estimate and its interval (``measure_decay``), a detuning counted
        as the error it makes in the X pulse (``gate_detuning_error``), the pulse's leakage
        at the stated anharmonicity (``leakage_model``), the trains on the poles and on the
        equator (``equator_trains``). Sequential: 1,536 shots a stage, up to 3 stages
        (4,608) for a gate whose error the first cannot bound."""
        return cls(**changes)

    @property
    def n_checks(self) -> int:
        """Checks run with ``shots_per_check`` (readout and trains: ``reference_shots``)."""
        return len(self.amplitude_depths) + len(self.drag_depths) + len(self.ramsey_delays_s)

    @property
    def shots(self) -> int:
        """Shots one verification spends on one device."""
        refs = 2 + (self.t1_delay_fraction is not None)
        trains = 4 if self.equator_trains else 2
        return self.n_checks * self.shots_per_check + refs * self.reference_shots + trains * self.trains_shots

    @property
    def trains_shots(self) -> int:
        """Shots of each identity train."""
        return self.reference_shots if self.train_shots is None else self.train_shots

    @property
    def max_shots(self) -> int:
        """The most one verification spends on one device (all ``stages``)."""
        return self.stages * self.shots

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> VerificationSettings:
        """Settings from a plain mapping (a config or an env option), unknown keys refused."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        require(not unknown, "verification", unknown, f"keys among {sorted(known)}")
        conv: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**conv)


@dataclass(frozen=True)
class Check:
    """One check sequence: its gate steps and how its excited population reads.

    ``family`` is "readout", "amplitude", "drag", "detuning" or "train"; for the three
    residual families P1 = m + sign·(C·decay/2)·sin(gain·θ), θ the per-gate angle."""

    name: str
    family: str
    steps: tuple[Step, ...]
    gain: float = 0.0
    sign: float = 1.0
    duration_s: float = 0.0
    train: bool = False


def checks(settings: VerificationSettings, gate_s: float, stated: StatedCoherence) -> tuple[Check, ...]:
    """The check set for a gate of ``gate_s`` seconds (identity-train length from ``stated``)."""
    out = [Check("readout_0", "readout", (("D", 0.0),)),
           Check("readout_1", "readout", (("X", 0.0),), duration_s=gate_s)]
    for n in settings.amplitude_depths:
        out.append(Check(f"amplitude_{n}", "amplitude", (("SX", 0.0),) + (("X", 0.0),) * n,
                         gain=n + 0.5, duration_s=(n + 1) * gate_s))
    for n in settings.drag_depths:
        out.append(Check(f"drag_{n}", "drag", (("SX", math.pi / 2),) + (("X", math.pi), ("X", 0.0)) * n,
                         gain=2.0 * n, sign=-1.0, duration_s=(2 * n + 1) * gate_s))
    for tau in settings.ramsey_delays_s:
        out.append(Check(f"ramsey_{tau * 1e9:g}ns", "detuning", (("SX", 0.0), ("D", tau), ("SX", math.pi / 2)),
                         gain=tau / gate_s, duration_s=tau + 2 * gate_s))
    n = train_blocks(settings, gate_s, stated)
    # X·X̄·X̄·X is the identity to first order in an amplitude error (the rotations about x
    # cancel), in a DRAG error (X·X̄ and X̄·X turn about ±y) and in a residual detuning (an
    # echo), so the trains see only decay and leakage.
    blocks: tuple[Step, ...] = (("X", 0.0), ("X", math.pi), ("X", math.pi), ("X", 0.0)) * n
    out.append(Check(f"train_even_{n}", "train", blocks, duration_s=4 * n * gate_s, train=True))
    out.append(Check(f"train_odd_{n}", "train", (*blocks, ("X", 0.0)), duration_s=(4 * n + 1) * gate_s,
                     train=True))
    if settings.equator_trains:
        # The same blocks on +x (SY prepares it; rotations about ±x keep it, an amplitude
        # error to all orders): the state sits on the equator and decays with T2. SY maps
        # +x to |1>, SY† to |0>.
        sy, syd = ("SX", math.pi / 2), ("SX", -math.pi / 2)
        out.append(Check(f"equator_a_{n}", "train", (sy, *blocks, sy), duration_s=(4 * n + 1) * gate_s, train=True))
        out.append(Check(f"equator_b_{n}", "train", (sy, *blocks, syd), duration_s=(4 * n + 1) * gate_s, train=True))
    if settings.t1_delay_fraction is not None:
        tau = t1_delay(settings, gate_s, stated)
        out.append(Check("t1_delay", "t1", (("X", 0.0), ("D", tau)), duration_s=tau))
    return tuple(out)


def t1_delay(settings: VerificationSettings, gate_s: float, stated: StatedCoherence) -> float:
    """The T1 check's delay: ``t1_delay_fraction`` × stated T1, within ``max_train_s``
    (less the X before it) and 1 ms."""
    assert settings.t1_delay_fraction is not None
    tau = settings.t1_delay_fraction * stated.t1_s
    if settings.max_train_s is not None:
        tau = min(tau, settings.max_train_s - gate_s)
    return float(max(gate_s, min(tau, 1e-3)))


def train_blocks(settings: VerificationSettings, gate_s: float, stated: StatedCoherence) -> int:
    """Blocks X·X̄·X̄·X of the identity trains: ``train_fraction``/Γ long, 1…4000, the odd
    train at most ``max_train_s`` long."""
    t = settings.train_fraction * 2.0 / (1.0 / stated.t1_s + 1.0 / stated.t2_s)
    n = min(4000, max(1, round(t / (4 * gate_s))))
    if settings.max_train_s is not None:
        # The odd train, (4n + 1) gates, within max_train_s.
        n = min(n, max(1, int((settings.max_train_s / gate_s - 1) // 4)))
    return int(n)


def _decay(check: Check, stated: StatedCoherence) -> float:
    """Contrast left of a check's signal after its duration under the stated T1/T2.

    Amplitude trains rotate the state in the y–z plane (half T1, half T2 on average); DRAG
    trains hold it along x (T2); Ramsey idles on the equator (T2). The factor only scales a
    signal read near P1 = 1/2, so its approximation enters the residuals at second order."""
    r1, r2 = 1.0 / stated.t1_s, 1.0 / stated.t2_s
    rate = 0.5 * (r1 + r2) if check.family == "amplitude" else r2
    return math.exp(-rate * check.duration_s)


# -- the verdict ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The verified outcome of one calibration.

    Attributes:
        status: "calibrated" or "failed".
        reason: why it failed (None when calibrated).
        error_estimate: measured 1 − F of the X gate (posterior median; NaN if not measured).
        error_interval: (low, high), the 90 % interval on 1 − F (NaN, NaN if not measured).
        coherence_limit: the limit from the stated T1/T2.
        limiting: what limits the gate: "coherence", "amplitude", "drag", "detuning",
            "leakage", "decay", "readout", "shots" or "amplitude_limit".
        shots_used: shots the verification itself spent (included in a run's total).
        checks: summary of the check data (readout, contrast, residual angles, trains).
        detail: one sentence for a human.
    """

    status: Status
    reason: Reason | None
    error_estimate: float
    error_interval: tuple[float, float]
    coherence_limit: float
    limiting: str
    shots_used: int
    checks: dict[str, float] = field(default_factory=dict)
    detail: str = ""

    @property
    def calibrated(self) -> bool:
        return self.status == "calibrated"

    @property
    def ratio(self) -> float:
        """Estimate over the coherence limit."""
        return self.error_estimate / self.coherence_limit if self.coherence_limit > 0 else math.nan

    def describe(self) -> str:
        """``calibrated: 1−F = … [lo, hi] (r× limit)`` or ``failed: <reason> (detail)``."""
        lo, hi = self.error_interval
        est = (f"1−F = {self.error_estimate:.3g} [{lo:.3g}, {hi:.3g}] ({self.ratio:.2f}× limit)"
               if math.isfinite(self.error_estimate) else "no estimate")
        if self.calibrated:
            return f"calibrated: {est}"
        return f"failed: {self.reason} ({self.detail}; {est})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (NaN as None); ``from_dict`` reads it back."""
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None
        return {
            "version": VERDICT_VERSION, "status": self.status,
            "reason": None if self.reason is None else self.reason.value,
            "error_estimate": num(self.error_estimate),
            "error_interval": [num(self.error_interval[0]), num(self.error_interval[1])],
            "coherence_limit": num(self.coherence_limit), "limiting": self.limiting,
            "shots_used": int(self.shots_used),
            "checks": {k: num(float(v)) for k, v in self.checks.items()}, "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        def num(x: Any) -> float:
            return math.nan if x is None else float(x)
        require(d.get("status") in ("calibrated", "failed"), "verdict.status", d.get("status"),
                "'calibrated' or 'failed'")
        reason = d.get("reason")
        lo, hi = d.get("error_interval") or (None, None)
        return cls(status=d["status"], reason=None if reason is None else Reason(reason),
                   error_estimate=num(d.get("error_estimate")), error_interval=(num(lo), num(hi)),
                   coherence_limit=num(d.get("coherence_limit")), limiting=str(d.get("limiting", "")),
                   shots_used=int(d.get("shots_used", 0)),
                   checks={k: num(v) for k, v in dict(d.get("checks") or {}).items()},
                   detail=str(d.get("detail", "")))

    def row(self) -> dict[str, Any]:
        """The verdict columns of an evaluation row."""
        return {"verdict": self.status, "verdict_reason": "" if self.reason is None else self.reason.value,
                "verdict_estimate": self.error_estimate, "verdict_low": self.error_interval[0],
                "verdict_high": self.error_interval[1], "verification_shots": int(self.shots_used)}


def failed(reason: Reason, limit: float, limiting: str, detail: str, shots: int = 0,
           summary: dict[str, float] | None = None,
           estimate: float = math.nan, interval: tuple[float, float] = (math.nan, math.nan)) -> Verdict:
    """A ``failed`` verdict (also for callers outside this module, e.g. a limit hit upstream)."""
    return Verdict("failed", reason, estimate, interval, limit, limiting, shots, dict(summary or {}), detail)


# -- analysis (pure) --------------------------------------------------------------------------


def _bloch_gate(envelope: FloatArray, dt_s: float, stated: StatedCoherence, sign: float) -> FloatArray:
    """4×4 affine Bloch map (1, x, y, z) of a π pulse about ±x with this envelope, under the
    stated T1 (towards z = +1, |0>) and T2, sample by sample."""
    from scipy.linalg import expm

    omega = math.pi * envelope / (envelope.sum() * dt_s)
    out = np.eye(4)
    r1, r2 = 1.0 / stated.t1_s, 1.0 / stated.t2_s
    for w in omega:
        a = np.array([[0.0, 0.0, 0.0, 0.0],
                      [0.0, -r2, 0.0, 0.0],
                      [0.0, 0.0, -r2, -sign * w],
                      [r1, 0.0, sign * w, -r1]])
        out = expm(a * dt_s) @ out
    return out


def train_decay(envelope: ArrayLike, dt_s: float, stated: StatedCoherence, blocks: int) -> float:
    """Excited population a train (X·X̄·X̄·X)^blocks·X loses against a single X under the
    stated T1/T2 alone: what the odd identity train may lose on a device that is as stated.

    ``envelope`` (S,) is the pulse's envelope, whose shape sets how long the state sits near
    the poles (T1) and near the equator (T2)."""
    g = np.abs(np.asarray(envelope, dtype=np.float64))
    mx, mxb = _bloch_gate(g, dt_s, stated, 1.0), _bloch_gate(g, dt_s, stated, -1.0)
    ground = np.array([1.0, 0.0, 0.0, 1.0])
    one = mx @ ground
    train = mx @ np.linalg.matrix_power(mx @ mxb @ mxb @ mx, blocks) @ ground
    return float(0.5 * (train[3] - one[3]))  # P_exc = (1 − z)/2


def detuning_weight(envelope: ArrayLike) -> float:
    """1 − F of the X pulse per θ_det²/6, θ_det = 2π·Δ·t the detuning's phase over the gate.

    In the frame that follows the drive's rotation φ(t) (0 to π over the pulse), a small
    detuning Δ turns the state about cos φ·z + sin φ·y. Its z part ends as a Z rotation after
    the gate (a frame: virtual Z removes it), its y part θ_det·⟨sin φ⟩ is the gate's error,
    so the weight is ⟨sin φ⟩² (4/π² for a square pulse; ~0.18 for a Gaussian DRAG
    envelope, matching the simulated device to 1 %)."""
    g = np.abs(np.asarray(envelope, dtype=np.float64))
    phi = math.pi * (np.cumsum(g) - 0.5 * g) / g.sum()
    return float(np.mean(np.sin(phi)) ** 2)


_GRID = 3000  # points per sign of the angle grid
_THETA0 = 1e-5  # rad: below this the prior on |θ| stops growing (no angle is exactly zero)


def _grid(half: float) -> tuple[FloatArray, FloatArray]:
    """Angles on (−half, half), geometrically dense near 0, and their prior mass.

    The prior is scale-invariant in the residual's size, density ∝ 1/(|θ| + θ0): a
    residual of 1e-3 rad is as likely a priori as one of 1e-2 rad. A flat prior would
    instead claim a coherent error of the size of the shot noise on every gate (its
    posterior of θ² cannot reach zero), which overstates 1 − F of a gate that is
    calibrated. The checks' likelihood decides wherever the data resolve θ."""
    pos = np.geomspace(1e-7, half, _GRID)
    grid = np.concatenate([-pos[::-1], [0.0], pos])
    width = np.gradient(grid)
    return grid, width / (np.abs(grid) + _THETA0)


def _loglik(theta: FloatArray, n1: FloatArray, n: FloatArray, m: float, amp: FloatArray,
            gain: FloatArray, sign: FloatArray) -> FloatArray:
    """(G,) log-likelihood of a family's checks (K,) on a grid of per-gate angles (G,)."""
    p = m + (sign * amp)[None, :] * np.sin(theta[:, None] * gain[None, :])
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray((n1 * np.log(p) + (n - n1) * np.log1p(-p)).sum(axis=1))


def _saturated(n1: FloatArray, n: FloatArray) -> float:
    f = np.clip(n1 / n, 1e-6, 1 - 1e-6)
    return float((n1 * np.log(f) + (n - n1) * np.log1p(-f)).sum())


def analyse_checks(check_set: Sequence[Check], counts: ArrayLike, shots: Sequence[int],
                   stated: StatedCoherence, envelope: ArrayLike, dt_s: float,
                   settings: VerificationSettings | None = None,
                   leakage_per_gate: float | None = None) -> Verdict:
    """Read the counts (K, 2) of ``check_set`` (run with ``shots[k]`` shots each) into a
    ``Verdict``. ``envelope`` (S,) is the X pulse's envelope on the ``dt_s`` grid (its shape
    sets how the identity trains decay); ``leakage_per_gate`` the pulse's modelled leakage
    (``model_leakage``), added when ``settings.leakage_model``. Pure: no device,
    deterministic (fixed-seed Monte Carlo)."""
    envelope = np.asarray(envelope, dtype=np.float64)
    gate_s = envelope.size * dt_s
    s = VerificationSettings() if settings is None else settings
    c = np.asarray(counts, dtype=np.float64).reshape(len(check_set), 2)
    n = np.asarray(shots, dtype=np.float64)
    p1 = c[:, 1] / n
    by_name = {ch.name: k for k, ch in enumerate(check_set)}
    limit = stated.limit(gate_s)
    used = int(n.sum())
    k0, k1 = by_name["readout_0"], by_name["readout_1"]
    e0, p1x = float(p1[k0]), float(p1[k1])
    contrast = p1x - e0
    m = 0.5 * (e0 + p1x)
    summary: dict[str, float] = {"readout_p1_given_0": e0, "readout_p1_after_x": p1x,
                                 "contrast": contrast, "coherence_limit": limit}
    if contrast < s.min_contrast:
        return failed(Reason.LOW_READOUT_CONTRAST, limit, "readout",
                      f"readout contrast {contrast:.3f} < min_contrast {s.min_contrast}", used, summary)

    # Residual angles: grid posteriors, flat prior over the shallowest check's range.
    rng = np.random.default_rng(20261206)
    total = np.full(s.samples, limit)
    contrib: dict[str, FloatArray] = {}
    deviance, dof = 0.0, 0
    edge_mass: dict[str, float] = {}
    for fam in FAMILIES:
        ks = [k for k, ch in enumerate(check_set) if ch.family == fam]
        gain = np.array([check_set[k].gain for k in ks])
        sign = np.array([check_set[k].sign for k in ks])
        amp = np.array([0.5 * contrast * _decay(check_set[k], stated) for k in ks])
        half = math.pi / (2.0 * float(gain.min()))
        grid, prior = _grid(half)
        ll = _loglik(grid, c[ks, 1], n[ks], m, amp, gain, sign)
        best = int(np.argmax(ll))
        deviance += 2.0 * (_saturated(c[ks, 1], n[ks]) - float(ll[best]))
        dof += len(ks) - 1
        post = prior * np.exp(ll - ll[best])
        post /= post.sum()
        cdf = np.cumsum(post)
        draws = grid[np.minimum(np.searchsorted(cdf, rng.random(s.samples)), grid.size - 1)]
        e = draws**2 / 6.0
        if fam == "detuning" and s.gate_detuning_error:
            e = e * detuning_weight(envelope)
        contrib[fam] = e
        total = total + e
        edge_mass[fam] = float(post[np.abs(grid) > 0.8 * half].sum())
        summary[f"{fam}_angle"] = float(grid[best])
        summary[f"{fam}_error"] = float(np.median(e))
    # Identity trains: leakage (even + odd − 1, decay-free) and decay (odd's loss vs one X).
    ke = next(k for k, ch in enumerate(check_set) if ch.family == "train" and ch.name.startswith("train_even"))
    ko = next(k for k, ch in enumerate(check_set) if ch.family == "train" and ch.name.startswith("train_odd"))
    pe, po = float(p1[ke]), float(p1[ko])
    blocks = int(check_set[ke].name.rsplit("_", 1)[1])
    d_pred = train_decay(envelope, dt_s, stated, blocks)
    var = lambda p, k: max(p * (1 - p), 1.0 / n[k]) / n[k]  # noqa: E731  (floor: no zero variance)
    # Both trains see the decay (the even one as excitation left, the odd one as excitation
    # lost); their mean is the decay plus half the leakage, either of which fails a gate.
    d_obs = 0.5 * ((p1x - po) + (pe - e0)) / contrast
    z_decay = (d_obs - d_pred) * contrast / (0.5 * math.sqrt(var(po, ko) + var(p1x, k1) + var(pe, ke) + var(e0, k0)))
    leak = (pe + po - e0 - p1x) / contrast
    z_leak = leak * contrast / math.sqrt(var(pe, ke) + var(po, ko) + var(e0, k0) + var(p1x, k1))
    leak_per_gate = leak / (4 * blocks + 1)
    summary.update(train_blocks=float(blocks), train_p1_even=pe, train_p1_odd=po, decay_observed=d_obs,
                   decay_predicted=d_pred, decay_z=z_decay, leakage_per_gate=leak_per_gate, leakage_z=z_leak)
    if s.measure_decay:
        # d_obs = 1/2 + (P_e − P_o)/(2C): the readout references enter only through C, with
        # weight (1 − 2·d_obs)², so the trains' shots are what sets the precision.
        sd_decay = 0.5 * math.sqrt(var(po, ko) + var(pe, ke)
                                   + (1.0 - 2.0 * d_obs) ** 2 * (var(p1x, k1) + var(e0, k0))) / contrast
        kqa = next((k for k, ch in enumerate(check_set) if ch.name.startswith("equator_a")), None)
        kqb = next((k for k, ch in enumerate(check_set) if ch.name.startswith("equator_b")), None)
        if kqa is not None and kqb is not None:
            pa, pb = float(p1[kqa]), float(p1[kqb])
            # Loss of the equator's coherence: (1 − x_n)/2 from P(SY) = (1 + x_n)/2 and
            # P(SY†) = (1 − x_n)/2, both read through the readout references.
            d_eq = 0.5 * ((p1x - pa) + (pb - e0)) / contrast
            sd_eq = 0.5 * math.sqrt(var(pa, kqa) + var(pb, kqb)
                                    + (1.0 - 2.0 * d_eq) ** 2 * (var(p1x, k1) + var(e0, k0))) / contrast
            r1, r2 = _decay_rate_pairs(envelope, dt_s, stated, blocks, (d_obs, sd_decay), (d_eq, sd_eq), rng,
                                       s.samples)
            summary.update(equator_decay_observed=d_eq, t2_rate_ratio=float(np.median(r2)))
            rate = r1
        else:
            rate = _decay_rate_draws(envelope, dt_s, stated, blocks, d_obs, sd_decay, rng, s.samples)
            r1 = r2 = rate
        # The gate's incoherent part at r × the stated rates: the limit of a gate r times as
        # long (an AWG tail lengthens it) or of a qubit r times as lossy (a TLS).
        incoherent = 0.5 - np.exp(-gate_s * r1 / stated.t1_s) / 6.0 - np.exp(-gate_s * r2 / stated.t2_s) / 3.0
        contrib["decay"] = incoherent - limit
        total = total + contrib["decay"]
        r_lo, r_med, r_hi = (float(x) for x in np.quantile(rate, [0.05, 0.5, 0.95]))
        summary.update(decay_rate_ratio=r_med, decay_rate_ratio_low=r_lo, decay_rate_ratio_high=r_hi)
    if s.leakage_model and leakage_per_gate is not None:
        # A model, not a measurement: its error (10–20 % against the simulated device's
        # leakage) enters the interval as a log-normal factor of 25 %.
        contrib["leakage"] = leakage_per_gate * np.exp(0.25 * rng.standard_normal(s.samples))
        total = total + contrib["leakage"]
        summary["leakage_model_per_gate"] = float(leakage_per_gate)
    lo, est, hi = (float(x) for x in np.quantile(total, [0.05, 0.5, 0.95]))
    summary.update(estimate=est, low=lo, high=hi)
    interval = (lo, hi)
    if z_decay > s.z_alarm and d_obs > 1.25 * d_pred:
        return failed(Reason.DECAY_FASTER_THAN_COHERENCE, limit, "decay",
                      f"identity train of {4 * blocks + 1} gates lost {d_obs:.3f} of its population, the stated "
                      f"T1/T2 allow {d_pred:.3f} (z = {z_decay:.1f})", used, summary, est, interval)
    kt = by_name.get("t1_delay")
    if kt is not None:
        # X·τ: the excited population after X decays as exp(−τ/T1) on top of the readout
        # offset, so P1(τ) − p(1|0) = (P1(X) − p(1|0))·exp(−τ/T1) on a device as stated.
        tau = check_set[kt].duration_s
        keep = math.exp(-tau / stated.t1_s)
        pt = float(p1[kt])
        loss_pred, loss_obs = (p1x - e0) * (1.0 - keep), p1x - pt
        sd = math.sqrt(var(pt, kt) + keep**2 * var(p1x, k1) + (1.0 - keep) ** 2 * var(e0, k0))
        z_t1 = (loss_obs - loss_pred) / sd
        summary.update(t1_delay_s=tau, t1_p1=pt, t1_loss_observed=loss_obs, t1_loss_predicted=loss_pred, t1_z=z_t1)
        if z_t1 > s.z_alarm and loss_obs > 1.25 * loss_pred:
            return failed(Reason.DECAY_FASTER_THAN_COHERENCE, limit, "decay",
                          f"after X and {tau * 1e6:.3g} µs the population lost {loss_obs:.3f}, the stated T1 "
                          f"allows {loss_pred:.3f} (z = {z_t1:.1f})", used, summary, est, interval)
    if z_leak > s.z_alarm and leak_per_gate > 0.25 * limit:
        return failed(Reason.LEAKAGE, limit, "leakage",
                      f"leakage {leak_per_gate:.2g} per gate (z = {z_leak:.1f})", used, summary, est, interval)
    p_fit = float(chi2.sf(deviance, dof)) if dof > 0 else 1.0
    summary["fit_p_value"] = p_fit
    if p_fit < 1e-3:
        return failed(Reason.UNSTABLE_OR_TLS_LIKE, limit, "model",
                      f"the checks do not fit one residual per family (p = {p_fit:.1e})",
                      used, summary, est, interval)
    worst = max(contrib, key=lambda f: float(np.median(contrib[f])))
    if hi > s.threshold * limit:
        if worst == "leakage" and est > s.threshold * limit:
            return failed(Reason.LEAKAGE, limit, "leakage",
                          f"the pulse leaks {summary['leakage_model_per_gate']:.2g} per gate at the stated "
                          f"anharmonicity: 1−F at {est / limit:.2f}× the coherence limit", used, summary, est,
                          interval)
        if worst == "decay" and est > s.threshold * limit:
            return failed(Reason.DECAY_FASTER_THAN_COHERENCE, limit, "decay",
                          f"the identity trains decay {summary['decay_rate_ratio']:.2f}× as fast as the stated "
                          f"T1/T2 allow: 1−F at {est / limit:.2f}× the coherence limit", used, summary, est,
                          interval)
        if est > s.threshold * limit or edge_mass.get(worst, 0.0) > 0.5:
            reason = (Reason.FREQUENCY_OUT_OF_RANGE if worst == "detuning" and edge_mass[worst] > 0.5
                      else Reason.RESIDUAL_ERROR)
            return failed(reason, limit, worst,
                          f"{worst} residual puts 1−F at {est / limit:.2f}× the coherence limit", used,
                          summary, est, interval)
        return failed(Reason.BUDGET_TOO_SMALL, limit, "shots",
                      f"upper bound {hi / limit:.2f}× the limit > threshold {s.threshold}: too few "
                      f"shots to bound the error", used, summary, est, interval)
    limiting = "coherence" if float(np.median(contrib[worst])) < 0.1 * limit else worst
    return Verdict("calibrated", None, est, interval, limit, limiting, used, summary,
                   f"upper bound {hi / limit:.2f}× the coherence limit")


# Decay-rate ratios at which the train decay is computed, and the posterior's grid (log-uniform
# prior: equal mass per point), cut where the trains saturate (``_decay_rate_draws``).
_RATE_NODES = np.geomspace(0.25, 1024.0, 49)
_RATE_GRID = np.geomspace(0.25, 1024.0, 6001)


def _decay_rate_draws(envelope: FloatArray, dt_s: float, stated: StatedCoherence, blocks: int, d_obs: float,
                      sd: float, rng: np.random.Generator, samples: int) -> FloatArray:
    """(samples,) draws of r, the ratio of the gate's decay rates to the stated ones, from the
    identity trains' measured decay ``d_obs`` (standard error ``sd``).

    The trains' decay under r × the stated rates is ``train_decay`` at T1/r, T2/r (the Bloch
    model, interpolated in log r); the likelihood is Gaussian in ``d_obs`` and the prior
    log-uniform from 1/4 up to where the trains saturate: no preference for r = 1, since the stated T1/T2 and the
    nominal gate duration are exactly what this term checks."""
    nodes = np.array([train_decay(envelope, dt_s, StatedCoherence(stated.t1_s / r, min(stated.t2_s / r, 2 * stated.t1_s / r)),
                                  blocks) for r in _RATE_NODES])
    # Far beyond the stated rates the single X that the trains are compared with decays too
    # and d(r) turns down again: the grid ends where d(r) stops growing, so that a train
    # whose decay is saturated reads as "at least this fast", not as a second solution.
    top = int(np.argmax(np.diff(nodes) <= 0)) if np.any(np.diff(nodes) <= 0) else nodes.size - 1
    grid = _RATE_GRID[_RATE_GRID <= _RATE_NODES[top]]
    d = np.interp(np.log(grid), np.log(_RATE_NODES[: top + 1]), nodes[: top + 1])
    ll = -0.5 * ((d_obs - d) / max(sd, 1e-6)) ** 2
    post = np.exp(ll - ll.max())
    cdf = np.cumsum(post / post.sum())
    return np.asarray(grid[np.minimum(np.searchsorted(cdf, rng.random(samples)), grid.size - 1)])


_PAIR_NODES = np.geomspace(0.25, 16.0, 13)  # T1 and T2 rate ratios at which both trains are computed
_PAIR_GRID = np.geomspace(0.25, 16.0, 161)  # and the posterior's grid on each axis


def _bloch_gates_many(envelope: FloatArray, dt_s: float, r1: FloatArray, r2: FloatArray, sign: float) -> FloatArray:
    """(K, 4, 4) ``_bloch_gate`` maps for K pairs of decay rates (1/s), batched."""
    from scipy.linalg import expm

    omega = math.pi * envelope / (envelope.sum() * dt_s)
    k = r1.size
    out = np.broadcast_to(np.eye(4), (k, 4, 4)).copy()
    for w in omega:
        a = np.zeros((k, 4, 4))
        a[:, 1, 1] = a[:, 2, 2] = -r2
        a[:, 2, 3], a[:, 3, 2] = -sign * w, sign * w
        a[:, 3, 0], a[:, 3, 3] = r1, -r1
        out = expm(a * dt_s) @ out
    return out


def _train_pair_decays(envelope: FloatArray, dt_s: float, stated: StatedCoherence, blocks: int
                       ) -> tuple[FloatArray, FloatArray]:
    """(N, N) decays of the pole trains (``train_decay``) and of the equator trains,
    (1 − x_n)/2, at T1/r1 and T2/r2 for r1, r2 on ``_PAIR_NODES`` (axis 0: r1)."""
    m1, m2 = np.meshgrid(_PAIR_NODES / stated.t1_s, _PAIR_NODES / stated.t2_s, indexing="ij")
    r1, r2 = m1.reshape(-1), m2.reshape(-1)
    mx, mxb = _bloch_gates_many(envelope, dt_s, r1, r2, 1.0), _bloch_gates_many(envelope, dt_s, r1, r2, -1.0)
    block = np.linalg.matrix_power(mx @ mxb @ mxb @ mx, blocks)
    ground = np.array([1.0, 0.0, 0.0, 1.0])
    one = mx @ ground
    pole = 0.5 * ((mx @ block @ ground)[:, 3] - one[:, 3])
    eq = 0.5 * (1.0 - (block @ np.array([1.0, 1.0, 0.0, 0.0]))[:, 1])
    shape = (_PAIR_NODES.size, _PAIR_NODES.size)
    return pole.reshape(shape), eq.reshape(shape)


def _decay_rate_pairs(envelope: FloatArray, dt_s: float, stated: StatedCoherence, blocks: int,
                      pole: tuple[float, float], equator: tuple[float, float], rng: np.random.Generator,
                      samples: int) -> tuple[FloatArray, FloatArray]:
    """(samples,) draws of (r1, r2), the gate's T1 and T2 decay rates over the stated ones,
    from the pole and equator trains' measured decays (value, standard error) each.

    Gaussian likelihoods of both, the Bloch model interpolated (bilinear in log r) from
    ``_PAIR_NODES``, a log-uniform prior on each ratio in [1/4, 16]."""
    from scipy.interpolate import RegularGridInterpolator

    dp, de = _train_pair_decays(envelope, dt_s, stated, blocks)
    logs = np.log(_PAIR_NODES)
    g1, g2 = np.meshgrid(np.log(_PAIR_GRID), np.log(_PAIR_GRID), indexing="ij")
    pts = np.stack([g1.reshape(-1), g2.reshape(-1)], axis=1)
    ll = np.zeros(pts.shape[0])
    for table, (obs, sd) in ((dp, pole), (de, equator)):
        pred = RegularGridInterpolator((logs, logs), table)(pts)
        ll += -0.5 * ((obs - pred) / max(sd, 1e-6)) ** 2
    post = np.exp(ll - ll.max())
    cdf = np.cumsum(post / post.sum())
    idx = np.minimum(np.searchsorted(cdf, rng.random(samples)), post.size - 1)
    i1, i2 = np.divmod(idx, _PAIR_GRID.size)
    return np.asarray(_PAIR_GRID[i1]), np.asarray(_PAIR_GRID[i2])


# -- running the checks ----------------------------------------------------------------------


def amplitude_peak(gate: DragGate, params: ArrayLike, dt_s: float) -> FloatArray:
    """(B,) peak |u| the X waveform of each row would need before any clipping."""
    p = parameter_rows(params)
    g, dg, _ = gate.envelope(dt_s)
    return np.asarray(np.abs(p[:, :1] * (g[None, :] + 1j * p[:, 1:2] * dg[None, :])).max(axis=1))


# Check families run with ``reference_shots`` (the rest with ``shots_per_check``).
_REFERENCE = ("readout", "train", "t1")


def check_sequences(check_set: Sequence[Check], x: Play, sx: Play, gate_s: float, detuning_hz: float,
                    dt_s: float) -> list[PulseSequence]:
    return [gate_steps_sequence(ch.steps, x, sx, gate_s, detuning_hz, dt_s, name=f"verify_{ch.name}")
            for ch in check_set]


def verify_devices(devices: Sequence[Device], gate: DragGate, params: ArrayLike,
                   stated: Sequence[StatedCoherence], settings: VerificationSettings | None = None,
                   shots_available: Sequence[int] | None = None) -> list[Verdict]:
    """Run the checks on each device for its calibrated parameters (B, 4) and judge them.

    A device whose X pulse would need |u| > 1 is refused (``AMPLITUDE_LIMIT``) and one with
    fewer ``shots_available`` than the checks need (``BUDGET_TOO_SMALL``), both without
    running anything. Devices run in one batched call per shot count when they support it.

    ``settings.stages`` > 1 makes it sequential: the checks run again, up to ``stages``
    times in all (and as often as ``shots_available`` allows), on the devices whose verdict is not
    yet clear, and each verdict is read from the pooled counts. Clear means ``calibrated``,
    an alarm (readout contrast, decay, leakage, misfit), or a residual whose interval lies
    wholly above the threshold; a gate the shots cannot bound yet goes on. A gate that is
    clearly bad or clearly good thus stops after one stage of ``settings.shots``.
    """
    s = VerificationSettings() if settings is None else settings
    stages = s.stages
    p = parameter_rows(params)
    devs = list(devices)
    require(p.shape == (len(devs), 4), "params", p.shape, f"shape ({len(devs)}, 4)")
    require(len(stated) == len(devs), "stated", len(stated), f"one StatedCoherence per device ({len(devs)})")
    dt_s = float(devs[0].dt_s)
    gate_s = gate.n_samples(dt_s) * dt_s
    peak = amplitude_peak(gate, p, dt_s)
    envelope = gate.envelope(dt_s)[0]
    waves = gate.waveforms_by_fraction(p, dt_s, (1.0, gate.sx_area_fraction))
    out: list[Verdict | None] = [None] * len(devs)
    run: list[int] = []
    allowed: dict[int, int] = {}  # stages each device may run
    for b in range(len(devs)):
        limit = stated[b].limit(gate_s)
        if not peak[b] <= 1.0 + 1e-9:
            out[b] = failed(Reason.AMPLITUDE_LIMIT, limit, "amplitude_limit",
                            f"the X pulse needs |u| = {peak[b]:.3f} > 1 at {gate_s * 1e9:g} ns")
        elif shots_available is not None and int(shots_available[b]) < s.shots:
            out[b] = failed(Reason.BUDGET_TOO_SMALL, limit, "shots",
                            f"{int(shots_available[b])} shots left, verification needs {s.shots}")
        else:
            run.append(b)
            allowed[b] = stages if shots_available is None else min(stages, int(shots_available[b]) // s.shots)
    sets: dict[int, tuple[Check, ...]] = {}
    seqs: dict[int, list[PulseSequence]] = {}
    for b in run:
        cs = checks(s, gate_s, stated[b])
        sets[b] = cs
        x, sx = Play(waves[b, 0], "X"), Play(waves[b, 1], "SX")
        seqs[b] = check_sequences(cs, x, sx, gate_s, float(p[b, 2]), dt_s)
    leaks = {b: model_leakage(waves[b, 0], dt_s, stated[b]) if s.leakage_model else None for b in run}
    counts = {b: np.zeros((len(sets[b]), 2), dtype=np.int64) for b in run}
    stage = 0
    while run:
        stage += 1
        # Readout, trains and the T1 check (the decay and leakage references) at
        # ``reference_shots``, the residual families at ``shots_per_check``; the trains at
        # ``train_shots`` when that differs (one call per shot count).
        split = s.trains_shots != s.reference_shots
        groups = [(tuple(f for f in _REFERENCE if not (split and f == "train")), s.reference_shots),
                  (None, s.shots_per_check)] + ([(("train",), s.trains_shots)] if split else [])
        devs_run = [devs[b] for b in run]
        got_by: list[tuple[list[list[int]], list[Any]]] = []
        for fams, n_shots in groups:
            ks = [[k for k, ch in enumerate(sets[b]) if (ch.family in fams if fams is not None
                                                          else ch.family not in _REFERENCE)] for b in run]
            got = run_on_devices(devs_run, [[seqs[b][k] for k in ks[j]] for j, b in enumerate(run)],
                                 [n_shots] * len(run))
            got_by.append((ks, got))
        going = []
        for j, b in enumerate(run):
            cs = sets[b]
            for ks, got in got_by:
                counts[b][ks[j]] += np.asarray(got[j], dtype=np.int64)
            shots = [stage * _check_shots(ch, s) for ch in cs]
            v = analyse_checks(cs, counts[b], shots, stated[b], envelope, dt_s, s, leaks[b])
            out[b] = v
            if stage < allowed[b] and not _clear(v, s):
                going.append(b)
        run = going
    return [v for v in out if v is not None]


def _check_shots(ch: Check, s: VerificationSettings) -> int:
    """Shots one stage runs a check with."""
    if ch.family == "train":
        return s.trains_shots
    return s.reference_shots if ch.family in _REFERENCE else s.shots_per_check


def _clear(v: Verdict, s: VerificationSettings) -> bool:
    """Whether a verdict needs no more shots: calibrated, an alarm, or a residual whose
    whole interval is above the threshold."""
    if v.calibrated or v.reason not in (Reason.BUDGET_TOO_SMALL, Reason.RESIDUAL_ERROR,
                                        Reason.FREQUENCY_OUT_OF_RANGE):
        return True
    return v.reason is not Reason.BUDGET_TOO_SMALL and v.error_interval[0] > s.threshold * v.coherence_limit
