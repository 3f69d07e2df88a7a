"""The standard calibration sequence as a lab runs it: Ramsey, Rabi, fine amplitude, DRAG.

A strong textbook baseline, spending a fixed total shot budget through the same
``CalibrationTask`` as the agents (every shot counted on the device):

1. **Ramsey** (detuning first: a residual detuning Δ biases the DRAG probe by ~4 % of β
   per 100 kHz): SX·Delay(τ)·SX with the analysis pulse about four axes, so both
   quadratures and their sign-flipped twins give the accumulated phase by atan2 with the
   readout offset cancelled; delays coarse → fine (×4), each unwrapped by the last.
2. **Rabi**: a scan of the SX amplitude around the current value, fitted (scipy
   ``least_squares``) with P = B + C·sin²(π·a/(4·a_π)): the coarse amplitude, robust to
   large errors.
3. **Fine amplitude**: SX·X^n and SX̄·X^n (error amplification, signed; the difference
   is C·sin(nπε)), depths coarse → fine; the first depth (2) is unambiguous for
   |ε| < 25 %.
4. **DRAG**: a β scan of SY·(X̄X)^n pairs (again sign-flipped twins) fitted with a line,
   whose slope then converts the deeper fine measurements into β corrections.
5. **Refine**: the deepest Ramsey, amplitude and DRAG measurements again at the refined
   parameters (the couplings between families are small but not zero).

**The plan scales with the budget.** The budget is split over stages by ``allocation``
and within a family by ``level_growth`` (deeper levels get more shots: they carry more
information per shot); the split is exact and never exceeds the budget. When a budget
cannot give every sequence ``min_shots`` shots, the plan is trimmed until it can: first
the refine stage, then the deepest level of the family with the most levels (a family
keeps its first level; DRAG keeps its scan), then β scan points down to two. So the
default plan runs from ``min_budget()`` (< 100) shots up; at 100 shots it is one or two
levels per family.

**Every fit is guarded; the estimate only moves on evidence.** Each family (amplitude,
β, detuning) carries an estimate and its standard deviation σ, starting from the
starting parameters with σ from ``amplitude_prior``, ``beta_prior`` and
``detuning_prior_hz`` (how far off a lab's last calibration may be). A level's fit
(value x_fit, σ_fit from its shot noise, and the half-width R of its unambiguous range:
1/(2n) relative for X^n, π/(2·2n·|slope|) for n X̄X pairs, 1/(2τ) for a Ramsey delay τ)
is *rejected*, keeping the previous estimate and its σ, when

- it is not the family's first level and ``unwrap_sigma``·σ > R: the previous estimate
  cannot tell which branch of the probe's periodic response the data are on (a fit
  there may be aliased by a whole period: the first way to diverge below);
- it is not finite, or moves the estimate by more than R (outside the probe's trust
  region), or by more than ``trust_sigma``·√(σ² + σ_fit²) (not confirmed by the data
  the estimate rests on), or out of 3 prior σ around the start (the start's trust
  region: ±24 % amplitude, ±1.8 β scales, ±4.5 MHz by default);
- a single-quadrature (asin) fit only needs the previous estimate to fix its sign (σ
  within 2R: below 2R its move has the right sign and is no larger than the residual);
  one whose signal is saturated (|s| > 0.95) is only a bound, and its σ_fit is raised
  to R/2 so that it moves the estimate part of the way.

An accepted fit is combined with the estimate by inverse variance (a noisy shallow fit
at a tiny budget moves a good start only a little), and a step smaller than σ_fit is
not taken at all (the estimate stays, its σ shrinks: the data confirmed it). The final
parameters are these sequential estimates.

Why the first amplitude depth is 2 and β's scale is fixed: without both the sequence
diverges (up to 56× the coherence limit on reachable devices). (i) A first fine amplitude
depth of 4 aliases for |ε| > 12.5 %, and a saturated asin under-corrects so that every
deeper level (×4) then fits a wrong branch, which the final inverse-variance combination
(dominated by the deepest, aliased level) keeps. (ii) A DRAG slope prior and a β scan
width relative to the *current* β make, for a start 77 % below the optimum, the prior
(clipped to 0.5–2× of it) four times too steep and every β correction a quarter of what
it should be. So the first amplitude depth is 2, aliasing is guarded as above, and β's
scale is fixed at the start (|β_start|, at least ``beta_floor_s``), with the slope clipped
only to ``slope_range`` of its prior.

Devices are calibrated in lockstep (the same plan on each): one device call per stage for
all of them, which is what makes an evaluation on hundreds of devices cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pulsecal.envs.amplitude_limit import LimitLog
from pulsecal.envs.calibration import CalibrationTask

from .common import (
    CalibrationResult,
    FloatArray,
    check_budget,
    clip_amplitude,
    device_starts,
    require,
    run_steps,
    safe_asin,
)
from .protocol import register_baseline
from .sequences import amplitude_steps, drag_steps, rabi_steps, ramsey_steps

STAGES: tuple[str, ...] = ("ramsey", "rabi", "amplitude", "drag", "refine")
_SATURATED = 0.95  # |s| above which an asin fit is only a bound (sin(0.4π) ≈ 0.951)


def _split(total: int, weights: Sequence[float], sizes: Sequence[int]) -> list[int]:
    """Shots per sequence for stages of ``sizes`` sequences sharing ``total`` by weight."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return [math.floor(total * wi / n) for wi, n in zip(w, sizes, strict=True)]


