"""The standard calibration sequence as a lab runs it: Ramsey, Rabi, fine amplitude, DRAG.

A strong textbook baseline, spending a fixed total shot budget through the same
``CalibrationTask`` as the agents (every shot counted on the device):

1. **Ramsey** (detuning first: a residual detuning Δ biases the DRAG probe by ~4 % of β
   per 100 kHz): SX·Delay(τ)·SX with the analysis pulse about four axes, so both
   quadratures and their sign-flipped twins give the accumulated phase by atan2 with the
   readout offset cancelled; delays coarse → fine (×4), each unwrapped by the last.
2. **Rabi**: a scan of the SX amplitude around the current value, fitted (scipy
   ``curve_fit``) with P = B + C·sin²(π·a/(4·a_π)): the coarse amplitude, robust to large
   errors.
3. **Fine amplitude**: SX·X^n and SX̄·X^n (error amplification, signed; the difference
   is C·sin(nπε)), depths coarse → fine.
4. **DRAG**: a β scan of SY·(X̄X)^n pairs (again sign-flipped twins) fitted with a line,
   whose slope then converts the deeper fine measurements into β corrections.
5. **Refine**: the deepest Ramsey, amplitude and DRAG measurements again at the refined
   parameters (the couplings between families are small but not zero).

Each stage moves the parameters to its estimate. The final parameters combine *all*
measurements of each family that agree with the best one (inverse-variance weights,
which the deepest probes dominate), so no shot is wasted. The shot budget is split over
stages by ``allocation`` and within a family by ``level_growth`` (deeper levels get more
shots: they carry more information per shot); the split is exact and never exceeds the
budget.

Devices are calibrated in lockstep (the same plan on each): one device call per stage for
all of them, which is what makes an evaluation on hundreds of devices cheap.

Amplitude-limited devices: each device runs at its own gate (``task.gates``; see
``common.run_within_limits`` for the choice from the start). A Rabi or fine-amplitude
estimate that leaves the task's ``amplitude_limit.headroom`` before the DRAG scan lengthens
that device's gate (``CalibrationTask.refit_gate``) and rescales its amplitude estimates;
later, an amplitude beyond full scale is clipped and recorded in the result's ``limits``,
and one that needs more than full scale at the longest gate is a ``failures`` entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from pulsecal.envs.amplitude_limit import LimitLog
from pulsecal.envs.calibration import CalibrationTask

from .common import (
    CalibrationResult,
    FloatArray,
    check_budget,
    clip_amplitude,
    require,
    run_steps,
    safe_asin,
)
from .protocol import register_baseline
from .sequences import amplitude_steps, drag_steps, rabi_steps, ramsey_steps

STAGES: tuple[str, ...] = ("ramsey", "rabi", "amplitude", "drag", "refine")


@dataclass
class _Estimates:
    """Per-device estimates of one parameter: values and inverse variances, (L, B)."""

    values: list[FloatArray] = field(default_factory=list)
    weights: list[FloatArray] = field(default_factory=list)

    def add(self, value: FloatArray, weight: FloatArray) -> None:
        self.values.append(np.asarray(value, dtype=np.float64))
        self.weights.append(np.where(np.isfinite(weight), weight, 0.0))

    def combine(self, fallback: FloatArray, n_sigma: float = 4.0) -> FloatArray:
        """Inverse-variance mean of the estimates consistent with the most precise one.

        An early, coarse estimate that was unwrapped onto a wrong branch (or biased by a
        then-uncalibrated parameter) disagrees with the deep ones by many σ and is left
        out rather than dragging the mean.
        """
        if not self.values:
            return fallback
        v = np.stack(self.values)
        w = np.stack(self.weights)
        best = v[np.argmax(w, axis=0), np.arange(v.shape[1])]
        wbest = np.max(w, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma = np.sqrt(1.0 / np.maximum(w, 1e-300) + 1.0 / np.maximum(wbest, 1e-300))
        ok = (np.abs(v - best) <= n_sigma * sigma) & (w > 0)
        num = np.sum(np.where(ok, w * v, 0.0), axis=0)
        den = np.sum(np.where(ok, w, 0.0), axis=0)
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), fallback)

    def rescale(self, b: int, ratio: float) -> None:
        """Device ``b``'s estimates × ``ratio`` (inverse variances / ratio²): an amplitude
        measured at one gate, expressed at a longer one."""
        for v, w in zip(self.values, self.weights, strict=True):
            v[b] *= ratio
            w[b] /= ratio**2


def _split(total: int, weights: Sequence[float], sizes: Sequence[int]) -> list[int]:
    """Shots per sequence for stages of ``sizes`` sequences sharing ``total`` by weight."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return [math.floor(total * wi / n) for wi, n in zip(w, sizes, strict=True)]


