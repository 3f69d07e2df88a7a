"""PulseShaping-v0: find a short, low-leakage pulse for a target gate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from .calibration import (
    DragGate,
    finite,
    nominal_params,
    require,
    run_on_devices,
    true_metrics_devices,
)
from .device import DeviceParams, SimulatedDevice
from .presets import get_preset
from .protocol import Play, PulseSequence, VirtualZ
from .pulses import sine_basis
from .vector import BatchedCore, BatchedVectorEnv, FloatArray, SingleCoreEnv

# Target -> (area relative to π, frames (a, b) with target = Z(a)·pulse·Z(b), order k with
# target^k = I). H = Rz(π/2)·Rx(π/2)·Rz(π/2) up to a global phase.
TARGETS: dict[str, tuple[float, tuple[float, float], int]] = {
    "X": (1.0, (0.0, 0.0), 2),
    "SX": (0.5, (0.0, 0.0), 4),
    "H": (0.5, (math.pi / 2, math.pi / 2), 2),
}


@dataclass(frozen=True)
class PulseShapingConfig:
    """Validated constructor arguments of ``PulseShapingEnv`` (see its docstring)."""

    device: str = "transmon_short"
    target: str = "X"
    gate_duration_s: float | None = None
    open_system: bool = True
    n_basis: int = 4
    action_mode: str = "delta"
    reward_mode: str = "privileged"
    amplitude_range: float = 0.2
    beta_range: float = 2.0
    detuning_range_hz: float = 50e6
    coeff_range: float = 0.2
    max_step: float = 0.1
    shots_per_probe: int = 100
    probe_repeats: tuple[int, ...] = (1, 4)
    shot_cost: float = 0.0
    error_floor: float = 1e-6
    report_truth: bool = True

    def __post_init__(self) -> None:
        get_preset(self.device)
        require(self.target in TARGETS, "target", self.target, f"one of {list(TARGETS)}")
        if self.gate_duration_s is not None:
            require(finite("gate_duration_s", self.gate_duration_s) > 0, "gate_duration_s",
                    self.gate_duration_s, "> 0 s or None (the preset's)")
        require(isinstance(self.n_basis, int) and 0 <= self.n_basis <= 32, "n_basis", self.n_basis,
                "an int in [0, 32]")
        require(self.action_mode in ("set", "delta"), "action_mode", self.action_mode, "'set' or 'delta'")
        require(self.reward_mode in ("privileged", "measured"), "reward_mode", self.reward_mode,
                "'privileged' (simulation truth) or 'measured' (shots)")
        for name in ("amplitude_range", "beta_range", "detuning_range_hz", "coeff_range", "max_step"):
            require(finite(name, getattr(self, name)) > 0, name, getattr(self, name), "> 0")
        require(self.amplitude_range < 1 and self.coeff_range <= 1 and self.max_step <= 1,
                "amplitude_range/coeff_range/max_step", (self.amplitude_range, self.coeff_range, self.max_step),
                "amplitude_range < 1, coeff_range <= 1, max_step <= 1")
        require(isinstance(self.shots_per_probe, int) and self.shots_per_probe >= 1, "shots_per_probe",
                self.shots_per_probe, "an int >= 1")
        reps = tuple(self.probe_repeats)
        require(len(reps) >= 1 and all(isinstance(r, int) and 1 <= r <= 256 for r in reps),
                "probe_repeats", self.probe_repeats, "ints in [1, 256]")
        object.__setattr__(self, "probe_repeats", reps)
        require(finite("shot_cost", self.shot_cost) >= 0, "shot_cost", self.shot_cost, ">= 0")
        require(finite("error_floor", self.error_floor) > 0, "error_floor", self.error_floor, "> 0")


class PulseShapingCore(BatchedCore):
    """Batched core of ``PulseShapingEnv``.

    Internal coordinates z in [−1, 1]^(3 + 2K): relative amplitude, relative β, detuning,
    then K sine coefficients on I and K on Q, each scaled by its range.
    """

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs)
        self.cfg = cfg = PulseShapingConfig(**kwargs)
        self.preset = get_preset(cfg.device)
        dt = self.preset.params.dt_s
        self.dt_s = dt
        dur = cfg.gate_duration_s if cfg.gate_duration_s is not None else self.preset.gate_duration_s
        self.gate = DragGate(dur)
        n = self.gate.n_samples(dt)
        self.area, self.frames, self.order = TARGETS[cfg.target]
        self.g, self.dg, self.x = self.gate.envelope(dt)
        self.basis = sine_basis(cfg.n_basis, n, dt) if cfg.n_basis else np.zeros((0, n))
        self.dim = 3 + 2 * cfg.n_basis
        self.devices: list[SimulatedDevice] = [
            self.preset.make(np.random.default_rng(0), open_system=cfg.open_system) for _ in range(self.num_envs)]
        self.z = np.zeros((self.num_envs, self.dim))
        self.ref = np.zeros((self.num_envs, 3))  # textbook amplitude, β, detuning per copy
        self.shots_used = np.zeros(self.num_envs, dtype=np.int64)
        self.history: list[list[FloatArray]] = [[] for _ in range(self.num_envs)]
        n_probe = len(cfg.probe_repeats) + 1 if cfg.reward_mode == "measured" else 0
        self.n_probe = n_probe
        low = np.concatenate([-np.ones(self.dim), [0.0], np.zeros(n_probe)]).astype(np.float32)
        high = np.concatenate([np.ones(self.dim), [1.0], np.ones(n_probe)]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.dim,), dtype=np.float32)

    def waveforms(self, idx: list[int]) -> NDArray[np.complex128]:
        """(n, S) waveforms of copies ``idx`` (ShapedPulse formula, |u| clipped to 1)."""
        cfg = self.cfg
        z = self.z[idx]
        ref = self.ref[idx]
        amp = self.area * ref[:, 0] * (1.0 + cfg.amplitude_range * z[:, 0])
        beta = ref[:, 1] * (1.0 + cfg.beta_range * z[:, 1])
        det = ref[:, 2] + cfg.detuning_range_hz * z[:, 2]
        k = cfg.n_basis
        iq = amp[:, None] * (self.g[None] + 1j * beta[:, None] * self.dg[None])
        if k:
            iq = iq + cfg.coeff_range * (z[:, 3:3 + k] @ self.basis + 1j * (z[:, 3 + k:] @ self.basis))
        w = iq * np.exp(-2j * math.pi * det[:, None] * self.x[None])
        mag = np.abs(w)
        return np.where(mag > 1.0, w / np.maximum(mag, 1.0), w)

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        unknown = set(options) - {"device_params", "initial_z"}
        if unknown:
            raise ValueError(f"reset options {sorted(unknown)} are unknown: allowed 'device_params', 'initial_z'")
        rng = self.rngs[i]
        params = options.get("device_params", self.preset.params)
        if not isinstance(params, DeviceParams):
            raise TypeError(f"options['device_params'] is {type(params).__name__}: allowed DeviceParams")
        self.devices[i] = SimulatedDevice(params, None, rng=np.random.default_rng(int(rng.integers(2**63))),
                                          open_system=self.cfg.open_system)
        # The designer knows the nominal device (preset), not the truth of this one.
        self.ref[i] = nominal_params(self.preset.params.effective_transmon, self.gate).as_array()[:3]
        # Start: the textbook DRAG pulse, plus a small random perturbation of the shape so
        # that episodes differ.
        z0 = np.zeros(self.dim)
        z0[3:] = rng.uniform(-0.05, 0.05, self.dim - 3)
        if "initial_z" in options:
            z0 = np.asarray(options["initial_z"], dtype=np.float64)
            require(z0.shape == (self.dim,) and bool(np.all(np.abs(z0) <= 1)), "options['initial_z']",
                    z0.shape, f"shape ({self.dim},) within [-1, 1]")
        self.z[i] = z0
        self.shots_used[i] = 0
        self.history[i] = []

    def _apply_action(self, i: int, action: FloatArray) -> None:
        if self.cfg.action_mode == "set":
            self.z[i] = action
        else:
            self.z[i] = np.clip(self.z[i] + self.cfg.max_step * action, -1.0, 1.0)

    def _probe_sequences(self, w: NDArray[np.complex128]) -> list[PulseSequence]:
        """Ground reference, then (target-frame pulse)^(order·r) for each repeat r: ideal P1 = 0."""
        play = Play(w)
        a, b = self.frames
        unit: list[Any] = ([VirtualZ(b)] if b else []) + [play] + ([VirtualZ(a)] if a else [])
        seqs = [PulseSequence((), name="ground")]
        for r in self.cfg.probe_repeats:
            seqs.append(PulseSequence(tuple(unit * (self.order * r)), name=f"repeat_{r}"))
        return seqs

    def _observe(self, step_idx: list[int], reset_idx: list[int]) -> tuple[
            FloatArray, FloatArray, NDArray[np.bool_], list[dict[str, Any]]]:
        cfg = self.cfg
        idx = step_idx + reset_idx
        w = self.waveforms(idx)
        need_truth = cfg.report_truth or cfg.reward_mode == "privileged"
        truth = true_metrics_devices([self.devices[i] for i in idx], w, cfg.target) if need_truth else None
        n = len(idx)
        shots_step = 0
        if cfg.reward_mode == "measured":
            seqs = [self._probe_sequences(w[j]) for j in range(n)]
            counts = run_on_devices([self.devices[i] for i in idx], seqs, [cfg.shots_per_probe] * n)
            p1 = np.stack([c[:, 1] / cfg.shots_per_probe for c in counts])
            shots_step = cfg.shots_per_probe * len(seqs[0])
            reps = np.array([self.order * r for r in cfg.probe_repeats], dtype=np.float64)
            excess = np.clip(p1[:, 1:] - p1[:, :1], 0.0, 1.0)
            # P1 ≈ N²·φ²/4 for N gates with a coherent error φ per gate, and 1 − F = φ²/6:
            # least squares of P1 on N² gives φ²/4, so 1 − F ≈ (2/3)·slope.
            err = (2.0 / 3.0) * (excess @ reps**2) / np.sum(reps**4)
        else:
            assert truth is not None
            err = 1.0 - truth["fidelity"]
            p1 = np.zeros((n, 0))
        score = -np.log10(np.maximum(err, 0.0) + cfg.error_floor)
        obs = np.zeros((n, self.observation_space.shape[0]))
        rew = np.zeros(n)
        infos = []
        for j, i in enumerate(idx):
            self.shots_used[i] += shots_step
            if j < len(step_idx):  # a reset returns no reward
                rew[j] = score[j] - cfg.shot_cost * shots_step / 1000.0
            obs[j] = np.concatenate([self.z[i], [score[j] / -math.log10(cfg.error_floor)], p1[j]])
            self.history[i].append(p1[j] if p1.shape[1] else np.array([score[j] / 6.0]))
            info: dict[str, Any] = {
                "shots_used": int(self.shots_used[i]), "device_time_s": float(self.devices[i].clock_s),
                "waveform": w[j].copy(), "dt_s": self.dt_s, "error_estimate": float(err[j]),
            }
            if truth is not None and cfg.report_truth:
                for key, v in truth.items():
                    info[key] = float(v[j])
            infos.append(info)
        lo, hi = self.observation_space.low, self.observation_space.high
        return np.clip(obs, lo, hi), rew, np.zeros(n, dtype=np.bool_), infos

    def render_copy(self, i: int) -> NDArray[np.uint8]:
        from .render import render_calibration

        labels = (["ground"] + [f"repeat_{r}" for r in self.cfg.probe_repeats]
                  if self.cfg.reward_mode == "measured" else ["score/6"])
        return render_calibration(self.waveforms([i])[0], self.dt_s, self.history[i], labels,
                                  title=f"PulseShaping {self.cfg.target} copy {i}")


class PulseShapingEnv(SingleCoreEnv):
    """Shape a short pulse (DRAG base + smooth sine basis) for a target gate.

    ## Description
    On the short-gate preset (6 ns, α/2π = −200 MHz, 0.5 ns grid) a textbook DRAG pulse
    leaks and misses the target by ~1e-2; the agent reshapes the pulse to reach the
    target gate (``target``: X, SX or H, with free virtual-Z frames) with low leakage.

    ## Action Space
    ``Box(-1, 1, (3 + 2·n_basis,), float32)`` over coordinates z: relative amplitude
    (× ``amplitude_range``), relative β (× ``beta_range``), detuning
    (× ``detuning_range_hz``), then ``n_basis`` sine coefficients on I and on Q
    (× ``coeff_range``, full-scale units). ``action_mode="set"``: z = action;
    ``"delta"``: z += ``max_step``·action, clipped to [−1, 1]. NaN/inf or out-of-range
    actions raise ``ValueError``.

    ## Observation Space
    ``Box(float32)``: z, the current score −log10(error + floor) / −log10(floor), and in
    ``reward_mode="measured"`` the measured excited fractions of the probes.

    ## Rewards
    ``reward_mode="privileged"`` USES SIMULATION KNOWLEDGE: −log10(1 − F + floor) with F the
    open-system average gate fidelity on the qubit subspace with virtual Z (a leaking
    gate is not unitary on the subspace, so leakage lowers F). ``"measured"`` is usable
    on hardware: the error is estimated from shots of the pulse repeated order·r times
    (ideal identity) against a ground reference (P1 ≈ N²φ²/4 → 1 − F ≈ (2/3)·slope),
    minus ``shot_cost`` per 1000 shots.

    ## Starting State
    The textbook DRAG pulse of the nominal (preset) device plus a small random sine
    perturbation; ``reset(options={"device_params": ..., "initial_z": ...})`` fixes it.

    ## Episode End
    Never terminates; truncation by ``TimeLimit`` (registered ``max_episode_steps``).

    ## Arguments
    device, target, gate_duration_s, open_system, n_basis, action_mode, reward_mode,
    amplitude_range, beta_range, detuning_range_hz, coeff_range, max_step, shots_per_probe,
    probe_repeats, shot_cost, error_floor, report_truth, render_mode
    (``PulseShapingConfig``). ``info``: fidelity, fidelity_raw, leakage, coherence_limit
    (truth), error_estimate, shots_used, device_time_s, waveform, dt_s.

    ## Version History
    - v0: initial version.
    """

    core_class = PulseShapingCore


class PulseShapingVectorEnv(BatchedVectorEnv):
    """N copies of ``PulseShapingEnv`` sharing one propagator call per step."""

    core_class = PulseShapingCore