@dataclass
class _Family:
    """The guarded running estimate of one parameter on B devices (see the module doc)."""

    x: FloatArray  # (B,) estimate
    sigma: FloatArray  # (B,) its standard deviation
    unwrap_sigma: float
    trust_sigma: float
    levels: int = 0  # fits seen so far (the first is the family's coarse level)
    x0: FloatArray = field(init=False)  # the start
    start_range: FloatArray = field(init=False)  # 3 σ of the start: the trust region

    def __post_init__(self) -> None:
        self.x0 = self.x.copy()
        self.start_range = 3.0 * self.sigma

    def update(self, x_fit: FloatArray, sigma_fit: FloatArray, half_range: FloatArray | float,
               saturated: NDArray[np.bool_] | None = None) -> NDArray[np.bool_]:
        """Fold one level's fit in; returns the (B,) mask of devices whose fit was accepted.

        ``saturated`` marks a single-quadrature (asin) level: its fit can only move the
        estimate by up to R and, for a residual below 2R, moves it by no more than the
        residual and with the right sign, so the previous estimate need only fix the sign
        (σ within 2R). A saturated fit is only a bound (noise or a contrast misread can
        saturate it): its σ_fit is raised to R/2, so it moves the estimate part of the way.
        """
        r = np.broadcast_to(np.asarray(half_range, dtype=np.float64), self.x.shape)
        branch = r if saturated is None else 2.0 * r
        s_fit = np.asarray(sigma_fit, dtype=np.float64).copy()
        if saturated is not None:
            s_fit = np.where(saturated, np.maximum(s_fit, 0.5 * r), s_fit)
        step = np.asarray(x_fit, dtype=np.float64) - self.x
        ok = np.isfinite(step) & np.isfinite(s_fit) & (s_fit > 0)
        if self.levels > 0:
            ok &= self.unwrap_sigma * self.sigma <= branch
        with np.errstate(invalid="ignore"):
            ok &= np.abs(step) <= 1.001 * r  # (a saturated asin fit sits on the edge)
            ok &= np.abs(self.x + step - self.x0) <= self.start_range
            ok &= np.abs(step) <= self.trust_sigma * np.sqrt(self.sigma**2 + s_fit**2)
        s_fit = np.where(ok, s_fit, 1.0)
        w = self.sigma**2 / (self.sigma**2 + s_fit**2)
        move = ok & (np.abs(step) >= s_fit)
        self.x = np.where(move, self.x + w * np.where(ok, step, 0.0), self.x)
        self.sigma = np.where(ok, np.sqrt(w) * s_fit, self.sigma)
        self.levels += 1
        return ok

    def rescale(self, b: int, ratio: float) -> None:
        """Device ``b``'s estimate, σ, start and trust region × ``ratio``: an amplitude
        measured at one gate, expressed at a longer one."""
        for arr in (self.x, self.sigma, self.x0, self.start_range):
            arr[b] *= ratio