@register_baseline("standard")
@dataclass(frozen=True)
class StandardCalibration:
    """Standard calibration sequence (Ramsey, Rabi, fine amplitude, DRAG, refine).

    Attributes:
        ramsey_delays_s: Ramsey delays, coarse to fine; each ≤ 4× the previous so the
            previous estimate unwraps it (the first must keep |2π·Δ_err·τ| < π for the
            starting detuning error: 0.1 µs allows ±5 MHz).
        rabi_points: amplitudes in the Rabi scan (>= 4; 0 skips the scan).
        rabi_span: relative half-width of the scan, in (0, 0.9].
        rabi_min_shots: below this many shots per scan point the scan is skipped and its
            share goes to the fine amplitude levels (a Rabi fit from a handful of shots is
            worse than a ±5 % start), >= 1.
        amplitude_prior: relative uncertainty of the starting amplitude (how far off the
            last calibration may be), > 0; weighs the Rabi fit against the start.
        amplitude_depths: X^n depths (even), coarse to fine.
        drag_scan_depth: X̄X pairs in the β scan (small enough that the scan stays on one
            branch: 4 pairs cover ±100 % β error).
        drag_scan_points: β values in the scan (>= 2).
        drag_scan_span: relative half-width of the β scan, in (0, 2].
        drag_depths: X̄X pairs in the fine DRAG levels, coarse to fine.
        drag_slope: first-order DRAG-probe response, rad per gate per unit relative β
            error (−0.125 on the 20 ns lifted Gaussian: it scales with the pulse shape,
            barely with α or Ω_R); nonzero, it only regularises the scan's fitted slope.
            It is the value at the task's nominal gate; a device lengthened to T uses it
            × T_nominal/T (the lifted Gaussian's DRAG response falls as 1/T).
        drag_slope_tolerance: relative width of that prior, in (0, 10].
        allocation: budget fraction of each stage in ``STAGES`` order (ramsey, rabi,
            amplitude, drag, refine), each >= 0, normalised; refine 0 skips it.
        level_growth: within a family, level l gets level_growth^l of the first level's
            share (>= 1: deeper levels carry more information per shot).
        min_shots: fewest shots per sequence a stage may get; a budget that cannot give
            every stage this many is rejected (message names the minimum budget).
        name: the method's name in results tables.
    """

    ramsey_delays_s: tuple[float, ...] = (0.1e-6, 0.4e-6, 1.6e-6)
    rabi_points: int = 6
    rabi_span: float = 0.5
    amplitude_prior: float = 0.05
    rabi_min_shots: int = 24
    amplitude_depths: tuple[int, ...] = (4, 16, 64)
    drag_scan_depth: int = 4
    drag_scan_points: int = 4
    drag_scan_span: float = 0.5
    drag_depths: tuple[int, ...] = (8, 32)
    drag_slope: float = -0.125
    drag_slope_tolerance: float = 0.3
    allocation: tuple[float, float, float, float, float] = (0.16, 0.04, 0.24, 0.30, 0.26)
    level_growth: float = 1.5
    min_shots: int = 4
    name: str = "standard"

    def __post_init__(self) -> None:
        d = tuple(float(x) for x in self.ramsey_delays_s)
        require(len(d) >= 1 and all(math.isfinite(x) and 0 < x <= 1e-3 for x in d), "ramsey_delays_s",
                self.ramsey_delays_s, "one or more delays in (0, 1e-3] s")
        object.__setattr__(self, "ramsey_delays_s", d)
        require(isinstance(self.rabi_points, int) and (self.rabi_points == 0 or self.rabi_points >= 4),
                "rabi_points", self.rabi_points, "0 (skip) or an int >= 4")
        require(0 < self.rabi_span <= 0.9, "rabi_span", self.rabi_span, "(0, 0.9]")
        require(isinstance(self.rabi_min_shots, int) and self.rabi_min_shots >= 1, "rabi_min_shots",
                self.rabi_min_shots, "an int >= 1")
        require(0 < self.amplitude_prior <= 1, "amplitude_prior", self.amplitude_prior, "(0, 1]")
        for name in ("amplitude_depths", "drag_depths"):
            v = tuple(getattr(self, name))
            require(len(v) >= 1 and all(isinstance(x, int) and 1 <= x <= 2048 for x in v), name, v,
                    "one or more ints in [1, 2048]")
            object.__setattr__(self, name, v)
        require(all(x % 2 == 0 for x in self.amplitude_depths), "amplitude_depths", self.amplitude_depths,
                "even depths (SX·X^n must end on the equator)")
        require(isinstance(self.drag_scan_depth, int) and 1 <= self.drag_scan_depth <= 64, "drag_scan_depth",
                self.drag_scan_depth, "an int in [1, 64]")
        require(isinstance(self.drag_scan_points, int) and self.drag_scan_points >= 2, "drag_scan_points",
                self.drag_scan_points, "an int >= 2")
        require(math.isfinite(self.drag_slope) and self.drag_slope != 0, "drag_slope", self.drag_slope,
                "a finite nonzero angle per unit relative β")
        require(0 < self.drag_slope_tolerance <= 10, "drag_slope_tolerance", self.drag_slope_tolerance,
                "(0, 10]")
        require(0 < self.drag_scan_span <= 2, "drag_scan_span", self.drag_scan_span, "(0, 2]")
        alloc = tuple(float(x) for x in self.allocation)
        require(len(alloc) == len(STAGES) and all(math.isfinite(x) and x >= 0 for x in alloc)
                and sum(alloc) > 0 and all(alloc[i] > 0 for i in (0, 2, 3)), "allocation", self.allocation,
                f"{len(STAGES)} fractions >= 0 for {list(STAGES)}, ramsey/amplitude/drag > 0")
        object.__setattr__(self, "allocation", alloc)
        require(1 <= self.level_growth <= 8, "level_growth", self.level_growth, "[1, 8]")
        require(isinstance(self.min_shots, int) and self.min_shots >= 1, "min_shots", self.min_shots, "an int >= 1")

    # -- the plan ---------------------------------------------------------------------------

    def plan(self, budget: int) -> list[tuple[str, float, int, int]]:
        """Stages as (kind, level value, sequences, shots per sequence), in run order.

        Kinds: "ramsey" (delay s), "rabi" (0), "amplitude" (depth), "drag_scan" (depth),
        "drag" (pairs); the refine stage repeats the deepest of each family.
        """
        alloc = dict(zip(STAGES, np.asarray(self.allocation) / sum(self.allocation), strict=True))
        g = self.level_growth
        stages: list[tuple[str, float, int, float]] = []  # kind, value, n_seq, budget fraction

        def family(kind: str, values: Sequence[float], n_seq: int, frac: float) -> None:
            w = np.array([g**i for i in range(len(values))])
            for v, wi in zip(values, w / w.sum(), strict=True):
                stages.append((kind, float(v), n_seq, frac * wi))

        family("ramsey", self.ramsey_delays_s, 4, alloc["ramsey"])
        amp_frac = alloc["amplitude"]
        if self.rabi_points and alloc["rabi"] > 0:
            if budget * alloc["rabi"] / self.rabi_points >= self.rabi_min_shots:
                stages.append(("rabi", 0.0, self.rabi_points, alloc["rabi"]))
            else:
                amp_frac += alloc["rabi"]
        family("amplitude", self.amplitude_depths, 2, amp_frac)
        # The scan needs as much information as a fine level: it fixes the slope.
        n_drag = len(self.drag_depths) + 1
        scan_frac = alloc["drag"] / n_drag
        stages.append(("drag_scan", float(self.drag_scan_depth), 2 * self.drag_scan_points, scan_frac))
        family("drag", self.drag_depths, 2, alloc["drag"] - scan_frac)
        if alloc["refine"] > 0:
            r = alloc["refine"]
            stages += [("ramsey", self.ramsey_delays_s[-1], 4, 0.25 * r),
                       ("amplitude", float(self.amplitude_depths[-1]), 2, 0.375 * r),
                       ("drag", float(self.drag_depths[-1]), 2, 0.375 * r)]
        shots = _split(budget, [s[3] for s in stages], [s[2] for s in stages])
        low = [i for i, s in enumerate(shots) if s < self.min_shots]
        if low:
            need = max(math.ceil(self.min_shots * stages[i][2] / (stages[i][3] / sum(s[3] for s in stages)))
                       for i in low)
            raise ValueError(f"budget={budget!r} is out of range: allowed >= {need} shots for this plan "
                             f"(stage {stages[low[0]][0]} would get < min_shots={self.min_shots} per sequence)")
        return [(k, v, n, s) for (k, v, n, _), s in zip(stages, shots, strict=True)]

    def min_budget(self) -> int:
        """Smallest budget this plan accepts."""
        lo, hi = 1, 1 << 30
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                self.plan(mid)
                hi = mid
            except ValueError:
                lo = mid + 1
        return lo

    # -- running ----------------------------------------------------------------------------

    def run(
        self, task: CalibrationTask, start: ArrayLike, budget: int, rng: np.random.Generator | None = None,
        index: Sequence[int] | None = None,
    ) -> CalibrationResult:
        """Calibrate devices ``index`` of ``task`` from ``start`` within ``budget`` shots each.

        Args:
            task: the devices and the shot counter (``task.gate`` fixes the pulse shape).
            start: (B, 4) starting parameters (or (4,) for every device).
            budget: total shots per device (all stages together), >= ``min_budget()``.
            rng: unused (the sequence is deterministic; the ``Baseline`` protocol passes one).
            index: which devices of the task (default: all), B of them.
        Returns:
            final parameters, shots used per device (== the task's count for this call), and
            a trace of (shots, params) after each stage.
        """
        idx = list(range(len(task.devices))) if index is None else [int(i) for i in index]
        budget = check_budget("budget", budget, 1)
        stages = self.plan(budget)
        p = np.atleast_2d(np.asarray(start, dtype=np.float64)).copy()
        if p.shape[0] == 1 and len(idx) > 1:
            p = np.repeat(p, len(idx), axis=0)
        require(p.shape == (len(idx), 4) and bool(np.all(np.isfinite(p))), "start", p.shape,
                f"finite values of shape ({len(idx)}, 4) or (4,)")
        used0 = task.shots_used[idx].copy()
        dt = task.dt_s
        nb = len(idx)
        logs = [LimitLog() for _ in idx]
        failures: list[str | None] = [None] * nb
        headroom = task.amplitude_limit.headroom
        scanned = False  # after the DRAG scan a gate is not lengthened (its slope is per gate)
        contrast = np.full(nb, 0.95)  # readout contrast; the first Ramsey measures it
        base = np.full(nb, 0.02)  # P("1") of the ground state; idem
        slope = np.full(nb, np.nan)  # DRAG per-gate angle per second of β, from the scan
        estimates = {"amplitude": _Estimates(), "beta": _Estimates(), "detuning": _Estimates()}
        trace: list[list[tuple[int, FloatArray]]] = [[] for _ in idx]
        first_ramsey = True
        for kind, value, _n_seq, shots in stages:
            if kind == "ramsey":
                phases = (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi)
                pr = run_steps(task, idx, p, [ramsey_steps(value, ph) for ph in phases], shots)
                x = pr[:, 0] - pr[:, 2]
                y = pr[:, 3] - pr[:, 1]
                r = np.hypot(x, y)
                if first_ramsey:
                    # Short delay: the fringe amplitude is the readout contrast (× ~1);
                    # readout assignment errors of a few % put it in [0.8, 1].
                    contrast = np.clip(r, 0.8, 1.0)
                    base = np.clip(pr.mean(axis=1) - 0.5 * contrast, 0.0, 0.1)
                    first_ramsey = False
                theta = np.arctan2(y, x)
                gate_s = np.array([task.gates[i].n_samples(dt) * dt for i in idx])
                tau = max(1, round(value / dt)) * dt + gate_s  # SX centre to SX centre
                var_theta = 0.5 / (shots * np.maximum(r, 0.2) ** 2)
                delta = p[:, 2] + theta / (2 * math.pi * tau)
                estimates["detuning"].add(delta, (2 * math.pi * tau) ** 2 / var_theta)
                p[:, 2] = delta
            elif kind == "rabi":
                a_rabi = self._rabi(task, idx, p, shots, contrast, base, logs)
                p[:, 0] = self._within_limit(task, idx, a_rabi, estimates["amplitude"], logs, failures,
                                             headroom, not scanned)
            elif kind == "amplitude":
                n = int(value)
                pr = run_steps(task, idx, p, [amplitude_steps(n, 1), amplitude_steps(n, -1)], shots)
                s = np.clip((pr[:, 0] - pr[:, 1]) / contrast, -1.0, 1.0)
                eps = safe_asin(s) / (n * math.pi)
                a_opt = p[:, 0] / (1.0 + eps)
                var_s = 0.5 / (shots * contrast**2)
                var_eps = var_s / (np.maximum(1.0 - s**2, 0.05) * (n * math.pi) ** 2)
                estimates["amplitude"].add(a_opt, 1.0 / (var_eps * p[:, 0] ** 2))
                p[:, 0] = self._within_limit(task, idx, a_opt, estimates["amplitude"], logs, failures,
                                             headroom, not scanned)
            elif kind == "drag_scan":
                p[:, 1], slope = self._drag_scan(task, idx, p, int(value), shots, contrast, logs)
                scanned = True
            else:  # fine DRAG
                n = int(value)
                pr = run_steps(task, idx, p, [drag_steps(n, 1), drag_steps(n, -1)], shots)
                s = np.clip((pr[:, 0] - pr[:, 1]) / contrast, -1.0, 1.0)
                angle = safe_asin(s) / (2 * n)
                ok = np.isfinite(slope) & (slope != 0)
                k = np.where(ok, slope, 1.0)
                b_opt = np.where(ok, p[:, 1] - angle / k, p[:, 1])
                var_angle = 0.5 / (shots * contrast**2 * np.maximum(1.0 - s**2, 0.05) * (2 * n) ** 2)
                estimates["beta"].add(b_opt, np.where(ok, k**2 / var_angle, 0.0))
                p[:, 1] = b_opt
            for b, i in enumerate(idx):
                trace[b].append((int(task.shots_used[i] - used0[b]), p[b].copy()))
        final = p.copy()
        final[:, 0] = clip_amplitude(estimates["amplitude"].combine(p[:, 0]), logs)
        final[:, 1] = estimates["beta"].combine(p[:, 1])
        final[:, 2] = estimates["detuning"].combine(p[:, 2])
        used = (task.shots_used[idx] - used0).astype(np.int64)
        for b in range(nb):
            trace[b].append((int(used[b]), final[b].copy()))
            if failures[b] is None and "amplitude" in logs[b].entries and abs(final[b, 0]) == 1.0:
                e = logs[b].entries["amplitude"]
                failures[b] = (f"amplitude limit: needs |u|={abs(e['requested']):.3g} at "
                               f"{task.gates[idx[b]].duration_s * 1e9:.4g} ns > 1 (full scale)")
        durations = np.array([task.gates[i].duration_s for i in idx], dtype=np.float64)
        return CalibrationResult(final, used, trace, [log.as_dict() for log in logs], failures, durations)

    @staticmethod
    def _within_limit(task: CalibrationTask, idx: list[int], amplitude: FloatArray, estimates: _Estimates,
                      logs: list[LimitLog], failures: list[str | None], headroom: float,
                      may_lengthen: bool) -> FloatArray:
        """The amplitude (B,) to continue with: a device whose estimate left the headroom
        gets a longer gate first (``may_lengthen``: before the DRAG scan), its amplitude
        estimates rescaled to it; what still exceeds full scale is clipped and recorded."""
        a = np.asarray(amplitude, dtype=np.float64).copy()
        if may_lengthen and task.amplitude_limit.lengthen:
            for b in np.flatnonzero(np.abs(a) > headroom).tolist():
                new, fit = task.refit_gate(idx[b], float(a[b]))
                if new != a[b]:
                    estimates.rescale(b, new / float(a[b]))
                    a[b] = new
                if fit.failure is not None:
                    failures[b] = fit.failure
        return clip_amplitude(a, logs)

    def _rabi(self, task: CalibrationTask, idx: list[int], p: FloatArray, shots: int,
              contrast: FloatArray, base: FloatArray, logs: list[LimitLog] | None = None) -> FloatArray:
        """Fit the SX amplitude scan for a_π, then weigh it against the current amplitude.

        The readout baseline and contrast come from the first Ramsey (they are degenerate
        with a_π over a scan this narrow), so the fit has one parameter. A Rabi scan is
        coarse (its signal has no error amplification): with few shots its estimate can be
        worse than the start, so it is combined with the current amplitude taken as a
        prior of relative width ``amplitude_prior``.
        """
        from scipy.optimize import least_squares

        rel = 1.0 + self.rabi_span * np.linspace(-1.0, 1.0, self.rabi_points)
        wanted = p[:, :1] * rel[None, :]
        amps = np.clip(wanted, -1.0, 1.0)  # (B, K): the scan stops at full scale
        if logs is not None:
            for b in np.flatnonzero(np.any(amps != wanted, axis=1)).tolist():
                k = int(np.argmax(np.abs(wanted[b])))
                logs[b].record("rabi_scan_amplitude", "full scale", float(wanted[b, k]), float(amps[b, k]))
        rows = np.repeat(p[:, None, :], len(rel), axis=1)
        rows[:, :, 0] = amps
        pr = run_steps(task, idx, rows, [rabi_steps()] * len(rel), shots)
        out = p[:, 0].copy()
        for b in range(len(idx)):
            a0 = float(p[b, 0])
            if a0 == 0:
                continue
            sigma = np.sqrt(np.clip(pr[b] * (1 - pr[b]), 0.02, None) / shots)

            def resid(z: FloatArray, b: int = b, sigma: FloatArray = sigma, a0: float = a0) -> FloatArray:
                model = base[b] + contrast[b] * np.sin(np.pi * amps[b] / (4.0 * a0 * (1.0 + z[0]))) ** 2
                return np.asarray((model - pr[b]) / sigma)

            fit = least_squares(resid, np.zeros(1), bounds=(-0.5, 0.5))
            jac = fit.jac
            info = float(jac[:, 0] @ jac[:, 0]) if jac.size else 0.0
            if not fit.success or info <= 0:
                continue
            w_fit = info  # inverse variance of z
            w_prior = 1.0 / self.amplitude_prior**2
            z = w_fit * float(fit.x[0]) / (w_fit + w_prior)
            # Not capped here: the caller lengthens the gate or clips and records.
            out[b] = a0 * (1.0 + z)
        return out

    def _drag_scan(self, task: CalibrationTask, idx: list[int], p: FloatArray, depth: int, shots: int,
                   contrast: FloatArray, logs: list[LimitLog] | None = None) -> tuple[FloatArray, FloatArray]:
        """β scan: the per-gate DRAG angle against β, fitted with a line; returns β, slope.

        The slope (rad per gate per second of β) is fitted too, but a few noisy scan points
        can make it tiny and the next correction huge, so it is combined with its
        first-order value ``drag_slope``/β (relative width ``drag_slope_tolerance``) before
        the zero crossing is read off all scan points.
        """
        m = self.drag_scan_points
        rel = self.drag_scan_span * np.linspace(-1.0, 1.0, m)
        betas = p[:, 1:2] + np.abs(p[:, 1:2]) * rel[None, :]  # (B, m)
        rows = np.repeat(p[:, None, :], 2 * m, axis=1)
        rows[:, 0::2, 1] = betas
        rows[:, 1::2, 1] = betas
        steps = [st for _ in range(m) for st in (drag_steps(depth, 1), drag_steps(depth, -1))]
        pr = run_steps(task, idx, rows, steps, shots)
        s = np.clip((pr[:, 0::2] - pr[:, 1::2]) / contrast[:, None], -1.0, 1.0)
        angle = safe_asin(s) / (2 * depth)
        # inverse variance of each angle: var(s) ≈ 0.5/(shots·C²), asin' = 1/√(1 − s²)
        w = shots * contrast[:, None] ** 2 * np.maximum(1.0 - s**2, 0.05) * (2 * depth) ** 2 / 0.5
        beta = p[:, 1].copy()
        slope = np.full(len(idx), np.nan)
        dt = task.dt_s
        t0 = task.gate.n_samples(dt) * dt
        for b in range(len(idx)):
            # The prior is the nominal gate's; the response falls as 1/T on a longer gate.
            t = task.gates[idx[b]].n_samples(dt) * dt
            prior = self.drag_slope if t == t0 else self.drag_slope * (t0 / t)
            scale = abs(float(p[b, 1]))
            if scale == 0:
                continue
            x = (betas[b] - p[b, 1]) / scale  # relative β offsets
            sw = np.sum(w[b])
            xm = np.sum(w[b] * x) / sw
            ym = np.sum(w[b] * angle[b]) / sw
            sxx = np.sum(w[b] * (x - xm) ** 2)
            k_fit = np.sum(w[b] * (x - xm) * (angle[b] - ym)) / sxx
            w_fit = sxx  # inverse variance of the fitted slope
            w_prior = 1.0 / (self.drag_slope_tolerance * prior) ** 2
            k = (w_fit * k_fit + w_prior * prior) / (w_fit + w_prior)
            k = float(np.clip(k, 2.0 * prior, 0.5 * prior)
                      if prior < 0 else np.clip(k, 0.5 * prior, 2.0 * prior))
            # Zero crossing from every point with the chosen slope (weighted mean).
            x0 = float(np.sum(w[b] * (x - angle[b] / k)) / sw)
            # A crossing far outside the scan is an extrapolation the fit cannot back: the
            # move stops half a span beyond it (recorded).
            x0_in = float(np.clip(x0, rel[0] - 0.5 * self.drag_scan_span, rel[-1] + 0.5 * self.drag_scan_span))
            if logs is not None and x0_in != x0:
                logs[b].record("beta_s", "scan range", float(p[b, 1] + x0 * scale), float(p[b, 1] + x0_in * scale))
            beta[b] = p[b, 1] + x0_in * scale
            slope[b] = k / scale
        return beta, slope
