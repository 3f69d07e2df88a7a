"""GateCalibration-v1: DRAG gate calibration with a running estimate and adaptive probes.

v0 shows the policy raw excited fractions of a fixed probe set and leaves all inference to
the network. v1 keeps the same task, devices, start and shot accounting, but does what a
lab's analysis does before a decision: every probe is run as a sign-flipped twin (the
difference cancels the readout offset), each twin is read into an estimate of the optimal
parameter with its variance, and all estimates of an episode are combined (inverse
variance, outliers against the most precise one left out). The policy sees that running
estimate and its uncertainty, acts *relative to it* (a residual in units of the posterior
σ), and chooses how aggressively the next round's probes amplify the error (deeper
probes carry more information per shot but wrap once the error they amplify exceeds
~π/2). Every shot runs on the device and is counted; the observation carries no truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from . import contract
from ._validation import require
from .drag_calibration_core import DragCalibrationCore, GateCalibrationConfig
from .physics.calibration_kernels import TWO_PI
from .presets import DeviceSampler
from .probes import gate_steps_sequence
from .protocol import Play, PulseSequence, run_on_devices
from .vector import BatchedVectorEnv, FloatArray, SingleCoreEnv

FAMILY_NAMES: tuple[str, str, str] = ("amplitude", "drag", "ramsey")
# Twin sequences per round: (family, sign) in run order.
_TWINS: tuple[tuple[int, int], ...] = ((0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1))


def twin_sequence(family: int, sign: int, level: float, x: Play, sx: Play, gate_s: float,
                  detuning_hz: float, dt_s: float) -> PulseSequence:
    """One sign-flipped error-amplifying sequence (conventions of ``calibration.Probe``).

    - amplitude, depth n: SX(axis 0 or π)·X^n; P+ − P− = C·sin(n·π·ε)·cos(πε/2).
    - drag, n pairs: SY(±π/2)·(X̄·X)^n; P+ − P− = C·sin(2n·φ), φ the per-gate DRAG angle.
    - ramsey, delay τ: SX·Delay(τ)·SX(axis ±π/2... as 3π/2 and π/2); P+ − P− = C·sin θ,
      θ = 2π(δ − Δ)(τ + gate).

    Frames: a gate with axis φ is VirtualZ(φ)·Play·VirtualZ(−φ); the detuning correction Δ
    advances the frame by −2π·Δ·duration after every Play and Delay; adjacent frame
    changes are merged into one VirtualZ.
    """
    steps: list[tuple[str, float]]
    if family == 0:
        steps = [("SX", 0.0 if sign > 0 else math.pi), *[("X", 0.0)] * int(level)]
    elif family == 1:
        steps = [("SX", sign * math.pi / 2)]
        for _ in range(int(level)):
            steps += [("X", math.pi), ("X", 0.0)]
    else:
        steps = [("SX", 0.0), ("D", level), ("SX", 1.5 * math.pi if sign > 0 else 0.5 * math.pi)]
    return gate_steps_sequence(steps, x, sx, gate_s, detuning_hz, dt_s,
                               name=f"{FAMILY_NAMES[family]}_{level:g}_{'+' if sign > 0 else '-'}")


def combine(values: FloatArray, weights: FloatArray, n_sigma: float = 4.0) -> tuple[FloatArray, FloatArray]:
    """Inverse-variance mean of the estimates consistent with the most precise one.

    Args:
        values, weights: (B, R, F) estimates and inverse variances (weight 0: no estimate).
    Returns:
        mean (B, F) (NaN where no estimate) and the weight (B, F) of the estimates kept.
    """
    w = np.where(np.isfinite(weights) & np.isfinite(values), weights, 0.0)
    v = np.where(w > 0, values, 0.0)
    best_i = np.argmax(w, axis=1)  # (B, F)
    best = np.take_along_axis(v, best_i[:, None, :], axis=1)
    wbest = np.max(w, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.sqrt(1.0 / np.maximum(w, 1e-300) + 1.0 / np.maximum(wbest, 1e-300))
    ok = (np.abs(v - best) <= n_sigma * sigma) & (w > 0)
    num = np.sum(np.where(ok, w * v, 0.0), axis=1)
    den = np.sum(np.where(ok, w, 0.0), axis=1)
    mean = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return mean, den


@dataclass(frozen=True)
class GateCalibrationV1Config(GateCalibrationConfig):
    """``GateCalibrationConfig`` plus the v1 estimator and probe ladders.

    Attributes (besides the v0 ones; ``probes`` and ``shots_per_probe`` are unused here;
    ``sampler`` may also be a mapping of ``DeviceSampler`` fields, as a config file gives it):
        rounds: measurement rounds per episode (the reset's and one after each action but
            the last); every twin of a round gets shot_budget // (6·rounds) shots.
        amplitude_depths: X^n depths (even), shallow to deep.
        drag_depths: X̄X pair counts, shallow to deep.
        ramsey_delays_s: Ramsey delays, short to long.
        max_phase: the deepest level is chosen whose amplified |predicted error| + z·σ
            stays below this phase (rad; < π/2 keeps asin unambiguous).
        z_range: (low, high) of z, the σ multiple the depth choice guards against; the
            depth action maps [−1, 1] log-linearly onto it (−1: deep and bold).
        residual_sigmas: the parameter action's scale, in posterior σ around the estimate.
        contrast: assumed readout contrast C (1 − p(1|0) − p(0|1)); a few % off only
            slows the iteration, since every round measures at the current estimate.
        drag_slope_per_s: per-gate DRAG angle (rad) per second of β error. Set by the
            pulse shape, not the device: −5.08e8 for the 20 ns lifted Gaussian with
            σ = T/4, within 1 % over α/2π in [−400, −180] MHz and Ω_R/2π in [70, 130]
            MHz (a slope relative to the starting β would be off by the ±50 % start);
            set it anew for another gate duration or shape:
            ``probe_constants.measure_probe_constants`` measures it (and ``couplings``).
        reward: "measured" (log-improvement of the posterior expected error, shots only)
            or "truth" (log-improvement of the true excess infidelity over the coherence
            limit, simulation only: a privileged training signal, never observed).
        reward_floor: relative floor of the truth reward's excess (× coherence limit).
        couplings: first-order cross-talk of the probes, removed from every stored
            reading with the current estimates (measured on the 20 ns lifted Gaussian,
            the same on sampled devices to ~15 %): amplitude ε read per Hz of detuning
            error, β error (s) read per Hz of detuning error, Ramsey detuning error (Hz)
            read per second of β error (measured at the 0.4 µs Ramsey level; that one
            scales as 1/(delay + gate)). Without them the first round's DRAG reading
            (±1 MHz detuning → ±43 % β) sends the next, deeper probe onto a wrong branch.
        model_error: relative error of a correction (contrast, slope, couplings); the
            depth choice also guards against model_error × the last parameter move.
        max_level_step: a family's ladder level rises by at most this much per round.
        beta_unit_floor_s: lower bound (s) of the β unit (the scale of β's prior, window
            and observation, otherwise |starting β|); None keeps |starting β|. A relative
            start error of ±100 % can leave the starting β near zero, which shrinks the
            window around it below the distance to the optimum (the parameters then stop
            at the window's edge); a floor of about the textbook β of the least
            anharmonic device expected (1/(4π·|α|): 0.53 ns at α/2π = −150 MHz) keeps it.
    """

    rounds: int = 8
    amplitude_depths: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    drag_depths: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    ramsey_delays_s: tuple[float, ...] = (0.1e-6, 0.2e-6, 0.4e-6, 0.8e-6, 1.6e-6, 3.2e-6)
    max_phase: float = 1.0
    z_range: tuple[float, float] = (1.5, 6.0)
    residual_sigmas: float = 3.0
    contrast: float = 0.95
    drag_slope_per_s: float = -5.08e8
    reward: Literal["measured", "truth"] = "measured"
    reward_floor: float = 0.01
    couplings: tuple[float, float, float] = (-1.6e-9, 1.06e-16, 8.5e13)
    model_error: float = 0.3
    max_level_step: int = 2
    beta_unit_floor_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.sampler, Mapping):
            # From a config file: DeviceSampler ranges as a mapping of (low, high) lists,
            # optionally on a named base sampler (``name: realistic``).
            object.__setattr__(self, "sampler", DeviceSampler.from_mapping(self.sampler))
        super().__post_init__()
        require(isinstance(self.rounds, int) and self.rounds >= 2, "rounds", self.rounds, "an int >= 2")
        require(self.calibration_budget >= 6 * self.rounds, "shot_budget", self.shot_budget,
                f">= 6·rounds + verification shots = {6 * self.rounds + self.verification_shots} "
                "(one shot per twin and round)")
        require(tuple(self.parameters) == ("amplitude", "beta_s", "detuning_hz"), "parameters",
                self.parameters, "('amplitude', 'beta_s', 'detuning_hz') in v1")
        for name in ("amplitude_depths", "drag_depths"):
            v = tuple(int(x) for x in getattr(self, name))
            require(len(v) >= 1 and all(1 <= x <= 1024 for x in v) and list(v) == sorted(v), name, v,
                    "increasing ints in [1, 1024]")
            object.__setattr__(self, name, v)
        require(all(x % 2 == 0 for x in self.amplitude_depths), "amplitude_depths", self.amplitude_depths,
                "even depths")
        d = tuple(float(x) for x in self.ramsey_delays_s)
        require(len(d) >= 1 and all(0 < x <= 1e-3 for x in d) and list(d) == sorted(d), "ramsey_delays_s",
                d, "increasing delays in (0, 1e-3] s")
        object.__setattr__(self, "ramsey_delays_s", d)
        require(0 < finite_pos(self.max_phase) < math.pi / 2, "max_phase", self.max_phase, "(0, π/2)")
        z = tuple(float(x) for x in self.z_range)
        require(len(z) == 2 and 0 < z[0] <= z[1], "z_range", self.z_range, "(low, high) with 0 < low <= high")
        object.__setattr__(self, "z_range", z)
        require(finite_pos(self.residual_sigmas) > 0, "residual_sigmas", self.residual_sigmas, "> 0")
        require(0.5 <= finite_pos(self.contrast) <= 1.0, "contrast", self.contrast, "[0.5, 1]")
        require(math.isfinite(self.drag_slope_per_s) and self.drag_slope_per_s != 0, "drag_slope_per_s",
                self.drag_slope_per_s, "finite and nonzero")
        require(self.reward in ("measured", "truth"), "reward", self.reward, "'measured' or 'truth'")
        require(finite_pos(self.reward_floor) > 0, "reward_floor", self.reward_floor, "> 0")
        c = tuple(float(x) for x in self.couplings)
        require(len(c) == 3 and all(math.isfinite(x) for x in c), "couplings", self.couplings, "3 finite values")
        object.__setattr__(self, "couplings", c)
        require(finite_pos(self.model_error) >= 0, "model_error", self.model_error, ">= 0")
        require(isinstance(self.max_level_step, int) and self.max_level_step >= 1, "max_level_step",
                self.max_level_step, "an int >= 1")
        if self.beta_unit_floor_s is not None:
            require(0 < finite_pos(self.beta_unit_floor_s) <= 1e-7, "beta_unit_floor_s", self.beta_unit_floor_s,
                    "None or a time in (0, 1e-7] s")
            object.__setattr__(self, "beta_unit_floor_s", float(self.beta_unit_floor_s))

    @property
    def shots_per_twin(self) -> int:
        return self.calibration_budget // (6 * self.rounds)


def finite_pos(x: object) -> float:
    return float(x) if isinstance(x, int | float) and math.isfinite(float(x)) else math.nan


_N_OBS = 20


class GateCalibrationV1Core(DragCalibrationCore):
    """Batched core of ``GateCalibrationV1Env``."""

    config_class = GateCalibrationV1Config
    lengthens_gate = True

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        cfg: GateCalibrationV1Config = self.cfg  # type: ignore[assignment]
        self.v1_config = cfg
        n, r = self.num_envs, cfg.rounds
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (_N_OBS,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        self.ladders = (np.array(cfg.amplitude_depths, dtype=np.float64),
                        np.array(cfg.drag_depths, dtype=np.float64),
                        np.array(cfg.ramsey_delays_s))
        self.at = np.zeros((n, r, 3))  # parameters of each round's measurement
        self.read = np.zeros((n, r, 3))  # signed error each round read (ε for amplitude)
        self.weights = np.zeros((n, r, 3))  # inverse variance of the optimum, parameter units
        self.moved = np.zeros((n, 3))  # |parameters − those of the last measurement|
        self.round = np.zeros(n, dtype=np.int64)  # rounds measured so far
        self.steps = np.zeros(n, dtype=np.int64)
        self.estimate = np.zeros((n, 3))
        self.sigma = np.ones((n, 3))
        self.prior_sigma = np.ones((n, 3))
        self.level = np.zeros((n, 3), dtype=np.int64)
        self.signal = np.zeros((n, 3))
        self.z = np.full(n, math.sqrt(cfg.z_range[0] * cfg.z_range[1]))
        self.last_cost = np.ones(n)

    # -- estimator ---------------------------------------------------------------------------

    def observation_names(self) -> tuple[str, ...]:
        """One name per observation entry (``contract.EnvDescription.observation_names``)."""
        return contract.gate_calibration_v1_observation_names(self)

    def _scale(self, rows: NDArray[np.int64]) -> FloatArray:
        """(n, 3) miscalibration unit of amplitude, β and detuning (relative ones × |start|)."""
        mis = np.asarray(self.cfg.miscalibration)[:3]
        return np.maximum(mis, 1e-12) * self.unit[rows][:, :3]

    def _durations(self, rows: NDArray[np.int64]) -> FloatArray:
        """(n,) gate duration of each copy (the nominal one unless lengthened)."""
        gates = self.task.gates
        return np.array([gates[i].duration_s for i in rows.tolist()], dtype=np.float64)

    def _constants(self, rows: NDArray[np.int64]) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(n,) |DRAG slope| and the three couplings of each copy's gate.

        The config's values are those of the nominal gate T0; a copy lengthened to T
        scales them as the lifted Gaussian does (``probe_constants`` measured on 20–60 ns,
        to < 0.3 %): slope ∝ 1/T, the amplitude coupling stays, the DRAG one ∝ T², the
        Ramsey one ∝ 1/(T·(τ + T)) at its reference delay τ = 0.4 µs. At T = T0 every
        factor is exactly 1."""
        cfg = self.v1_config
        t0 = self.gate.duration_s
        t = self._durations(rows)
        ca, cb, cr = cfg.couplings
        tau = 0.4e-6
        slope = abs(cfg.drag_slope_per_s) * (t0 / t)
        return (slope, np.full(len(rows), ca), cb * (t / t0) ** 2,
                cr * ((t0 / t) * ((tau + t0) / (tau + t))))

    def _gains(self, rows: NDArray[np.int64]) -> FloatArray:
        """(n, 3, L) amplified phase per unit parameter error at each ladder level."""
        dur = self._durations(rows)[:, None]
        p = self.params[rows]
        amp = np.abs(p[:, 0:1]) + 1e-12
        a, d, rm = self.ladders
        g_amp = a[None, :] * math.pi / amp  # phase per unit amplitude (ε = Δa/a)
        g_drag = 2.0 * d[None, :] * self._constants(rows)[0][:, None]
        g_ram = TWO_PI * (rm[None, :] + dur) * np.ones((len(rows), 1))
        return np.stack([g_amp, g_drag, g_ram], axis=1)

    def _choose_levels(self, rows: NDArray[np.int64]) -> None:
        """Deepest level whose amplified |estimate − params| + z·σ stays below max_phase."""
        cfg = self.v1_config
        sig = self.sigma[rows].copy()
        _, ca, cb, cr = self._constants(rows)
        # what the cross-talk corrections leave: the other parameter's uncertainty
        sig[:, 0] = np.hypot(sig[:, 0], ca * sig[:, 2] * np.abs(self.params[rows][:, 0]))
        sig[:, 1] = np.hypot(sig[:, 1], cb * sig[:, 2])
        sig[:, 2] = np.hypot(sig[:, 2], cr * sig[:, 1])
        off = np.abs(np.nan_to_num(self.estimate[rows] - self.params[rows][:, :3]))
        spread = off + self.z[rows][:, None] * sig + cfg.model_error * self.moved[rows]
        phase = self._gains(rows) * spread[:, :, None]
        ok = phase <= cfg.max_phase
        # levels are increasing in gain: count the ones that fit (at least the first)
        fit = np.maximum(np.sum(ok, axis=2) - 1, 0)
        cap = np.where(self.round[rows][:, None] > 0, self.level[rows] + cfg.max_level_step, 0)
        self.level[rows] = np.minimum(fit, cap)

    def _measure(self, rows: NDArray[np.int64]) -> None:
        """One round of the six twins on copies ``rows`` (one device call), then update."""
        cfg = self.v1_config
        idx = [int(i) for i in rows]
        shots = cfg.shots_per_twin
        dt = self.task.dt_s
        p = self.params[rows]
        groups = self.task.gate_groups(idx) or [(self.gate, list(range(len(idx))))]
        wx: list[Any] = [None] * len(idx)
        wsx: list[Any] = [None] * len(idx)
        gate_s = np.empty(len(idx))
        for gate, pos in groups:  # each copy's waveforms at its own gate
            x_rows = gate.waveforms(p[pos], dt)
            sx_rows = gate.waveforms(p[pos], dt, gate.sx_area_fraction)
            for k, j in enumerate(pos):
                wx[j], wsx[j], gate_s[j] = x_rows[k], sx_rows[k], gate.n_samples(dt) * dt
        seqs = []
        for j, i in enumerate(idx):
            x, sx = Play(wx[j], "X"), Play(wsx[j], "SX")
            levels = [float(self.ladders[f][self.level[i, f]]) for f in range(3)]
            seqs.append([twin_sequence(f, s, levels[f], x, sx, float(gate_s[j]), float(p[j, 2]), dt)
                         for f, s in _TWINS])
        counts = run_on_devices([self.devices[i] for i in idx], seqs, [shots] * len(idx))
        pr = np.stack([c[:, 1] / shots for c in counts])  # (n, 6)
        self.task.shots_used[rows] += shots * len(_TWINS)
        s = np.clip((pr[:, 0::2] - pr[:, 1::2]) / cfg.contrast, -1.0, 1.0)  # (n, 3)
        phase = np.arcsin(s)
        var_phase = 0.5 / (shots * cfg.contrast**2 * np.maximum(1.0 - s**2, 0.05))
        gains = self._gains(rows)
        g = np.take_along_axis(gains, self.level[rows][:, :, None], axis=2)[:, :, 0]  # (n, 3)
        # Signed error (params − optimum) each twin reads; sign conventions of the probes:
        # amplitude over-rotation ε > 0 gives s > 0; DRAG angle = slope·(β − β*); Ramsey
        # θ = 2π(δ − Δ)τ, so Δ* = Δ + θ/(2πτ).
        err = np.stack([phase[:, 0] / g[:, 0],
                        phase[:, 1] / g[:, 1] * np.sign(self.v1_config.drag_slope_per_s),
                        -phase[:, 2] / g[:, 2]], axis=1)
        # amplitude: ε = a/a* − 1 exactly, so a* = a/(1 + ε)
        err[:, 0] = phase[:, 0] / (g[:, 0] * np.abs(p[:, 0]) + 1e-300)
        r = self.round[rows]
        self.at[rows, r] = p[:, :3]
        self.read[rows, r] = err
        self.weights[rows, r] = g**2 / var_phase
        self.round[rows] += 1
        self.signal[rows] = s
        self.moved[rows] = 0.0
        self._estimate(rows)
        for j, i in enumerate(idx):
            self.history[i].append(pr[j])

    def _estimate(self, rows: NDArray[np.int64], iterations: int = 3) -> None:
        """Posterior of the optimum from every reading, cross-talk removed with the
        current estimate (a few fixed-point passes: the corrections are small)."""
        _, ca_row, cb_row, cr_row = self._constants(rows)
        ca, cb, cr = ca_row[:, None], cb_row[:, None], cr_row[:, None]
        at, read, w = self.at[rows], self.read[rows], self.weights[rows]
        estimate = self.estimate[rows].copy()
        den = np.zeros_like(estimate)
        for _ in range(iterations):
            e_det = at[:, :, 2] - estimate[:, None, 2]  # detuning error of each reading
            e_beta = at[:, :, 1] - estimate[:, None, 1]
            opt = np.empty_like(read)
            opt[:, :, 0] = at[:, :, 0] / (1.0 + read[:, :, 0] - ca * e_det)
            opt[:, :, 1] = at[:, :, 1] - (read[:, :, 1] - cb * e_det)
            opt[:, :, 2] = at[:, :, 2] - (read[:, :, 2] - cr * e_beta)
            mean, den = combine(opt, w)
            estimate = np.where(np.isfinite(mean), mean, self.params[rows][:, :3])
        self.estimate[rows] = estimate
        self.sigma[rows] = np.where(den > 0, 1.0 / np.sqrt(np.maximum(den, 1e-300)), self.prior_sigma[rows])

    def _expected_error(self, rows: NDArray[np.int64]) -> FloatArray:
        """Posterior expected infidelity of the current parameters (angle²/6 per family)."""
        gains = self._gains(rows)
        dur = self._durations(rows)
        per_gate = np.stack([gains[:, 0, 0] / self.ladders[0][0],  # π/a: per-gate angle per unit amplitude
                             gains[:, 1, 0] / (2.0 * self.ladders[1][0]),
                             TWO_PI * dur * np.ones(len(rows))], axis=1)
        off = np.nan_to_num(self.estimate[rows] - self.params[rows][:, :3])
        return np.asarray(np.sum((per_gate**2) * (off**2 + self.sigma[rows] ** 2), axis=1) / 6.0)

    # -- env hooks ---------------------------------------------------------------------------

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        super()._reset_copy(i, options)
        if self.v1_config.beta_unit_floor_s is not None:
            self.unit[i, 1] = max(self.unit[i, 1], self.v1_config.beta_unit_floor_s)
        rows = np.array([i])
        self.at[i] = 0.0
        self.read[i] = 0.0
        self.weights[i] = 0.0
        self.moved[i] = 0.0
        self.round[i] = 0
        self.steps[i] = 0
        self.prior_sigma[i] = self._scale(rows)[0] / math.sqrt(3.0)  # uniform start offsets
        self.sigma[i] = self.prior_sigma[i]
        self.estimate[i] = self.params[i, :3]
        self.signal[i] = 0.0
        self.z[i] = math.sqrt(self.v1_config.z_range[0] * self.v1_config.z_range[1])
        self._choose_levels(rows)

    def _apply_action(self, i: int, action: FloatArray) -> None:
        self._apply_actions([i], np.asarray(action, dtype=np.float64)[None])

    def _apply_actions(self, idx: list[int], actions: NDArray[np.float64]) -> None:
        cfg = self.v1_config
        rows = np.asarray(idx, dtype=np.int64)
        p = self.params[rows]
        p[:, :3] = self.estimate[rows] + actions[:, :3] * cfg.residual_sigmas * self.sigma[rows]
        lim = cfg.window * np.maximum(np.asarray(cfg.max_step), np.asarray(cfg.miscalibration)) * self.unit[rows]
        start = self.start[rows]
        requested = p.copy()
        p = np.clip(p, start - lim, start + lim)
        p[:, 0] = np.clip(p[:, 0], -1.0, 1.0)
        self.moved[rows] += np.abs(p[:, :3] - self.params[rows][:, :3])
        self.params[rows] = p
        self.record_clips(rows, requested)
        lo, hi = cfg.z_range
        self.z[rows] = np.exp(math.log(lo) + (actions[:, 3] + 1.0) * 0.5 * (math.log(hi) - math.log(lo)))
        self.steps[rows] += 1

    def _observe(self, step_idx: list[int], reset_idx: list[int]) -> tuple[
            FloatArray, FloatArray, NDArray[np.bool_], list[dict[str, Any]]]:
        cfg = self.v1_config
        idx = step_idx + reset_idx
        rows = np.asarray(idx, dtype=np.int64)
        n = len(idx)
        # The last action sets the final gate: nothing is measured after it.
        term = np.zeros(n, dtype=np.bool_)
        term[: len(step_idx)] = self.steps[rows[: len(step_idx)]] >= cfg.rounds
        meas = rows[~term]
        if len(meas):
            self._choose_levels(meas)
            self._measure(meas)
        waves, truth = self.truth(idx, force=cfg.reward == "truth")
        if cfg.reward == "truth":
            assert truth is not None
            cl = truth["coherence_limit"]
            cost = np.maximum(1.0 - truth["fidelity"] - cl, 0.0) / cl + cfg.reward_floor
        else:
            cost = self._expected_error(rows) + cfg.error_floor
        rew = np.zeros(n)
        ns = len(step_idx)
        rew[:ns] = np.log10(self.last_cost[rows[:ns]]) - np.log10(cost[:ns])
        self.last_cost[rows] = cost
        scale = self._scale(rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_off = np.nan_to_num((self.estimate[rows] - self.params[rows][:, :3]) / self.sigma[rows])
        nlev = np.array([len(x) - 1 for x in self.ladders], dtype=np.float64)
        obs = np.concatenate([
            np.clip(z_off, -10, 10),
            np.log10(self.sigma[rows] / scale),
            (self.estimate[rows] - self.start[rows][:, :3]) / scale,
            self.signal[rows],
            self.level[rows] / np.maximum(nlev, 1.0),
            (self.params[rows][:, :3] - self.start[rows][:, :3]) / scale,
            (self.steps[rows] / cfg.rounds)[:, None],
            np.minimum(self.task.shots_used[rows] / cfg.shot_budget, 1.0)[:, None],
        ], axis=1)
        if truth is not None and not cfg.report_truth:
            truth = None
        verdicts = self.verdicts_at_end(idx, ns, term)
        infos = []
        for j, i in enumerate(idx):
            info = self.base_info(i, truth, j, waves[j])
            info["infidelity_estimate"] = float(self._expected_error(np.array([i]))[0])
            info["estimate"] = self.estimate[i].copy()
            info["estimate_sigma"] = self.sigma[i].copy()
            if verdicts is not None:
                v = verdicts[j]
                info["verdict"] = v
                info["verification_shots"] = 0 if v is None else v.shots_used
            infos.append(info)
        return np.clip(obs, -10.0, 10.0), rew, term, infos

    def render_copy(self, i: int) -> NDArray[np.uint8]:
        from .render import render_calibration

        names = [f"{FAMILY_NAMES[f]}{'+' if s > 0 else '-'}" for f, s in _TWINS]
        return render_calibration(self.task.gates[i].waveforms(self.params[i], self.task.dt_s), self.task.dt_s,
                                  self.history[i], names, title=f"GateCalibration-v1 copy {i}")


class GateCalibrationV1Env(SingleCoreEnv):
    """Calibrate a DRAG X (and SX) gate from a running estimate, choosing probe depths.

    ## Description
    Same task, devices, start and reset options as ``GateCalibrationEnv`` (v0). Each
    measurement round runs three sign-flipped twin pairs (amplitude SX·X^n, DRAG
    SY·(X̄X)^n, Ramsey) for ``shot_budget // (6·rounds)`` shots each at the current
    parameters; each twin difference is read into an estimate of the optimal amplitude,
    β or detuning with its variance, and all estimates so far are combined (inverse
    variance, outliers against the most precise one dropped). Probe depths come from
    ladders: each round takes, per family, the deepest level whose amplified
    |estimate − parameters| + z·σ stays below ``max_phase``; the agent sets z.

    ## Action Space
    ``Box(-1, 1, (4,), float32)``: entries 0–2 place amplitude, β and detuning at
    estimate + action·``residual_sigmas``·σ (σ the posterior standard deviation; 0 means
    "go to the estimate"); entry 3 sets z log-linearly in ``z_range`` (−1: bold, deep
    probes; +1: cautious). Parameters stay within ``window`` × max(max_step,
    miscalibration) of their start.

    ## Observation Space
    ``Box(-10, 10, (20,), float32)``: per family (amplitude, β, detuning) the offset
    (estimate − parameters)/σ, log10(σ / miscalibration unit), (estimate − start)/unit,
    the last twin signal (P+ − P−)/C, the last ladder level / (levels − 1) and
    (parameters − start)/unit; then the step fraction and the shot-budget fraction.

    ## Rewards
    ``reward="measured"`` (default): log10 of the posterior expected infidelity (angle²/6
    per family, from the estimate's offset and σ) before minus after. ``"truth"``
    (simulation only, a privileged training signal that never enters the observation):
    log10 of (1 − F − coherence limit)⁺/limit + ``reward_floor`` before minus after.
    Both telescope: an episode's return is log10(first/last).

    ## Starting State
    As v0 (device from ``device``/``sampler``, start = textbook × uniform
    miscalibration, reset options ``device``, ``device_params``, ``miscalibration``,
    ``initial_params``); the reset runs the first measurement round.

    ## Episode End
    Terminated after ``rounds`` actions: the last action sets the final gate and runs no
    probes, so an episode spends exactly 6·rounds·(shot_budget // (6·rounds)) <=
    ``shot_budget`` shots. Truncation by ``TimeLimit``. With ``verification`` (as v0:
    off by default) its shots are reserved first (the rounds share
    ``shot_budget`` − verification shots) and the terminating step's info carries the
    ``verdict`` and ``verification_shots`` of checks run on the device.

    ## Arguments
    Those of v0 (``probes``/``shots_per_probe`` unused) plus rounds, amplitude_depths,
    drag_depths, ramsey_delays_s, max_phase, z_range, residual_sigmas, contrast,
    drag_slope_per_s, couplings, model_error, max_level_step, reward, reward_floor (see
    ``GateCalibrationV1Config``). ``info`` as v0
    plus ``estimate`` and ``estimate_sigma`` (3,).

    ## Version History
    - v1: twin probes, running estimate in the observation, residual actions and
      adaptive probe depth; shots per round scale with the budget.
    - v0: initial version.
    """

    core_class = GateCalibrationV1Core

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.gate_calibration_v1_state(self.core, index, "pulsecal/GateCalibration-v1")


class GateCalibrationV1VectorEnv(BatchedVectorEnv):
    """N copies of ``GateCalibrationV1Env`` sharing one device call per round."""

    core_class = GateCalibrationV1Core

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.gate_calibration_v1_state(self.core, index, "pulsecal/GateCalibration-v1")