@register_baseline("standard")
@dataclass(frozen=True)
class StandardCalibration:
    """Standard calibration sequence (Ramsey, Rabi, fine amplitude, DRAG, refine), guarded.

    Attributes:
        ramsey_delays_s: Ramsey delays, coarse to fine; each ≤ 4× the previous so the
            previous estimate unwraps it (the first must keep |2π·Δ_err·τ| < π for the
            starting detuning error: 0.1 µs allows ±4 MHz).
        rabi_points: amplitudes in the Rabi scan (>= 4; 0 skips the scan).
        rabi_span: relative half-width of the scan, in (0, 0.9].
        rabi_min_shots: below this many shots per scan point the scan is skipped and its
            share goes to the fine amplitude levels (a Rabi fit from a handful of shots is
            worse than a ±5 % start), >= 1.
        amplitude_prior: relative uncertainty (σ) of the starting amplitude, in (0, 1].
        beta_prior: uncertainty (σ) of the starting β relative to the β scale, in (0, 10].
        detuning_prior_hz: uncertainty (σ) of the starting detuning in Hz, > 0.
        amplitude_depths: X^n depths (even), coarse to fine; the first is unambiguous for
            |ε| < 1/(2n).
        drag_scan_depth: X̄X pairs in the β scan (small enough that the scan stays on one
            branch: 4 pairs cover ±100 % β error).
        drag_scan_points: β values in the scan (>= 2).
        drag_scan_span: half-width of the β scan relative to the β scale, in (0, 2].
        drag_depths: X̄X pairs in the fine DRAG levels, coarse to fine (may be empty).
        drag_slope: first-order DRAG-probe response, rad per gate per unit relative β
            error (−0.125 on the 20 ns lifted Gaussian: it scales with the pulse shape,
            barely with α or Ω_R); nonzero, it only regularises the scan's fitted slope.
        drag_slope_tolerance: relative width of that prior, in (0, 10].
        slope_range: the fitted slope is clipped to [1/slope_range, slope_range] × its
            prior, in [1, 100] (the prior is relative to the start's β, which may be off
            by ±100 %).
        beta_floor_s: smallest β scale in s (> 0): the scan width and the slope prior are
            relative to max(|β_start|, beta_floor_s).
        unwrap_sigma: a level is used only if this many σ of the current estimate lie
            within its unambiguous range, > 0.
        trust_sigma: a fit farther than this many combined σ from the current estimate is
            rejected, > 0.
        allocation: budget fraction of each stage in ``STAGES`` order (ramsey, rabi,
            amplitude, drag, refine), each >= 0, normalised; refine 0 skips it.
        level_growth: within a family, level l gets level_growth^l of the first level's
            share (>= 1: deeper levels carry more information per shot).
        min_shots: fewest shots per sequence; the plan is trimmed until every sequence
            gets this many, and a budget even the smallest plan cannot serve is rejected
            (message names the minimum budget).
        name: the method's name in results tables.
    """

    ramsey_delays_s: tuple[float, ...] = (0.1e-6, 0.4e-6, 1.6e-6)
    rabi_points: int = 6
    rabi_span: float = 0.5
    amplitude_prior: float = 0.08
    beta_prior: float = 0.6
    detuning_prior_hz: float = 1.5e6
    rabi_min_shots: int = 24
    amplitude_depths: tuple[int, ...] = (2, 8, 32, 64)
    drag_scan_depth: int = 4
    drag_scan_points: int = 4
    drag_scan_span: float = 0.5
    drag_depths: tuple[int, ...] = (8, 32)
    drag_slope: float = -0.125
    drag_slope_tolerance: float = 0.3
    slope_range: float = 4.0
    beta_floor_s: float = 0.25e-9
    unwrap_sigma: float = 1.0
    trust_sigma: float = 5.0
    allocation: tuple[float, float, float, float, float] = (0.16, 0.0, 0.28, 0.30, 0.26)
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
        require(0 < self.beta_prior <= 10, "beta_prior", self.beta_prior, "(0, 10]")
        require(math.isfinite(self.detuning_prior_hz) and self.detuning_prior_hz > 0, "detuning_prior_hz",
                self.detuning_prior_hz, "> 0 Hz")
        for name, least in (("amplitude_depths", 1), ("drag_depths", 0)):
            v = tuple(getattr(self, name))
            require(len(v) >= least and all(isinstance(x, int) and 1 <= x <= 2048 for x in v), name, v,
                    f"{'one or more' if least else 'zero or more'} ints in [1, 2048]")
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
        require(1 <= self.slope_range <= 100, "slope_range", self.slope_range, "[1, 100]")
        require(math.isfinite(self.beta_floor_s) and self.beta_floor_s > 0, "beta_floor_s", self.beta_floor_s,
                "> 0 s")
        require(0 < self.unwrap_sigma <= 100, "unwrap_sigma", self.unwrap_sigma, "(0, 100]")
        require(0 < self.trust_sigma <= 100, "trust_sigma", self.trust_sigma, "(0, 100]")
        require(0 < self.drag_scan_span <= 2, "drag_scan_span", self.drag_scan_span, "(0, 2]")
        alloc = tuple(float(x) for x in self.allocation)
        require(len(alloc) == len(STAGES) and all(math.isfinite(x) and x >= 0 for x in alloc)
                and sum(alloc) > 0 and all(alloc[i] > 0 for i in (0, 2, 3)), "allocation", self.allocation,
                f"{len(STAGES)} fractions >= 0 for {list(STAGES)}, ramsey/amplitude/drag > 0")
        object.__setattr__(self, "allocation", alloc)
        require(1 <= self.level_growth <= 8, "level_growth", self.level_growth, "[1, 8]")
        require(isinstance(self.min_shots, int) and self.min_shots >= 1, "min_shots", self.min_shots, "an int >= 1")

    # -- the plan ---------------------------------------------------------------------------

    def _stages(self, budget: int, delays: Sequence[float], amps: Sequence[int], drags: Sequence[int],
                scan_points: int, refine: bool) -> list[tuple[str, float, int, float]]:
        """(kind, level value, sequences, budget fraction) of one plan shape."""
        alloc = dict(zip(STAGES, np.asarray(self.allocation) / sum(self.allocation), strict=True))
        g = self.level_growth
        stages: list[tuple[str, float, int, float]] = []

        def family(kind: str, values: Sequence[float], n_seq: int, frac: float) -> None:
            w = np.array([g**i for i in range(len(values))])
            for v, wi in zip(values, w / w.sum(), strict=True):
                stages.append((kind, float(v), n_seq, frac * wi))

        family("ramsey", delays, 4, alloc["ramsey"])
        amp_frac = alloc["amplitude"]
        if self.rabi_points and alloc["rabi"] > 0:
            if budget * alloc["rabi"] / self.rabi_points >= self.rabi_min_shots:
                stages.append(("rabi", 0.0, self.rabi_points, alloc["rabi"]))
            else:
                amp_frac += alloc["rabi"]
        family("amplitude", amps, 2, amp_frac)
        # The scan needs as much information as a fine level: it fixes the slope.
        scan_frac = alloc["drag"] / (len(drags) + 1)
        stages.append(("drag_scan", float(self.drag_scan_depth), 2 * scan_points, scan_frac))
        if drags:
            family("drag", drags, 2, alloc["drag"] - scan_frac)
        if refine and alloc["refine"] > 0:
            r = alloc["refine"]
            stages += [("ramsey", delays[-1], 4, 0.25 * r), ("amplitude", float(amps[-1]), 2, 0.375 * r)]
            if drags:
                stages.append(("drag", float(drags[-1]), 2, 0.375 * r))
            else:
                stages[-2] = ("amplitude", float(amps[-1]), 2, 0.75 * r)
        return stages

    def plan(self, budget: int) -> list[tuple[str, float, int, int]]:
        """Stages as (kind, level value, sequences, shots per sequence), in run order.

        Kinds: "ramsey" (delay s), "rabi" (0), "amplitude" (depth), "drag_scan" (depth),
        "drag" (pairs); the refine stage repeats the deepest of each family. The full plan
        when the budget allows it, else trimmed (module docstring) until every sequence
        gets ``min_shots``.
        """
        budget = check_budget("budget", budget, 1)
        levels = {"ramsey": list(self.ramsey_delays_s), "amplitude": [float(x) for x in self.amplitude_depths],
                  "drag": [float(x) for x in self.drag_depths]}
        scan_points, refine = self.drag_scan_points, True
        while True:
            stages = self._stages(budget, levels["ramsey"], [int(x) for x in levels["amplitude"]],
                                  [int(x) for x in levels["drag"]], scan_points, refine)
            shots = _split(budget, [s[3] for s in stages], [s[2] for s in stages])
            if min(shots) >= self.min_shots:
                return [(k, v, n, s) for (k, v, n, _), s in zip(stages, shots, strict=True)]
            if refine and self.allocation[4] > 0:
                refine = False
                continue
            # Keep each family's first (coarse) level: it is what makes the next unambiguous.
            keep = {"ramsey": 1, "amplitude": 1, "drag": 0}
            longest = max(levels, key=lambda f: (len(levels[f]) - keep[f], f == "drag"))
            if len(levels[longest]) > keep[longest]:
                levels[longest].pop()
                continue
            if scan_points > 2:
                scan_points -= 1
                continue
            w = np.array([s[3] for s in stages])
            need = max(math.ceil(self.min_shots * s[2] / (s[3] / w.sum())) for s in stages)
            raise ValueError(f"budget={budget!r} is out of range: allowed >= {need} shots (the smallest plan "
                             f"gives every sequence min_shots={self.min_shots} from there)")

    def min_budget(self) -> int:
        """Smallest budget any plan accepts."""
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
        budget = check_budget("budget", budget, 1)
        stages = self.plan(budget)
        idx, p = device_starts(task, start, index)
        used0 = task.shots_used[idx].copy()
        dt = task.dt_s
        nb = len(idx)
        # Each device runs at its own gate (``task.gates``: the nominal one, or a longer one
        # an amplitude-limited device was given); before the DRAG scan an amplitude estimate
        # beyond the headroom lengthens it again, after it the gate stays (the scan's slope
        # is per gate) and an amplitude beyond full scale is clipped and recorded.
        gate_s = np.array([task.gates[i].n_samples(dt) * dt for i in idx])
        nominal_s = task.gate.n_samples(dt) * dt
        logs = [LimitLog() for _ in idx]
        failures: list[str | None] = [None] * nb
        headroom = task.amplitude_limit.headroom
        scanned = False
        # The DRAG probe's first-order response falls as 1/T on a longer lifted Gaussian.
        k0 = self.drag_slope * nominal_s / gate_s
        contrast = np.full(nb, 0.95)  # readout contrast; the first Ramsey measures it
        base = np.full(nb, 0.02)  # P("1") of the ground state; idem
        slope = np.full(nb, np.nan)  # DRAG per-gate angle per second of β, from the scan
        beta_scale = np.maximum(np.abs(p[:, 1]), self.beta_floor_s)
        fam = {
            "amplitude": _Family(p[:, 0].copy(), self.amplitude_prior * np.abs(p[:, 0]),
                                 self.unwrap_sigma, self.trust_sigma),
            "beta": _Family(p[:, 1].copy(), self.beta_prior * beta_scale, self.unwrap_sigma, self.trust_sigma),
            "detuning": _Family(p[:, 2].copy(), np.full(nb, self.detuning_prior_hz),
                                self.unwrap_sigma, self.trust_sigma),
        }
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
                    # readout assignment errors up to 10 % and 20 % put it in [0.7, 1].
                    # A few shots measure it poorly (and r² is biased up by 2·var), and
                    # every single-quadrature fit divides by it, so it is shrunk towards
                    # the prior 0.9 ± 0.1 by inverse variance.
                    var_r = 0.5 / shots
                    c_meas = np.sqrt(np.maximum(r**2 - 2.0 * var_r, 0.0))
                    w_meas = 0.01 / (0.01 + var_r)
                    contrast = np.clip(w_meas * c_meas + (1.0 - w_meas) * 0.9, 0.6, 1.0)
                    base = np.clip(pr.mean(axis=1) - 0.5 * contrast, 0.0, 0.15)
                    first_ramsey = False
                theta = np.arctan2(y, x)
                tau = max(1, round(value / dt)) * dt + gate_s  # SX centre to SX centre
                sigma_theta = np.sqrt(0.5 / (shots * np.maximum(r, 0.2) ** 2))
                f = fam["detuning"]
                f.update(p[:, 2] + theta / (2 * math.pi * tau), sigma_theta / (2 * math.pi * tau), 0.5 / tau)
                p[:, 2] = f.x
            elif kind == "rabi":
                a_fit, s_fit = self._rabi(task, idx, p, shots, contrast, base, logs)
                f = fam["amplitude"]
                f.update(a_fit, s_fit, self.rabi_span * np.abs(p[:, 0]))
                p[:, 0] = self._within_limit(task, idx, f, logs, failures, headroom, not scanned)
            elif kind == "amplitude":
                n = int(value)
                pr = run_steps(task, idx, p, [amplitude_steps(n, 1), amplitude_steps(n, -1)], shots)
                s = np.clip((pr[:, 0] - pr[:, 1]) / contrast, -1.0, 1.0)
                eps = safe_asin(s) / (n * math.pi)
                var_s = 0.5 / (shots * contrast**2)
                sigma_eps = np.sqrt(var_s / (np.maximum(1.0 - s**2, 0.05) * (n * math.pi) ** 2))
                f = fam["amplitude"]
                f.update(p[:, 0] / (1.0 + eps), sigma_eps * np.abs(p[:, 0]), np.abs(p[:, 0]) / (2 * n - 1),
                         saturated=np.abs(s) > _SATURATED)
                p[:, 0] = self._within_limit(task, idx, f, logs, failures, headroom, not scanned)
            elif kind == "drag_scan":
                b_fit, s_fit, slope_scan = self._drag_scan(task, idx, p, int(value), shots, contrast, beta_scale,
                                                           k0)
                f = fam["beta"]
                ok = f.update(b_fit, s_fit, 1.5 * self.drag_scan_span * beta_scale)
                slope = np.where(ok, slope_scan, k0 / beta_scale)
                p[:, 1] = f.x
                scanned = True
            else:  # fine DRAG
                n = int(value)
                pr = run_steps(task, idx, p, [drag_steps(n, 1), drag_steps(n, -1)], shots)
                s = np.clip((pr[:, 0] - pr[:, 1]) / contrast, -1.0, 1.0)
                angle = safe_asin(s) / (2 * n)
                k = np.abs(slope)
                sigma_angle = np.sqrt(0.5 / (shots * contrast**2 * np.maximum(1.0 - s**2, 0.05) * (2 * n) ** 2))
                f = fam["beta"]
                f.update(p[:, 1] - angle / slope, sigma_angle / k, 0.5 * math.pi / (2 * n * k),
                         saturated=np.abs(s) > _SATURATED)
                p[:, 1] = f.x
            for b, i in enumerate(idx):
                trace[b].append((int(task.shots_used[i] - used0[b]), p[b].copy()))
        final = p.copy()
        final[:, 0] = clip_amplitude(p[:, 0], logs)
        used = (task.shots_used[idx] - used0).astype(np.int64)
        for b in range(nb):
            trace[b].append((int(used[b]), final[b].copy()))
            if failures[b] is None and "amplitude" in logs[b].entries and abs(final[b, 0]) == 1.0:
                e = logs[b].entries["amplitude"]
                failures[b] = (f"amplitude limit: needs |u|={abs(e['requested']):.3g} at "
                               f"{task.gates[idx[b]].duration_s * 1e9:.4g} ns > 1 (full scale)")
        durations = np.array([task.gates[i].duration_s for i in idx], dtype=np.float64)
        return CalibrationResult(final, used, trace, limits=[log.as_dict() for log in logs], failures=failures,
                                 gate_duration_s=durations)

    @staticmethod
    def _within_limit(task: CalibrationTask, idx: list[int], fam: _Family, logs: list[LimitLog],
                      failures: list[str | None], headroom: float, may_lengthen: bool) -> FloatArray:
        """The amplitude (B,) to continue with: a device whose estimate left the headroom
        gets a longer gate first (``may_lengthen``: before the DRAG scan), its amplitude
        estimate rescaled to it; what still exceeds full scale is clipped and recorded."""
        if may_lengthen and task.amplitude_limit.lengthen:
            for b in np.flatnonzero(np.abs(fam.x) > headroom).tolist():
                a = float(fam.x[b])
                new, fit = task.refit_gate(idx[b], a)
                if new != a:
                    fam.rescale(b, new / a)
                if fit.failure is not None:
                    failures[b] = fit.failure
        return clip_amplitude(fam.x.copy(), logs)

    def _rabi(self, task: CalibrationTask, idx: list[int], p: FloatArray, shots: int,
              contrast: FloatArray, base: FloatArray,
              logs: list[LimitLog] | None = None) -> tuple[FloatArray, FloatArray]:
        """Fit the SX amplitude scan for a_π; returns the amplitude and its σ per device.

        The readout baseline and contrast come from the first Ramsey (they are degenerate
        with a_π over a scan this narrow), so the fit has one parameter. A Rabi scan is
        coarse (its signal has no error amplification): the guard weighs it against the
        current amplitude by their σ. A failed fit returns NaN (rejected by the guard).
        """
        from scipy.optimize import least_squares

        rel = 1.0 + self.rabi_span * np.linspace(-1.0, 1.0, self.rabi_points)
        wanted = p[:, :1] * rel[None, :]
        amps = np.clip(wanted, -1.0, 1.0)  # (B, K): the scan stops at full scale
        if logs is not None:
            for b, k in zip(*np.nonzero(amps != wanted), strict=True):
                logs[int(b)].record("rabi_scan_amplitude", "full scale", float(wanted[b, k]), float(amps[b, k]))
        rows = np.repeat(p[:, None, :], len(rel), axis=1)
        rows[:, :, 0] = amps
        pr = run_steps(task, idx, rows, [rabi_steps()] * len(rel), shots)
        a_fit = np.full(len(idx), np.nan)
        s_fit = np.full(len(idx), np.nan)
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
            a_fit[b] = a0 * (1.0 + float(fit.x[0]))
            s_fit[b] = abs(a0) / math.sqrt(info)
        return a_fit, s_fit

    def _drag_scan(self, task: CalibrationTask, idx: list[int], p: FloatArray, depth: int, shots: int,
                   contrast: FloatArray, scale: FloatArray,
                   prior: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """β scan: the per-gate DRAG angle against β, fitted with a line; returns β, its σ
        and the slope (rad per gate per second of β) per device.

        The scan spans ±``drag_scan_span``·scale around the current β, scale fixed at the
        start (not the current β, which may be near zero). The slope is fitted too, but a
        few noisy scan points can make it tiny and the next correction huge, so it is
        combined with its first-order value ``prior``/scale (``drag_slope`` at the device's
        gate; relative width
        ``drag_slope_tolerance``) and clipped to ``slope_range`` of it before the zero
        crossing is read off all scan points.
        """
        m = self.drag_scan_points
        rel = self.drag_scan_span * np.linspace(-1.0, 1.0, m)
        betas = p[:, 1:2] + scale[:, None] * rel[None, :]  # (B, m)
        rows = np.repeat(p[:, None, :], 2 * m, axis=1)
        rows[:, 0::2, 1] = betas
        rows[:, 1::2, 1] = betas
        steps = [st for _ in range(m) for st in (drag_steps(depth, 1), drag_steps(depth, -1))]
        pr = run_steps(task, idx, rows, steps, shots)
        s = np.clip((pr[:, 0::2] - pr[:, 1::2]) / contrast[:, None], -1.0, 1.0)
        angle = safe_asin(s) / (2 * depth)
        # inverse variance of each angle: var(s) ≈ 0.5/(shots·C²), asin' = 1/√(1 − s²)
        w = shots * contrast[:, None] ** 2 * np.maximum(1.0 - s**2, 0.05) * (2 * depth) ** 2 / 0.5
        beta = np.full(len(idx), np.nan)
        sigma = np.full(len(idx), np.nan)
        slope = np.full(len(idx), np.nan)
        for b in range(len(idx)):
            k0 = float(prior[b])  # ``drag_slope`` at this device's gate
            lo, hi = sorted((k0 * self.slope_range, k0 / self.slope_range))
            x = rel  # β offsets in units of the scale
            sw = np.sum(w[b])
            xm = np.sum(w[b] * x) / sw
            ym = np.sum(w[b] * angle[b]) / sw
            sxx = np.sum(w[b] * (x - xm) ** 2)
            k_fit = np.sum(w[b] * (x - xm) * (angle[b] - ym)) / sxx
            w_fit = sxx  # inverse variance of the fitted slope
            w_prior = 1.0 / (self.drag_slope_tolerance * k0) ** 2
            k = float(np.clip((w_fit * k_fit + w_prior * k0) / (w_fit + w_prior), lo, hi))
            # Zero crossing from every point with the chosen slope (weighted mean).
            x0 = float(np.sum(w[b] * (x - angle[b] / k)) / sw)
            beta[b] = p[b, 1] + x0 * scale[b]
            sigma[b] = scale[b] / (abs(k) * math.sqrt(sw))
            slope[b] = k / scale[b]
        return beta, sigma, slope
