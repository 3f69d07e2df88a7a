"""The batched core of the PulseShaping environments, their settings and device samplers.

``PulseShapingCore`` shapes a short pulse (a DRAG start plus smooth basis coordinates) for
a target gate on N simulated devices; ``ShapingDeviceSampler`` draws the devices of
PulseShaping-v1 around ``transmon_short``, and ``held_out_shaping_devices`` fixes a set of
them for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from . import contract
from ._validation import finite, require
from .calibration_task import true_metrics_devices
from .drag import DragGate, nominal_params
from .presets import DeviceSampler, get_preset
from .protocol import Play, PulseSequence, VirtualZ, run_on_devices
from .pulses import LowPass, sine_basis
from .simulated_device import DeviceParams, SimulatedDevice
from .vector import BatchedCore, FloatArray

# Target -> (area relative to π, frames (a, b) with target = Z(a)·pulse·Z(b), order k with
# target^k = I). H = Rz(π/2)·Rx(π/2)·Rz(π/2) up to a global phase.
TARGETS: dict[str, tuple[float, tuple[float, float], int]] = {
    "X": (1.0, (0.0, 0.0), 2),
    "SX": (0.5, (0.0, 0.0), 4),
    "H": (0.5, (math.pi / 2, math.pi / 2), 2),
}



@dataclass(frozen=True)
class ShapingDeviceSampler:
    """Random devices around ``transmon_short`` for pulse shaping (0.5 ns grid).

    The defaults are the training population of PulseShaping-v1: α/2π −320…−160 MHz
    (a policy does not extrapolate in α: trained on −240…−160 MHz it reached 3e-3 at
    −280 MHz, worse than DRAG; below about −160 MHz the DRAG + 4-sine basis itself
    cannot reach 1e-3 at 6 ns), AWG rise time up to 0.8 ns. ``HELD_OUT_SAMPLER`` is
    the fixed evaluation population.

    ``base`` draws the transmon, amplitude error and readout (``DeviceSampler``: uniform,
    T1 log-uniform, T2 as a fraction of 2·T1); ``rise_time_s`` adds an AWG low-pass of a
    uniform 10–90 % rise time (0: ideal AWG). Draws happen in a fixed order, so a seed
    fixes the device.
    """

    base: DeviceSampler = field(default_factory=lambda: DeviceSampler(
        anharmonicity_hz=(-320e6, -160e6), rabi_max_hz=(320e6, 480e6), t1_s=(50e-6, 200e-6),
        t2_fraction=(0.5, 1.0), amplitude_error=(-0.05, 0.05), detuning_hz=(-0.5e6, 0.5e6),
        p1_given_0=(0.0, 0.0), p0_given_1=(0.0, 0.0), dt_s=0.5e-9,
    ))
    rise_time_s: tuple[float, float] = (0.0, 0.8e-9)

    def __post_init__(self) -> None:
        if isinstance(self.base, Mapping):
            # From a config file: DeviceSampler ranges as a mapping of (low, high) lists.
            object.__setattr__(self, "base", DeviceSampler(**_ranges(self.base)))
        require(isinstance(self.base, DeviceSampler), "ShapingDeviceSampler.base", self.base,
                "a DeviceSampler or a mapping of its fields")
        object.__setattr__(self, "rise_time_s", tuple(self.rise_time_s))
        r = self.rise_time_s
        require(len(r) == 2 and 0 <= finite("rise_time_s[0]", r[0]) <= finite("rise_time_s[1]", r[1]) <= 1e-6,
                "ShapingDeviceSampler.rise_time_s", r, "(low, high) with 0 <= low <= high <= 1e-6 s")

    def sample(self, rng: np.random.Generator) -> DeviceParams:
        params = self.base.sample(rng)
        rise = self.rise_time_s[0] + (self.rise_time_s[1] - self.rise_time_s[0]) * float(rng.random())
        return params.replace(distortion=LowPass(rise) if rise > 0 else None)


def _ranges(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in fields.items()}


def shaping_sampler(spec: ShapingDeviceSampler | Mapping[str, Any]) -> ShapingDeviceSampler:
    """A ``ShapingDeviceSampler`` from itself or from a config mapping
    ``{base: {DeviceSampler field: [low, high], ...}, rise_time_s: [low, high]}``; fields
    left out keep the PulseShaping-v1 training defaults."""
    if isinstance(spec, ShapingDeviceSampler):
        return spec
    require(isinstance(spec, Mapping) and set(spec) <= {"base", "rise_time_s"}, "sampler", spec,
            "a ShapingDeviceSampler or a mapping with keys 'base' and/or 'rise_time_s'")
    default = ShapingDeviceSampler()
    base = {k: getattr(default.base, k) for k in default.base.__dataclass_fields__}
    base.update(_ranges(spec.get("base") or {}))
    return ShapingDeviceSampler(base=DeviceSampler(**base),
                                rise_time_s=tuple(spec.get("rise_time_s", default.rise_time_s)))


# The evaluation population is fixed (α/2π −240…−160 MHz, rise time up to 0.5 ns): never
# widened or narrowed after looking at results.
HELD_OUT_SAMPLER = ShapingDeviceSampler(
    base=DeviceSampler(
        anharmonicity_hz=(-240e6, -160e6), rabi_max_hz=(320e6, 480e6), t1_s=(50e-6, 200e-6),
        t2_fraction=(0.5, 1.0), amplitude_error=(-0.05, 0.05), detuning_hz=(-0.5e6, 0.5e6),
        p1_given_0=(0.0, 0.0), p0_given_1=(0.0, 0.0), dt_s=0.5e-9,
    ),
    rise_time_s=(0.0, 0.5e-9),
)


# The realistic held-out population: the anharmonicity range of real transmons down to
# −150 MHz (where a 6 ns X is hardest), coherence from T1 = 10 µs and T2 = 0.1·T1 up,
# ±15 % amplitude error, ±2.5 MHz detuning; the drive ceiling of the short preset, whose
# 6 ns X needs it. Drawn from its own seed stream (key 78), so no device is shared with the
# training sampler or with ``HELD_OUT_SAMPLER``.
REALISTIC_HELD_OUT_SAMPLER = ShapingDeviceSampler(
    base=DeviceSampler(
        anharmonicity_hz=(-400e6, -150e6), rabi_max_hz=(320e6, 480e6), t1_s=(10e-6, 300e-6),
        t2_fraction=(0.05, 1.0), amplitude_error=(-0.15, 0.15), detuning_hz=(-2.5e6, 2.5e6),
        p1_given_0=(0.0, 0.0), p0_given_1=(0.0, 0.0), dt_s=0.5e-9,
    ),
    rise_time_s=(0.0, 0.5e-9),
)


def realistic_shaping_devices(n: int, seed: int = 12345,
                              sampler: ShapingDeviceSampler | Mapping[str, Any] | None = None
                              ) -> tuple[DeviceParams, ...]:
    """A fixed, seeded population of realistic pulse-shaping devices (device i depends on
    (seed, i) only); ``REALISTIC_HELD_OUT_SAMPLER`` unless ``sampler`` (a sampler or a
    mapping of its ranges, as ``shaping_sampler`` takes) is given."""
    require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, "n", n, "an integer >= 1")
    s = REALISTIC_HELD_OUT_SAMPLER if sampler is None else shaping_sampler(sampler)
    return tuple(s.sample(np.random.default_rng([seed, i, 78])) for i in range(n))


def held_out_shaping_devices(n: int, seed: int = 12345,
                             sampler: ShapingDeviceSampler | None = None) -> tuple[DeviceParams, ...]:
    """A fixed, seeded population of pulse-shaping devices (device i depends on (seed, i) only);
    ``HELD_OUT_SAMPLER`` unless ``sampler`` is given."""
    require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, "n", n, "an integer >= 1")
    s = HELD_OUT_SAMPLER if sampler is None else sampler
    return tuple(s.sample(np.random.default_rng([seed, i, 77])) for i in range(n))


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
    randomize_device: bool = False
    sampler: ShapingDeviceSampler | None = None
    characterised: bool = False
    # Relative Rabi-rate and anharmonicity errors, detuning error (Hz), relative rise-time error.
    characterisation_error: tuple[float, float, float, float] = (0.003, 0.001, 10e3, 0.05)

    def __post_init__(self) -> None:
        get_preset(self.device)
        if isinstance(self.sampler, Mapping):
            object.__setattr__(self, "sampler", shaping_sampler(self.sampler))
        require(self.sampler is None or isinstance(self.sampler, ShapingDeviceSampler), "sampler",
                self.sampler, "a ShapingDeviceSampler, a mapping of its fields, or None")
        ce = tuple(float(x) for x in self.characterisation_error)
        require(len(ce) == 4 and all(math.isfinite(x) and x >= 0 for x in ce), "characterisation_error",
                self.characterisation_error, "4 finite values >= 0 (Rabi rel., α rel., detuning Hz, rise rel.)")
        object.__setattr__(self, "characterisation_error", ce)
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

    config_class: type[PulseShapingConfig] = PulseShapingConfig
    N_FEATURES = 4  # characterised device: α, Ω_R, rise time, detuning (v1 observation)

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs)
        self.cfg = cfg = self.config_class(**kwargs)
        self.preset = get_preset(cfg.device)
        self.sampler = cfg.sampler if cfg.sampler is not None else (
            ShapingDeviceSampler() if cfg.randomize_device else None)
        nominal = self.preset.params.effective_transmon
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
        self.ref_amp_nominal = nominal_params(nominal, self.gate).amplitude
        self.features = np.zeros((self.num_envs, self.N_FEATURES if cfg.characterised else 0))
        self.shots_used = np.zeros(self.num_envs, dtype=np.int64)
        self.history: list[list[FloatArray]] = [[] for _ in range(self.num_envs)]
        n_probe = len(cfg.probe_repeats) + 1 if cfg.reward_mode == "measured" else 0
        self.n_probe = n_probe
        nf = self.features.shape[1]
        low = np.concatenate([-np.ones(self.dim), [0.0], np.zeros(n_probe), -5 * np.ones(nf)]).astype(np.float32)
        high = np.concatenate([np.ones(self.dim), [1.0], np.ones(n_probe), 5 * np.ones(nf)]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.dim,), dtype=np.float32)

    def observation_names(self) -> tuple[str, ...]:
        """One name per observation entry (``contract.EnvDescription.observation_names``)."""
        return contract.pulse_shaping_observation_names(self)

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
            # Characterised: the shape scales with the start's amplitude, so the same z means
            # the same relative shape on a weaker or stronger drive (v0: full-scale units).
            c = cfg.coeff_range * (ref[:, 0] / self.ref_amp_nominal if cfg.characterised else np.ones(len(idx)))
            iq = iq + c[:, None] * (z[:, 3:3 + k] @ self.basis + 1j * (z[:, 3 + k:] @ self.basis))
        w = iq * np.exp(-2j * math.pi * det[:, None] * self.x[None])
        mag = np.abs(w)
        return np.where(mag > 1.0, w / np.maximum(mag, 1.0), w)

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        unknown = set(options) - {"device_params", "initial_z"}
        if unknown:
            raise ValueError(f"reset options {sorted(unknown)} are unknown: allowed 'device_params', 'initial_z'")
        rng = self.rngs[i]
        cfg = self.cfg
        drawn = self.sampler.sample(rng) if self.sampler is not None else self.preset.params
        params = options.get("device_params", drawn)
        if not isinstance(params, DeviceParams):
            raise TypeError(f"options['device_params'] is {type(params).__name__}: allowed DeviceParams")
        self.devices[i] = SimulatedDevice(params, None, rng=np.random.default_rng(int(rng.integers(2**63))),
                                          open_system=cfg.open_system)
        nominal = self.preset.params.effective_transmon
        if cfg.characterised:
            # The designer knows this device as the lab measured it (spectroscopy, Rabi rate,
            # Ramsey, a scope trace of the AWG step), with those measurements' errors.
            e = rng.normal(size=4) * np.asarray(cfg.characterisation_error)
            true = params.effective_transmon
            rise = params.distortion.rise_time_s if params.distortion is not None else 0.0
            meas = true.replace(rabi_max_hz=true.rabi_max_hz * (1 + e[0]),
                                anharmonicity_hz=true.anharmonicity_hz * (1 + e[1]),
                                detuning_hz=true.detuning_hz + e[2])
            self.ref[i] = nominal_params(meas, self.gate).as_array()[:3]
            self.features[i] = [(meas.anharmonicity_hz / nominal.anharmonicity_hz - 1) / 0.2,
                                (meas.rabi_max_hz / nominal.rabi_max_hz - 1) / 0.2,
                                rise * (1 + e[3]) / 0.5e-9, meas.detuning_hz / 0.5e6]
        else:
            # The designer knows the nominal device (preset), not the truth of this one.
            self.ref[i] = nominal_params(nominal, self.gate).as_array()[:3]
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
            obs[j] = np.concatenate([self.z[i], [score[j] / -math.log10(cfg.error_floor)], p1[j], self.features[i]])
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
