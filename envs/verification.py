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
in up to three pooled stages; the Ramsey checks, in both quadratures and several batches,
read a slow detuning noise, and a gate the checks pass must pass an RB cross-check too. A
false ``calibrated`` is a silent failure, worse than a refused run, so the default is the
verification whose ``calibrated`` holds on devices the model does not describe
(docs/verification.md). ``VerificationSettings.quick()`` takes the stated limit as exact and
only alarms on a decay that is clearly faster: cheaper, but a gate whose physics lies
outside that model (an AWG tail that lengthens it, a TLS, a DRAG leakage floor) can pass as
``calibrated``.

This module runs the checks; the jobs around it live in ``verification_settings``,
``verification_checks`` (the sequences), ``verification_models`` (the estimate's physics),
``verification_analysis`` (counts to a verdict), ``verification_rb`` (the cross-check) and
``verification_verdict``; their public names are importable from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import require
from .drag import DragGate, parameter_rows
from .protocol import Device, Play, PulseSequence, run_on_devices
from .verification_analysis import analyse_checks
from .verification_checks import (
    Check,
    amplitude_peak,
    check_sequences,
    checks,
    t1_delay,
    train_blocks,
)
from .verification_models import detuning_weight, model_leakage, train_decay
from .verification_rb import rb_cliffords, rb_error, rb_sequences
from .verification_settings import (
    FAMILIES,
    Family,
    Reason,
    StatedCoherence,
    Status,
    VerificationSettings,
    stated_coherence_of,
)
from .verification_verdict import VERDICT_VERSION, Verdict, failed

__all__ = [
    "FAMILIES", "VERDICT_VERSION", "Check", "Family", "Reason", "StatedCoherence", "Status", "Verdict",
    "VerificationSettings", "amplitude_peak", "analyse_checks", "check_sequences", "checks", "detuning_weight",
    "failed", "model_leakage", "rb_verdict", "stated_coherence_of", "t1_delay", "train_blocks", "train_decay",
    "verify_devices",
]

# Check families run with ``reference_shots`` (the rest with ``shots_per_check``).
_REFERENCE = ("readout", "train", "t1")


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

    With ``settings.rb_sequences``, a gate the checks pass runs the RB cross-check
    (``verification_rb``, ``rb_check_shots``) once after its stages, and fails as
    ``UNSTABLE_OR_TLS_LIKE`` when its RB error is over the threshold; ``shots_available``
    must then cover one stage and the cross-check.
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
        elif shots_available is not None and int(shots_available[b]) < s.shots + s.rb_check_shots:
            out[b] = failed(Reason.BUDGET_TOO_SMALL, limit, "shots",
                            f"{int(shots_available[b])} shots left, verification needs {s.shots + s.rb_check_shots}")
        else:
            run.append(b)
            # The RB cross-check's shots are kept for after the stages.
            allowed[b] = stages if shots_available is None else min(
                stages, (int(shots_available[b]) - s.rb_check_shots) // s.shots)
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
        # The Ramsey checks in ``noise_batches`` calls of their own (a slow detuning noise
        # is then sampled once per call).
        split = s.trains_shots != s.reference_shots
        rb_ = s.noise_batches
        ramsey_apart = rb_ > 1
        residual = tuple(f for f in FAMILIES if not (ramsey_apart and f == "detuning"))
        groups = [(tuple(f for f in _REFERENCE if not (split and f == "train")), s.reference_shots),
                  (residual, s.shots_per_check)] + ([(("train",), s.trains_shots)] if split else [])
        groups += [(("detuning",), s.shots_per_check // rb_)] * (rb_ if ramsey_apart else 0)
        devs_run = [devs[b] for b in run]
        got_by: list[tuple[list[list[int]], list[Any]]] = []
        for fams, n_shots in groups:
            ks = [[k for k, ch in enumerate(sets[b]) if ch.family in fams] for b in run]
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
    if s.rb_sequences:
        passed = [b for b, v in enumerate(out) if v is not None and v.calibrated]
        for b, v in zip(passed, _rb_cross_check(passed, out, devs, waves, p, gate_s, dt_s, s), strict=True):
            out[b] = v
    return [v for v in out if v is not None]


def _rb_cross_check(passed: list[int], out: list[Verdict | None], devs: list[Device], waves: NDArray[Any],
                    p: NDArray[np.float64], gate_s: float, dt_s: float, s: VerificationSettings) -> list[Verdict]:
    """The ``passed`` devices' verdicts after the RB cross-check (``verification_rb``,
    decided by ``rb_verdict``)."""
    if not passed:
        return []
    verdicts = [out[b] for b in passed]
    assert all(v is not None for v in verdicts)
    lengths = [rb_cliffords(s, gate_s, v.coherence_limit) for v in verdicts if v is not None]
    seqs = [rb_sequences(s, m, Play(waves[b, 0], "X"), Play(waves[b, 1], "SX"), gate_s, float(p[b, 2]), dt_s, b)
            for b, m in zip(passed, lengths, strict=True)]
    # In ``noise_batches`` calls (each with its share of the short and the long sequences):
    # slow noise (a quasi-static detuning, drawn per batch on the simulated device, drifting
    # on hardware) is then sampled once per call and the mean survival averages over it, as
    # the gate's own error does; in one batch it would read as one coherent offset.
    k, nb = s.rb_sequences, s.noise_batches
    got = [np.zeros((2 * k, 2), dtype=np.int64) for _ in passed]
    for j in range(nb):
        rows = [i for i in range(k) if i % nb == j]
        rows += [k + i for i in rows]
        part = run_on_devices([devs[b] for b in passed], [[q[i] for i in rows] for q in seqs],
                              [s.rb_shots] * len(passed))
        for g, cj in zip(got, part, strict=True):
            g[rows] = np.asarray(cj, dtype=np.int64)
    res = []
    for v, m, cnt in zip(verdicts, lengths, got, strict=True):
        assert v is not None
        c = v.checks
        r, sd = rb_error(cnt, s.rb_shots, m, c["readout_p1_given_0"], c["readout_p1_after_x"],
                         (c["readout_shots"], c["readout_shots"]))
        res.append(rb_verdict(v, m, r, sd, s))
    return res


def rb_verdict(v: Verdict, m: int, r: float, sd: float, s: VerificationSettings) -> Verdict:
    """The verdict of a gate the checks passed (``v``) after its RB cross-check read ``r``
    ± ``sd`` per play over ``m`` Cliffords: ``calibrated`` unless RB leaves no signal, reads
    over ``threshold`` × the limit at z > ``z_alarm``, or (``rb_credit_check``) reads over
    it at all while the checks' estimate is below the stated limit. The checks' estimate
    and interval are kept either way (pure: no device)."""
    c = v.checks
    limit = v.coherence_limit
    z = (r - s.threshold * limit) / sd if math.isfinite(r) and sd > 0 else math.nan
    checks_ = {**c, "rb_cliffords": float(m), "rb_error_per_gate": r, "rb_error_sd": sd, "rb_z": z}
    used = v.shots_used + s.rb_check_shots
    if not math.isfinite(r):
        return failed(Reason.UNSTABLE_OR_TLS_LIKE, limit, "model",
                      f"randomized benchmarking over {m} Cliffords left no signal above the asymptote",
                      used, checks_, v.error_estimate, v.error_interval)
    if z > s.z_alarm:
        return failed(Reason.UNSTABLE_OR_TLS_LIKE, limit, "model",
                      f"randomized benchmarking measures {r / limit:.2f}× the coherence limit per gate "
                      f"(z = {z:.1f} over the threshold {s.threshold}), the checks {v.ratio:.2f}×: an error "
                      f"the checks do not model", used, checks_, v.error_estimate, v.error_interval)
    if s.rb_credit_check and v.error_estimate < limit and r > s.threshold * limit:
        # An estimate below the stated limit rests on identity trains that read a slower
        # decay than the lab's T1/T2, read through the readout references (``reference_shots``,
        # 64), whose contrast a few shots misread often enough: read low, it makes every train
        # read a slower decay.
        # RB measures the same error without them; reading it over the threshold, it
        # contradicts that credit, so the gate is not passed on it.
        return failed(Reason.UNSTABLE_OR_TLS_LIKE, limit, "model",
                      f"the checks credit the gate below its coherence limit ({v.ratio:.2f}×: a decay "
                      f"slower than stated) while randomized benchmarking reads {r / limit:.2f}× it, over "
                      f"the threshold {s.threshold}", used, checks_, v.error_estimate, v.error_interval)
    return Verdict("calibrated", None, v.error_estimate, v.error_interval, limit, v.limiting, used, checks_,
                   v.detail + f"; RB {r / limit:.2f}× the limit")


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
