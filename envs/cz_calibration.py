"""CZCalibration-v0: recover a flux-pulse CZ on a tunable pair from a miscalibrated start.

## Description

A two-qubit device of ``two_transmons_cz`` (or a draw of a ``MultiQubitSampler`` around
it): q0 fixed, q1 flux-tunable. The gate is ``envs.cz_calibration_core``'s: a flat-top
flux pulse with raised-cosine ramps on ``flux:q1`` that takes |11⟩ once around the
|11⟩↔|02⟩ exchange, followed by a virtual Z on each qubit (docs/cz_calibration.md). Each
step moves the four knobs, then measures one round of the eight probes of
``cz_calibration_core.PROBE_NAMES`` on the device (all shots counted, shot clock running).

## Action Space

``Box(-1, 1, (4,), float32)``: increments of flux amplitude (× ``max_step_amplitude_phi0``),
pulse length (× ``max_step_length_s``), and the two virtual-Z phases (× ``max_step_phase_rad``).
The amplitude is kept in [0, ``flux.max_offset``] of the device's model and the length in
``length_range_s``.

## Observation Space

``Box(-1, 1, (28,), float32)`` from measurements and the env's own settings only:
the six Ramsey excited fractions and the |11⟩ probes' four outcome fractions after 1 and
after ``repeats`` CZs, each as 2p − 1 (14); the reference-corrected phases read from them
(q1's, the conditional one, q0's) and the reference's three phases, all over π, and its
|11⟩ fraction as 2p − 1 (7); the amplitude and length mapped onto [−1, 1]
(2); cos and sin of the two phases (4); the fraction of the shot budget left (1).
``observation_names()`` lists them.

## Rewards

log10(e_before / e_after) of ``cz_calibration_core.estimated_error`` (measured phases and
leakage growth, never the truth), each floored at ``error_floor``.

## Starting State

The nominal gate ``nominal_params`` with uniform offsets: amplitude ± ``start_amplitude_phi0``,
length ± ``start_length_s``, both phases anywhere in (−π, π]. Then the reference Ramsey
probes without the gate (``reference_shots`` each, seven sequences, once per episode) and one round.

## Episode End

Terminated when the budget left cannot pay another round; the time limit is the
registration's ``max_episode_steps``.

## Arguments

``CZCalibrationEnv(render_mode=None, config=CZCalibrationConfig(...))`` or the config's
fields as keywords.

## Version History

- v0: first version.

``info`` holds the truth for evaluation only (``cz_calibration_core.true_metrics``:
fidelity with virtual Z, fidelity as set, leakage, conditional phase, coherence limit,
|02⟩ population; ``TRUTH_KEYS``) besides shots_used, device_time_s, estimated_error and
the parameters: after every step, or with ``info_truth="end"`` only at the episode's end
(NaN before).

Batched form: the multi-qubit device has no batched path (each device simulates its
sequences itself), so the core loops over its copies; the vector env is the same loop in
one process, with Gymnasium's vector API and the shared core.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from . import cz_calibration_core as core
from ._validation import finite, require
from .multi_qubit_device import SimulatedMultiQubitDevice
from .multi_qubit_presets import MultiQubitSampler, get_multi_qubit_preset
from .rb2q import RB2QSettings, end_of_episode_verdict
from .render import render_calibration
from .vector import BatchedCore, BatchedVectorEnv, FloatArray, InfoColumns, SingleCoreEnv

# The nominal gate on the nominal preset: the textbook baseline's result there
# (docs/cz_calibration.md), rounded; what a lab's last calibration would hand over.
NOMINAL_PARAMS: tuple[float, float, float, float] = (0.1533, 52e-9, 0.0, 0.0)
# The info entries of ``cz_calibration_core.true_metrics`` (NaN where ``info_truth`` skips them).
TRUTH_KEYS: tuple[str, ...] = ("fidelity", "fidelity_set", "leakage", "conditional_phase", "coherence_limit", "p02")
INFO_TRUTH: tuple[str, ...] = ("step", "end")


@dataclass(frozen=True)
class CZCalibrationConfig:
    """Settings of CZCalibration-v0.

    Attributes:
        preset: the multi-qubit preset (must have ``flux:q1``).
        sampler: None for the preset itself, else a ``MultiQubitSampler`` (or a mapping of
            its fields) to draw a device per episode.
        open_system: Lindblad (True) or unitary simulation.
        shot_budget: shots per episode, >= one round.
        shots_per_probe: shots of each of the eight probes per round.
        reference_shots: shots of each of the seven reference probes, run once at reset.
        repeats: CZs of the leakage-amplifying |11⟩ probe (odd, >= 3).
        nominal_params: the gate the start is drawn around (amplitude Φ0, length s, phases rad).
        start_amplitude_phi0, start_length_s: half-widths of the start's uniform offsets.
        max_step_amplitude_phi0, max_step_length_s, max_step_phase_rad: action scales.
        length_range_s: allowed pulse lengths.
        error_floor: floor of the estimated error in the reward.
        ramp_s: the flux pulse's ramp duration.
        pulse_shape: the flux pulse's shape, one of ``cz_calibration_core.CZ_SHAPES``:
            "flat_top" (the default) or "adiabatic" (Martinis–Geller, with the nominal
            preset's map and λ_2 = ``adiabatic_lambda_2``; docs/cz_calibration.md, "Adiabatic
            CZ"). The knobs keep their meaning; ``nominal_params`` stays the flat top's
            unless given (the adiabatic gate of the nominal preset is near (0.1537 Φ0,
            48 ns)).
        adiabatic_lambda_2: λ_2 of the adiabatic shape, in [-1, 1].
        verification: None (default), or ``rb2q.RB2QSettings`` (or a mapping of its fields):
            at the episode's end, interleaved two-qubit RB of the final gate puts a
            ``Verdict`` into ``info["verdict"]``; its shots are counted in ``shots_used``
            on top of ``shot_budget`` (docs/two_qubit_rb.md).
        info_truth: when ``info`` carries the simulation truth (``TRUTH_KEYS``): ``"step"``
            (default) after every step and reset; ``"end"`` only on the step that
            terminates the episode (the budget is spent; the registration's time limit is
            above the rounds a budget pays for), NaN elsewhere. The truth is
            evaluation-only and costs ~40 % of a step, so training runs use ``"end"``.
    """

    preset: str = "two_transmons_cz"
    sampler: MultiQubitSampler | Mapping[str, Any] | None = None
    open_system: bool = True
    shot_budget: int = 16_000
    shots_per_probe: int = 100
    reference_shots: int = 400
    repeats: int = 3
    nominal_params: tuple[float, float, float, float] = NOMINAL_PARAMS
    start_amplitude_phi0: float = 0.006
    start_length_s: float = 5e-9
    max_step_amplitude_phi0: float = 0.004
    max_step_length_s: float = 2e-9
    max_step_phase_rad: float = math.pi / 2
    length_range_s: tuple[float, float] = (20e-9, 80e-9)
    error_floor: float = 1e-3
    ramp_s: float = 5e-9
    pulse_shape: str = "flat_top"
    adiabatic_lambda_2: float = 0.378
    verification: RB2QSettings | Mapping[str, Any] | None = None
    info_truth: str = "step"

    def __post_init__(self) -> None:
        p = "CZCalibrationConfig"
        require(self.info_truth in INFO_TRUTH, f"{p}.info_truth", self.info_truth, f"one of {list(INFO_TRUTH)}")
        if isinstance(self.verification, Mapping):
            object.__setattr__(self, "verification", RB2QSettings.from_mapping(self.verification))
        require(self.verification is None or isinstance(self.verification, RB2QSettings), f"{p}.verification",
                self.verification, "None, an RB2QSettings or a mapping of its fields")
        preset = get_multi_qubit_preset(self.preset)
        require(core.FLUX_CHANNEL in preset.params.channels.reals, f"{p}.preset", self.preset,
                f"a preset with channel {core.FLUX_CHANNEL!r}")
        if isinstance(self.sampler, Mapping):
            object.__setattr__(self, "sampler", MultiQubitSampler(**{"preset": self.preset, **self.sampler}))
        require(self.sampler is None or isinstance(self.sampler, MultiQubitSampler), f"{p}.sampler",
                self.sampler, "None, a MultiQubitSampler or a mapping of its fields")
        for name in ("shot_budget", "shots_per_probe", "reference_shots"):
            v = getattr(self, name)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{p}.{name}", v, "an integer >= 1")
        need = 7 * self.reference_shots + self.round_shots
        require(self.shot_budget >= need, f"{p}.shot_budget", self.shot_budget,
                f">= the reference and one round, 7 · reference_shots + 8 · shots_per_probe = {need}")
        require(isinstance(self.repeats, int) and self.repeats >= 3 and self.repeats % 2 == 1,
                f"{p}.repeats", self.repeats, "an odd integer >= 3")
        require(len(self.nominal_params) == 4, f"{p}.nominal_params", self.nominal_params, "4 numbers")
        lo, hi = (finite(f"{p}.length_range_s", x) for x in self.length_range_s)
        require(5e-9 <= lo < hi <= 200e-9, f"{p}.length_range_s", self.length_range_s,
                "(low, high) with 5e-9 <= low < high <= 200e-9 s")
        for name, top in (("start_amplitude_phi0", 0.1), ("start_length_s", 20e-9),
                          ("max_step_amplitude_phi0", 0.05), ("max_step_length_s", 10e-9),
                          ("max_step_phase_rad", math.pi), ("error_floor", 0.1)):
            v = finite(f"{p}.{name}", getattr(self, name))
            require(0 <= v <= top, f"{p}.{name}", v, f"[0, {top}]")
        require(self.pulse_shape in core.CZ_SHAPES, f"{p}.pulse_shape", self.pulse_shape,
                f"one of {list(core.CZ_SHAPES)}")
        lam = finite(f"{p}.adiabatic_lambda_2", self.adiabatic_lambda_2)
        require(-1.0 <= lam <= 1.0, f"{p}.adiabatic_lambda_2", lam, "[-1, 1]")
        core.CZPulse(ramp_s=self.ramp_s, shape=self.pulse_shape, lambda_2=self.adiabatic_lambda_2)

    @property
    def round_shots(self) -> int:
        return 8 * self.shots_per_probe


def observation_names(repeats: int = 3) -> tuple[str, ...]:
    eleven = [f"eleven_{n}_p{o}" for n in (1, repeats) for o in ("00", "01", "10", "11")]
    return (*core.PROBE_NAMES[:6], *eleven, "read_phase_q1", "read_phase_cond", "read_phase_q0",
            "reference_phase_q1_c0", "reference_phase_q1_c1", "reference_phase_q0", "reference_p11", "amplitude", "length", "cos_phase_q0", "sin_phase_q0",
            "cos_phase_q1", "sin_phase_q1", "budget_left")


class CZCalibrationCore(BatchedCore):
    """N copies of CZCalibration-v0 (module docstring); each copy its own device."""

    def __init__(self, num_envs: int = 1, config: CZCalibrationConfig | None = None, **kwargs: Any) -> None:
        super().__init__(num_envs)
        if config is not None and kwargs:
            raise ValueError(f"pass config or its fields, not both (got config and {sorted(kwargs)})")
        if config is None:
            known = {f.name for f in dataclasses.fields(CZCalibrationConfig)}
            for k in kwargs:
                require(k in known, "CZCalibrationEnv keyword", k, f"one of {sorted(known)}")
            config = CZCalibrationConfig(**kwargs)
        self.cfg = config
        self.preset = get_multi_qubit_preset(config.preset)
        self.sampler = config.sampler
        self.pulse = core.CZPulse(ramp_s=config.ramp_s, dt_s=self.preset.params.channels.dt_s,
                                  shape=config.pulse_shape, lambda_2=config.adiabatic_lambda_2)
        self.gate = self.pulse
        self._max_amp = float(self.preset.params.channels.reals[core.FLUX_CHANNEL])
        n = self.num_envs
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (len(observation_names(config.repeats)),),
                                                dtype=np.float32)
        self.devices: list[SimulatedMultiQubitDevice | None] = [None] * n
        self.params = np.zeros((n, 4))
        self.shots_used = np.zeros(n, dtype=np.int64)
        self.error = np.ones(n)
        self.readings: list[core.CZReadings | None] = [None] * n
        self.offsets = np.zeros((n, 4))
        self.history: list[list[FloatArray]] = [[] for _ in range(n)]
        # Whether the info being built carries the truth (``info_truth``), per copy.
        self.truth_due = np.ones(n, dtype=np.bool_)

    def observation_names(self) -> tuple[str, ...]:
        return observation_names(self.cfg.repeats)

    # -- BatchedCore hooks ---------------------------------------------------------------------

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        rng = self.rngs[i]
        cfg = self.cfg
        dev_rng = np.random.Generator(np.random.PCG64(rng.integers(2**63)))
        if cfg.sampler is None:
            dev = self.preset.make(dev_rng, open_system=cfg.open_system)
        else:
            assert isinstance(cfg.sampler, MultiQubitSampler)
            dev = SimulatedMultiQubitDevice(cfg.sampler.sample(rng), self.preset.drift, rng=dev_rng,
                                            open_system=cfg.open_system)
        self.devices[i] = dev
        amp, length, _, _ = cfg.nominal_params
        u = rng.uniform(-1.0, 1.0, 2)
        phases = rng.uniform(-math.pi, math.pi, 2)
        self.params[i] = [amp + u[0] * cfg.start_amplitude_phi0, length + u[1] * cfg.start_length_s, *phases]
        self._clip(i)
        self.shots_used[i] = 0
        self.history[i] = []
        self.readings[i] = None
        counts = dev.run(core.reference_sequences(self.pulse), cfg.reference_shots)
        self.shots_used[i] = 7 * cfg.reference_shots
        self.offsets[i] = core.reference_offsets(counts[None])[0]

    def _clip(self, i: int) -> None:
        lo, hi = self.cfg.length_range_s
        self.params[i, 0] = np.clip(self.params[i, 0], 0.0, self._max_amp)
        self.params[i, 1] = np.clip(self.params[i, 1], lo, hi)
        self.params[i, 2:] = np.angle(np.exp(1j * self.params[i, 2:]))

    def _apply_action(self, i: int, action: FloatArray) -> None:
        cfg = self.cfg
        scale = np.array([cfg.max_step_amplitude_phi0, cfg.max_step_length_s,
                          cfg.max_step_phase_rad, cfg.max_step_phase_rad])
        self.params[i] += scale * action
        self._clip(i)

    def ends_after_step(self, idx: list[int]) -> NDArray[np.bool_]:
        return self.cfg.shot_budget - (self.shots_used[idx] + self.cfg.round_shots) < self.cfg.round_shots

    def _measure(self, i: int) -> core.CZReadings:
        dev = self.devices[i]
        assert dev is not None
        seqs = core.probe_sequences(self.pulse, self.params[i], self.cfg.repeats)
        counts = dev.run(seqs, self.cfg.shots_per_probe)
        self.shots_used[i] += self.cfg.round_shots
        r = core.analyse(counts[None], repeats=self.cfg.repeats, offsets=self.offsets[i])
        self.readings[i] = r
        self.history[i].append(r.p1[0])
        return r

    def _obs(self, i: int) -> FloatArray:
        r = self.readings[i]
        assert r is not None
        lo, hi = self.cfg.length_range_s
        amp, length, ph0, ph1 = self.params[i]
        left = 1.0 - self.shots_used[i] / self.cfg.shot_budget
        out = np.concatenate([
            2.0 * r.p1[0] - 1.0, 2.0 * r.eleven[0].reshape(-1) - 1.0,
            np.array([r.target_phase[0], r.conditional_phase[0], r.control_phase[0]]) / math.pi,
            self.offsets[i, :3] / math.pi, [2.0 * self.offsets[i, 3] - 1.0],
            [2.0 * amp / self._max_amp - 1.0, 2.0 * (length - lo) / (hi - lo) - 1.0,
             math.cos(ph0), math.sin(ph0), math.cos(ph1), math.sin(ph1), 2.0 * left - 1.0],
        ])
        return np.clip(out, -1.0, 1.0)

    def _info(self, i: int) -> dict[str, Any]:
        dev = self.devices[i]
        assert dev is not None and self.readings[i] is not None
        truth = (core.true_metrics(dev, self.pulse, self.params[i]) if self.truth_due[i]
                 else dict.fromkeys(TRUTH_KEYS, math.nan))
        r = self.readings[i]
        assert r is not None
        return {
            **truth,
            "shots_used": int(self.shots_used[i]),
            "device_time_s": float(dev.clock_s),
            "estimated_error": float(r.estimated_error[0]),
            "measured_conditional_phase": float(r.conditional_phase[0]),
            "params": self.params[i].copy(),
            "waveform": self._padded_waveform(i),
            "dt_s": float(self.pulse.dt_s),
        }

    def _padded_waveform(self, i: int) -> NDArray[np.complex128]:
        """The played flux samples, zero-padded to the longest allowed pulse: one shape for
        every copy and step, as vector infos need (the device plays the unpadded ones)."""
        w = self.pulse.waveform(*self.params[i, :2])
        n = math.ceil(self.cfg.length_range_s[1] / self.pulse.dt_s - 1e-9) + self.pulse.settle_samples
        out = np.zeros(n, dtype=np.complex128)
        out[: w.size] = w
        return out

    def _observe(self, step_idx: list[int], reset_idx: list[int]
                 ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], Sequence[dict[str, Any]]]:
        order = step_idx + reset_idx
        floor = self.cfg.error_floor
        obs = np.zeros((len(order), self.observation_space.shape[0]))
        rew = np.zeros(len(order))
        term = np.zeros(len(order), dtype=np.bool_)
        infos: list[dict[str, Any]] = []
        for j, i in enumerate(order):
            before = self.error[i]
            r = self._measure(i)
            self.error[i] = float(r.estimated_error[0])
            if j < len(step_idx):
                rew[j] = math.log10(max(before, floor) / max(self.error[i], floor))
                term[j] = self.cfg.shot_budget - self.shots_used[i] < self.cfg.round_shots
            obs[j] = self._obs(i)
            ending = self.cfg.verification is not None and j < len(step_idx) and bool(term[j])
            verdict = self._verdict(i) if ending else None
            self.truth_due[i] = self.cfg.info_truth == "step" or (j < len(step_idx) and bool(term[j]))
            info = self._info(i)
            if self.cfg.verification is not None:
                info["verdict"] = verdict
                info["verification_shots"] = 0 if verdict is None else verdict.shots_used
            infos.append(info)
        return obs, rew, term, InfoColumns({k: np.asarray([d[k] for d in infos]) for k in infos[0]})

    def _verdict(self, i: int) -> Any:
        """Interleaved RB of copy ``i``'s final gate (flux pulse, then its two frame updates)."""
        dev, s = self.devices[i], self.cfg.verification
        assert dev is not None and isinstance(s, RB2QSettings)
        v = end_of_episode_verdict(dev, "CZ", core._gate_ops(self.pulse, self.params[i]), s, self.preset.params.model)
        self.shots_used[i] += v.shots_used
        return v

    def render_copy(self, i: int) -> NDArray[np.uint8]:
        w = self.pulse.waveform(*self.params[i, :2]).astype(np.complex128)
        return render_calibration(w, self.pulse.dt_s, self.history[i], core.PROBE_NAMES[:6],
                                  title=f"CZ: flux {self.params[i, 0]:.4f} Φ0, {self.params[i, 1] * 1e9:.2f} ns")


class CZCalibrationEnv(SingleCoreEnv):
    """pulsecal/CZCalibration-v0 (module docstring)."""

    core_class = CZCalibrationCore


class CZCalibrationVectorEnv(BatchedVectorEnv):
    """pulsecal/CZCalibration-v0, N copies over one core."""

    core_class = CZCalibrationCore


__all__ = ["INFO_TRUTH", "NOMINAL_PARAMS", "TRUTH_KEYS", "CZCalibrationConfig", "CZCalibrationCore", "CZCalibrationEnv",
           "CZCalibrationVectorEnv", "observation_names"]
