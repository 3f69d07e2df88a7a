"""Robust phase estimation (RPE): Heisenberg-scaling depths 2^k, each unwrapped by the last.

Kimmel, Low & Yoder (PRA 92, 062315, 2015) estimate a rotation angle θ from sequences of
depth L = 1, 2, 4, …, 2^K: at each depth two experiments give cos(Lθ) and sin(Lθ), so
atan2 gives Lθ modulo 2π, and the estimate at depth k is the branch (Lθ + 2πm)/L nearest
the estimate of depth k − 1. With a fixed number of shots per depth the error falls as
1/2^K (Heisenberg scaling) as long as each depth's angle error stays below π/2 (Rudinger
et al., PRL 118, 190502, 2017, use it to calibrate a gate's rotation angle). This module
is our own implementation of that scheme for the three DRAG-gate knobs, run through the
task's devices like every baseline (every shot counted), all devices in lockstep:

1. **Detuning** (Ramsey RPE): SX·Delay(τ_k)·SX(ψ), ψ ∈ {0, π/2, π, 3π/2}: both quadratures
   (and their sign-flipped twins, so the readout offset cancels) give the phase
   2π·Δ_err·τ_k by atan2; τ_k = gate + ``ramsey_delay_s``·2^k.
2. **Amplitude** (rotation-angle RPE of X): the sin experiment SX(0)·X^L − SX(π)·X^L =
   (−1)^L·C'·sin(Lπε) and the cos experiment X^L − X^(L+1) = −(−1)^L·C'·cos((L+½)πε),
   C' = C·cos(πε/2) (ε the relative over-rotation of X). The cos experiment's half-step
   offset πε/2 is taken out with the previous depth's estimate, so atan2 gives Lπε with
   the contrast cancelled; L = 1, 2, 4, …
3. **DRAG**: the pairs SY·(X̄X)^n rotate by an angle linear in the β error (about
   ``drag_slope`` rad per gate per unit relative β). That family has a clean sin
   experiment only (sign-flipped SY), so DRAG runs *iterative* RPE: depths n = 1, 2, 4, …,
   each measured at the current β and moving it by asin(s/C)/(2n·slope); the residual
   at depth n is within the unambiguous ±π/2 as long as the previous depth's error is
   (the same unwrapping condition). The slope is refined by a weighted least-squares line
   through the (β, angle) points so far, combined with its prior (±50 %) and clipped to
   1/4–4× of it.

Shots: the budget is split over the families by ``allocation``; each family gets as many
depths (up to its maximum) as leave every sequence ``min_shots``, with equal shots per
depth (RPE's error bound needs each depth right, not the deep ones more precise).

**Valid range** (stated, and checked on the first depth's data): the starting amplitude
error must be within ±25 % (the first cos/sin pair is unambiguous over ±100 %, but the
depth-2 unwrapping needs the depth-1 estimate within 1/(2·2)), the detuning error within
±1/(4·τ_0) (±3.6 MHz at the default 50 ns delay: depth 1 must be right to a quarter
turn), and the β error within ±100 % of |β_start|. A device whose first-depth estimate
lies outside a family's range, or whose final estimate does (a deeper depth unwrapped
onto a wrong branch), keeps that family's start and is flagged in
``CalibrationResult.flags`` (``"amplitude_out_of_range"``, ``"detuning_out_of_range"``,
``"beta_out_of_range"``) rather than being moved onto a wrong branch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from pulsecal.envs.calibration import CalibrationTask

from .common import (
    CalibrationResult,
    FloatArray,
    check_budget,
    device_starts,
    require,
    run_steps,
    safe_asin,
    wrap,
)
from .protocol import register_baseline
from .sequences import Step, amplitude_steps, drag_steps, ramsey_steps

FAMILIES: tuple[str, ...] = ("detuning", "amplitude", "drag")


def _x_steps(depth: int) -> list[Step]:
    """X^depth from the ground state (the amplitude RPE's cos experiment)."""
    return [("X", 0.0)] * depth


@register_baseline("rpe")
@dataclass(frozen=True)
class RPECalibration:
    """Robust phase estimation of detuning, amplitude and DRAG β (module docstring).

    Attributes:
        ramsey_delay_s: delay of the first Ramsey depth in s (doubled per depth), in
            (0, 1e-5].
        max_ramsey_depths: most Ramsey depths (the last delay is ramsey_delay_s·2^(n−1)),
            in [1, 12].
        max_amplitude_depth: deepest X^L, a power of two in [1, 1024].
        max_drag_depth: most X̄X pairs, a power of two in [1, 512].
        drag_slope: DRAG-probe response, rad per gate per unit relative β error (as
            ``StandardCalibration.drag_slope``), nonzero.
        beta_floor_s: smallest β scale in s (the slope prior is relative to
            max(|β_start|, beta_floor_s)), > 0.
        amplitude_range: largest relative amplitude error the first depth accepts, in
            (0, 0.5].
        allocation: budget fractions of detuning, amplitude, DRAG, each > 0.
        min_shots: fewest shots per sequence (of a family's single depth), >= 1.
        depth_shots: fewest shots per sequence for a family to run more than one depth,
            >= min_shots (RPE's unwrapping fails when a depth's angle error passes π/2,
            which a handful of shots makes likely).
        name: the method's name in results tables.
    """

    ramsey_delay_s: float = 50e-9
    max_ramsey_depths: int = 6
    max_amplitude_depth: int = 64
    max_drag_depth: int = 32
    drag_slope: float = -0.125
    beta_floor_s: float = 0.25e-9
    amplitude_range: float = 0.25
    allocation: tuple[float, float, float] = (0.25, 0.4, 0.35)
    min_shots: int = 4
    depth_shots: int = 6
    name: str = "rpe"

    def __post_init__(self) -> None:
        require(math.isfinite(self.ramsey_delay_s) and 0 < self.ramsey_delay_s <= 1e-5, "ramsey_delay_s",
                self.ramsey_delay_s, "(0, 1e-5] s")
        require(isinstance(self.max_ramsey_depths, int) and 1 <= self.max_ramsey_depths <= 12,
                "max_ramsey_depths", self.max_ramsey_depths, "an int in [1, 12]")
        for name, hi in (("max_amplitude_depth", 1024), ("max_drag_depth", 512)):
            v = getattr(self, name)
            require(isinstance(v, int) and 1 <= v <= hi and v & (v - 1) == 0, name, v,
                    f"a power of two in [1, {hi}]")
        require(math.isfinite(self.drag_slope) and self.drag_slope != 0, "drag_slope", self.drag_slope,
                "a finite nonzero angle per unit relative β")
        require(math.isfinite(self.beta_floor_s) and self.beta_floor_s > 0, "beta_floor_s", self.beta_floor_s,
                "> 0 s")
        require(0 < self.amplitude_range <= 0.5, "amplitude_range", self.amplitude_range, "(0, 0.5]")
        alloc = tuple(float(x) for x in self.allocation)
        require(len(alloc) == 3 and all(math.isfinite(x) and x > 0 for x in alloc), "allocation",
                self.allocation, f"3 fractions > 0 for {list(FAMILIES)}")
        object.__setattr__(self, "allocation", alloc)
        require(isinstance(self.min_shots, int) and self.min_shots >= 1, "min_shots", self.min_shots,
                "an int >= 1")
        require(isinstance(self.depth_shots, int) and self.depth_shots >= self.min_shots, "depth_shots",
                self.depth_shots, f"an int >= min_shots={self.min_shots}")

    # -- the plan ---------------------------------------------------------------------------

    def plan(self, budget: int) -> dict[str, tuple[int, int]]:
        """Per family, (number of depths, shots per sequence) for ``budget`` shots."""
        budget = check_budget("budget", budget, 1)
        w = np.asarray(self.allocation) / sum(self.allocation)
        n_seq = {"detuning": 4, "amplitude": 4, "drag": 2}
        most = {"detuning": self.max_ramsey_depths, "amplitude": int(math.log2(self.max_amplitude_depth)) + 1,
                "drag": int(math.log2(self.max_drag_depth)) + 1}
        out = {}
        for f, wi in zip(FAMILIES, w, strict=True):
            share = math.floor(budget * wi)
            depths = min(most[f], max(share // (n_seq[f] * self.depth_shots),
                                      min(1, share // (n_seq[f] * self.min_shots))))
            if depths < 1:
                need = max(math.ceil(n_seq[g] * self.min_shots / wg) for g, wg in zip(FAMILIES, w, strict=True))
                raise ValueError(f"budget={budget!r} is out of range: allowed >= {need} shots (every family needs "
                                 f"one depth of min_shots={self.min_shots} per sequence)")
            out[f] = (depths, share // (n_seq[f] * depths))
        return out

    def min_budget(self) -> int:
        """Smallest budget the plan accepts."""
        w = np.asarray(self.allocation) / sum(self.allocation)
        n = max(math.ceil(s * self.min_shots / wi) for s, wi in zip((4, 4, 2), w, strict=True))
        while True:
            try:
                self.plan(n)
                return n
            except ValueError:
                n += 1

    # -- running ----------------------------------------------------------------------------

    def run(
        self, task: CalibrationTask, start: ArrayLike, budget: int, rng: np.random.Generator | None = None,
        index: Sequence[int] | None = None,
    ) -> CalibrationResult:
        """Calibrate devices ``index`` of ``task`` from ``start`` within ``budget`` shots each.

        ``rng`` is unused (deterministic). Returns the final parameters, the shots used,
        a trace after each family, and per device the flags of families whose start was
        outside the valid range (those keep their start).
        """
        plan = self.plan(budget)
        idx, p = device_starts(task, start, index)
        nb = len(idx)
        used0 = task.shots_used[idx].copy()
        flags: list[list[str]] = [[] for _ in idx]
        trace: list[list[tuple[int, FloatArray]]] = [[] for _ in idx]

        def mark() -> None:
            for b, i in enumerate(idx):
                trace[b].append((int(task.shots_used[i] - used0[b]), p[b].copy()))

        contrast = self._detuning(task, idx, p, *plan["detuning"], flags)
        mark()
        self._amplitude(task, idx, p, *plan["amplitude"], flags)
        mark()
        self._drag(task, idx, p, *plan["drag"], contrast, flags)
        mark()
        used = (task.shots_used[idx] - used0).astype(np.int64)
        for b in range(nb):
            trace[b].append((int(used[b]), p[b].copy()))
        return CalibrationResult(p.copy(), used, trace, flags=[tuple(f) for f in flags])

    def _detuning(self, task: CalibrationTask, idx: list[int], p: FloatArray, depths: int, shots: int,
                  flags: list[list[str]]) -> FloatArray:
        """Ramsey RPE; moves p[:, 2]; returns the readout contrast seen at the first depth."""
        dt = task.dt_s
        # (B,): each device's own gate, longer on an amplitude-limited device (task.gates).
        gate_s = np.array([task.gates[i].n_samples(dt) * dt for i in idx])
        phases = (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi)
        est = np.zeros(len(idx))  # residual detuning error (Hz) so far
        contrast = np.full(len(idx), 0.9)
        ok = np.ones(len(idx), dtype=bool)
        for k in range(depths):
            delay = self.ramsey_delay_s * 2**k
            tau = max(1, round(delay / dt)) * dt + gate_s  # SX centre to SX centre
            pr = run_steps(task, idx, p, [ramsey_steps(delay, ph) for ph in phases], shots)
            x, y = pr[:, 0] - pr[:, 2], pr[:, 3] - pr[:, 1]
            theta = np.arctan2(y, x)
            if k == 0:
                r = np.hypot(x, y)
                var_r = 0.5 / shots
                w = 0.01 / (0.01 + var_r)  # few shots: shrink towards 0.9 ± 0.1
                contrast = np.clip(w * np.sqrt(np.maximum(r**2 - 2 * var_r, 0.0)) + (1 - w) * 0.9, 0.6, 1.0)
                est = theta / (2 * math.pi * tau)
                ok = np.abs(est) <= 0.25 / tau
            else:
                # The branch of theta + 2πm nearest the previous depth's prediction.
                pred = 2 * math.pi * est * tau
                est = (pred + wrap(theta - pred)) / (2 * math.pi * tau)
        # The deeper depths may only refine the first one's estimate, not leave its range.
        tau0 = max(1, round(self.ramsey_delay_s / dt)) * dt + gate_s
        ok &= np.abs(est) <= 0.25 / tau0
        for b in np.flatnonzero(~ok):
            flags[b].append("detuning_out_of_range")
        p[:, 2] = np.where(ok, p[:, 2] + est, p[:, 2])
        return contrast

    def _amplitude(self, task: CalibrationTask, idx: list[int], p: FloatArray, depths: int, shots: int,
                   flags: list[list[str]]) -> None:
        """Rotation-angle RPE of X (sin and cos experiments per depth L = 2^k); moves p[:, 0]."""
        eps = np.zeros(len(idx))
        ok = np.ones(len(idx), dtype=bool)
        for k in range(depths):
            n = 2**k
            seqs = [amplitude_steps(n, 1), amplitude_steps(n, -1), _x_steps(n), _x_steps(n + 1)]
            pr = run_steps(task, idx, p, seqs, shots)
            sign = -1.0 if n % 2 else 1.0
            s = sign * (pr[:, 0] - pr[:, 1])
            c = -sign * (pr[:, 2] - pr[:, 3])
            delta = 0.5 * math.pi * eps  # the cos experiment's half-step offset, from the last depth
            phi = np.arctan2(s, (c + s * np.sin(delta)) / np.cos(delta))
            if k == 0:
                eps = phi / math.pi
                ok = np.abs(eps) <= self.amplitude_range
            else:
                pred = n * math.pi * eps
                eps = (pred + wrap(phi - pred)) / (n * math.pi)
        ok &= np.abs(eps) <= self.amplitude_range  # (a wrong branch deep down ends outside)
        for b in np.flatnonzero(~ok):
            flags[b].append("amplitude_out_of_range")
        p[:, 0] = np.where(ok, np.clip(p[:, 0] / (1.0 + eps), -1.0, 1.0), p[:, 0])

    def _drag(self, task: CalibrationTask, idx: list[int], p: FloatArray, depths: int, shots: int,
              contrast: FloatArray, flags: list[list[str]]) -> None:
        """Iterative RPE of β (one quadrature, re-centred at each depth); moves p[:, 1]."""
        scale = np.maximum(np.abs(p[:, 1]), self.beta_floor_s)
        k0 = self.drag_slope / scale  # rad per gate per second of β
        lo, hi = np.minimum(4 * k0, k0 / 4), np.maximum(4 * k0, k0 / 4)
        slope = k0.copy()
        beta0 = p[:, 1].copy()
        points: list[tuple[FloatArray, FloatArray, FloatArray]] = []  # β, angle, inverse variance
        ok = np.ones(len(idx), dtype=bool)
        for k in range(depths):
            n = 2**k
            pr = run_steps(task, idx, p, [drag_steps(n, 1), drag_steps(n, -1)], shots)
            s = np.clip((pr[:, 0] - pr[:, 1]) / contrast, -1.0, 1.0)
            angle = safe_asin(s) / (2 * n)  # per gate
            # var(s) ≈ 0.5/(shots·C²), asin' = 1/√(1 − s²), per gate: / (2n)²
            info = shots * contrast**2 * np.maximum(1.0 - s**2, 0.05) * (2 * n) ** 2 / 0.5
            points.append((p[:, 1].copy(), angle, info))
            if len(points) >= 2:
                # Weighted least-squares slope through the (β, angle) points so far, combined
                # with its prior k0 (relative width 0.5) by inverse variance: two close β
                # values with noisy angles must not make the slope tiny and the step huge.
                bs, an, wts = (np.stack([q[j] for q in points]) for j in range(3))
                sw = np.sum(wts, axis=0)
                bm = np.sum(wts * bs, axis=0) / sw
                am = np.sum(wts * an, axis=0) / sw
                sxx = np.sum(wts * (bs - bm) ** 2, axis=0)
                fit = np.sum(wts * (bs - bm) * (an - am), axis=0) / np.where(sxx > 0, sxx, 1.0)
                w_prior = 1.0 / (0.5 * k0) ** 2
                slope = np.clip((sxx * fit + w_prior * k0) / (sxx + w_prior), lo, hi)
            step = -angle / slope
            if k == 0:
                ok = np.abs(step) <= scale
            p[:, 1] = np.where(ok, p[:, 1] + step, beta0)
        ok &= np.abs(p[:, 1] - beta0) <= scale
        p[:, 1] = np.where(ok, p[:, 1], beta0)
        for b in np.flatnonzero(~ok):
            flags[b].append("beta_out_of_range")
