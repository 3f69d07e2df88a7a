"""DriftTracking-v0/v1: keep a gate calibrated on a device that drifts over hours.

v1 (``DriftTrackingV1Env``) is the tracking-friendly redesign: the probe runs at the end
of each interval, just before the next decision (so a correction never acts on a stale
reading), the observation carries per-family estimates of the needed correction (read
from the probes alone) and the time since each family was last probed, and the deep
Ramsey probe is long enough to resolve kHz of frequency drift with tens of shots."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from . import contract
from .calibration import (
    FAMILIES,
    PARAMETER_NAMES,
    Probe,
    analyse,
    default_probes,
    finite,
    require,
    run_on_devices,
)
from .gate_calibration import DragCalibrationCore, GateCalibrationConfig
from .vector import BatchedVectorEnv, FloatArray, SingleCoreEnv

_PROBE_SETS = ("all", *FAMILIES)


@dataclass(frozen=True)
class DriftTrackingConfig(GateCalibrationConfig):
    """Validated constructor arguments of ``DriftTrackingEnv`` (see its docstring).

    Inherits the gate, device and parameter fields of ``GateCalibrationConfig`` with
    drift-tracking defaults (a drifting preset, a start near calibration, small steps).
    """

    device: str = "transmon_drifting"
    drift: bool = True
    probes: tuple[Probe, ...] = field(default_factory=default_probes)
    miscalibration: tuple[float, float, float, float] = (0.005, 0.05, 20e3, 0.0)
    max_step: tuple[float, float, float, float] = (0.01, 0.1, 50e3, 0.05)
    shot_budget: int = 10**9
    shot_cost: float = 0.01
    decision_interval_s: float = 600.0
    episode_s: float = 24 * 3600.0
    shot_levels: tuple[int, ...] = (0, 16, 64, 256)
    circuit_time_s: float = 1e-6
    error_scale: float = 1e3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(finite("decision_interval_s", self.decision_interval_s) > 0, "decision_interval_s",
                self.decision_interval_s, "> 0 s")
        require(finite("episode_s", self.episode_s) >= self.decision_interval_s, "episode_s",
                self.episode_s, ">= decision_interval_s")
        levels = tuple(self.shot_levels)
        require(len(levels) >= 1 and all(isinstance(s, int) and 0 <= s <= 10**6 for s in levels),
                "shot_levels", self.shot_levels, "ints in [0, 1e6] (shots per probe)")
        object.__setattr__(self, "shot_levels", levels)
        require(finite("circuit_time_s", self.circuit_time_s) >= 0, "circuit_time_s", self.circuit_time_s, ">= 0 s")
        require(finite("error_scale", self.error_scale) > 0, "error_scale", self.error_scale, "> 0")


def _level(a: float, n: int) -> int:
    """Map a ∈ [−1, 1] to one of n equal bins."""
    return min(int((a + 1.0) * 0.5 * n), n - 1)


class DriftTrackingCore(DragCalibrationCore):
    """Batched core of ``DriftTrackingEnv``."""

    config_class = DriftTrackingConfig

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        k, p = len(cfg.probes), len(cfg.parameters)
        w = cfg.window * max(1.0, max(cfg.miscalibration[i] / cfg.max_step[i] for i in cfg._param_index()))
        low = np.concatenate([np.zeros(2 * k), -w * np.ones(p), [0.0]]).astype(np.float32)
        high = np.concatenate([np.ones(2 * k), w * np.ones(p), [1.0]]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2 + p,), dtype=np.float32)
        self.age = np.ones((self.num_envs, k))
        self.choice = np.zeros((self.num_envs, 2), dtype=np.int64)  # shot level, probe set
        self.masks = np.array([[s == "all" or pr.kind == s for pr in cfg.probes] for s in _PROBE_SETS])

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        super()._reset_copy(i, options)
        self.last_p1[i] = 0.5
        self.age[i] = 1.0
        self.choice[i] = 0

    def _apply_action(self, i: int, action: FloatArray) -> None:
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        self.choice[i] = (_level(float(action[0]), len(cfg.shot_levels)), _level(float(action[1]), len(_PROBE_SETS)))
        self._apply_params(i, action[2:])

    def gate_error(self, idx: list[int]) -> tuple[FloatArray, dict[str, FloatArray], NDArray[np.complex128]]:
        """True error per copy: gate infidelity (virtual Z) + the frame error a circuit of
        ``circuit_time_s`` suffers from the residual detuning, (2/3)·sin²(π·(δ − Δ)·t)."""
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        waves, truth = self.truth(idx, force=True)
        if truth is None:
            raise RuntimeError("DriftTracking rewards the true error: it needs simulated devices")
        resid = np.array([self.devices[i].current_transmon().detuning_hz  # type: ignore[attr-defined]
                          - self.params[i, 2] for i in idx])
        frame = (2.0 / 3.0) * np.sin(math.pi * resid * cfg.circuit_time_s) ** 2
        return (1.0 - truth["fidelity"]) + frame, truth, waves

    def _observe(self, step_idx: list[int], reset_idx: list[int]) -> tuple[
            FloatArray, FloatArray, NDArray[np.bool_], list[dict[str, Any]]]:
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        idx = step_idx + reset_idx
        n, ns = len(idx), len(step_idx)
        err0, _, _ = self.gate_error(idx)
        # Probes of the stepping copies: the chosen subset at the chosen shot level.
        shots = [cfg.shot_levels[self.choice[i, 0]] for i in step_idx]
        subsets = [np.flatnonzero(self.masks[self.choice[i, 1]]) for i in step_idx]
        seqs_all = self.task.sequences(self.params[step_idx]) if step_idx else []
        seqs = [[seqs_all[j][k] for k in subsets[j]] for j in range(ns)]
        counts = run_on_devices([self.devices[i] for i in step_idx], seqs, shots)
        spent = np.zeros(n)
        for j, i in enumerate(step_idx):
            self.age[i] = np.minimum(self.age[i] + 0.1, 1.0)
            if shots[j] > 0:
                self.last_p1[i, subsets[j]] = counts[j][:, 1] / shots[j]
                self.age[i, subsets[j]] = 0.0
                spent[j] = shots[j] * len(subsets[j])
                self.task.shots_used[i] += int(spent[j])
            self.devices[i].advance(cfg.decision_interval_s)
            self.history[i].append(self.last_p1[i].copy())
        err1, truth1, waves = self.gate_error(idx)
        est = analyse(self.last_p1[idx], cfg.probes, self.gate.duration_s).infidelity
        obs = np.zeros((n, self.observation_space.shape[0]))
        rew = np.zeros(n)
        term = np.zeros(n, dtype=np.bool_)
        infos = []
        for j, i in enumerate(idx):
            t = self.devices[i].clock_s
            if j < ns:
                # Trapezoid over the interval: the error right after the correction and at
                # the end of the user workload.
                rew[j] = -cfg.error_scale * 0.5 * (err0[j] + err1[j]) - cfg.shot_cost * spent[j] / 1000.0
            term[j] = t + cfg.decision_interval_s > cfg.episode_s + 1e-9
            obs[j] = np.concatenate([self.last_p1[i], self.age[i], self.normalised_params(i),
                                     [min(t / cfg.episode_s, 1.0)]])
            info = self.base_info(i, truth1 if cfg.report_truth else None, j, waves[j])
            info["gate_error"] = float(err1[j])
            info["interval_error"] = float(0.5 * (err0[j] + err1[j]))
            info["infidelity_estimate"] = float(est[j])
            infos.append(info)
        lo, hi = self.observation_space.low, self.observation_space.high
        return np.clip(obs, lo, hi), rew, term, infos


class DriftTrackingEnv(SingleCoreEnv):
    """Keep a DRAG gate calibrated on a device that drifts over hours of device time.

    ## Description
    The device (``transmon_drifting`` by default: frequency and amplitude random walks,
    T1 telegraph switching) drifts along its clock. At each decision the agent chooses a
    probe (which sequences and how many shots) and a parameter correction; the device
    clock advances with the probe's shots and then by ``decision_interval_s`` of user
    workload (10 min by default). An episode spans ``episode_s`` (24 h) of device time.

    ## Action Space
    ``Box(-1, 1, (2 + P,), float32)``: a[0] picks a shot level from ``shot_levels``
    (shots per probe; 0 = do not measure) in equal bins, a[1] picks the probe set (all,
    amplitude, drag, ramsey), a[2:] moves the P calibrated parameters by ``max_step``
    units (as in GateCalibration). NaN/inf or out-of-range actions raise ``ValueError``.

    ## Observation Space
    ``Box(float32)`` of 2K + P + 1: the last measured excited fraction of each probe
    (0.5 before any), the age of each measurement (0 = this step, +0.1 per decision,
    capped at 1), the parameters as (value − start)/max_step, and the elapsed fraction
    of the episode.

    ## Rewards
    −``error_scale`` × the interval's true error (trapezoid of the error after the
    correction and at the end of the interval) − ``shot_cost`` per 1000 shots. The true
    error is the gate's infidelity (virtual Z, open system) plus the frame error a
    circuit of ``circuit_time_s`` suffers from the residual detuning,
    (2/3)·sin²(π·(δ − Δ)·t): frequency drift matters at circuit level, not within one
    gate. The reward uses simulation truth (this env is a simulation benchmark of a
    tracking policy); ``info["infidelity_estimate"]`` is the measurement-only estimate.

    ## Starting State
    A freshly calibrated gate: textbook parameters with a small miscalibration
    (``miscalibration``), on a device at clock 0. Reset options as in GateCalibration.

    ## Episode End
    Terminated when the next decision would pass ``episode_s``; ``TimeLimit`` truncation
    as registered (144 steps = 24 h at 10 min).

    ## Arguments
    decision_interval_s, episode_s, shot_levels, circuit_time_s, error_scale plus the
    fields of ``GateCalibrationConfig`` (``DriftTrackingConfig``), render_mode. ``info``:
    fidelity, fidelity_raw, leakage, coherence_limit, gate_error, interval_error (truth),
    infidelity_estimate, shots_used, device_time_s, waveform, dt_s, params.

    ## Version History
    - v0: initial version.
    """

    core_class = DriftTrackingCore

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.drift_tracking_state(self.core, index, "pulsecal/DriftTracking-v0")


class DriftTrackingVectorEnv(BatchedVectorEnv):
    """N copies of ``DriftTrackingEnv`` sharing device calls per step."""

    core_class = DriftTrackingCore

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.drift_tracking_state(self.core, index, "pulsecal/DriftTracking-v0")


# -- v1 -----------------------------------------------------------------------------------------


def tracking_probes() -> tuple[Probe, ...]:
    """Probes of DriftTracking-v1: amplitude (depths 4, 24) and Ramsey (1 µs, 6 µs).

    Frequency drift dominates the circuit-level error, so the Ramsey pair is deep: at 6 µs
    64 shots resolve ~3.5 kHz (frame error ~8e-5 for a 1 µs circuit), and the 1 µs probe
    (unambiguous over ±250 kHz) unwraps it. β does not drift in the drifting preset, so
    v1 leaves out the DRAG family and does not calibrate β.
    """
    return (Probe("amplitude", 4), Probe("amplitude", 24),
            Probe("ramsey", delay_s=1e-6), Probe("ramsey", delay_s=6e-6))


# Parameter each probe family corrects, and the probe sets of v1 (a[1] in equal bins).
_FAMILY_PARAM = {"amplitude": "amplitude", "ramsey": "detuning_hz"}
_V1_PROBE_SETS = ("ramsey_deep", "ramsey", "amplitude", "all")


@dataclass(frozen=True)
class DriftTrackingV1Config(DriftTrackingConfig):
    """Validated constructor arguments of ``DriftTrackingV1Env`` (see its docstring)."""

    probes: tuple[Probe, ...] = field(default_factory=tracking_probes)
    parameters: tuple[str, ...] = ("amplitude", "detuning_hz")
    shot_levels: tuple[int, ...] = (0, 32, 64, 128)
    shot_cost: float = 1.0
    # 20 kHz per unit: the detuning drifts ~8 kHz per 10 min, and a smaller unit makes the
    # ~1 kHz precision a good tracker needs a coarser target for the policy.
    max_step: tuple[float, float, float, float] = (0.01, 0.1, 20e3, 0.05)
    window: float = 20.0
    age_scale_s: float = 6 * 3600.0
    estimate_clip: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        kinds = {p.kind for p in self.probes}
        require(kinds <= set(_FAMILY_PARAM), "probes", self.probes, "amplitude and ramsey probes only")
        require(set(self.parameters) <= set(_FAMILY_PARAM.values()), "parameters", self.parameters,
                f"a subset of {sorted(_FAMILY_PARAM.values())}")
        require(finite("age_scale_s", self.age_scale_s) > 0, "age_scale_s", self.age_scale_s, "> 0 s")
        require(finite("estimate_clip", self.estimate_clip) > 0, "estimate_clip", self.estimate_clip, "> 0")


class DriftTrackingV1Core(DriftTrackingCore):
    """Batched core of ``DriftTrackingV1Env``."""

    config_class = DriftTrackingV1Config

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        cfg: DriftTrackingV1Config = self.cfg  # type: ignore[assignment]
        k, p = len(cfg.probes), len(cfg.parameters)
        # Families in a fixed order; one estimate and one age each.
        self.families = [f for f in FAMILIES if any(pr.kind == f for pr in cfg.probes)]
        nf = len(self.families)
        c = cfg.estimate_clip
        low = np.concatenate([-c * np.ones(nf), np.zeros(nf), np.zeros(k), [0.0]]).astype(np.float32)
        high = np.concatenate([c * np.ones(nf), np.ones(nf), np.ones(k), [1.0]]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2 + p,), dtype=np.float32)
        # "ramsey_deep" is the deepest Ramsey probe alone: while tracking, the residual stays
        # well inside its unambiguous range, and the shallow probe's noise would only risk a
        # wrong unwrap (a 2σ shot-noise error of the 1 µs probe picks the wrong branch).
        ramsey = [k for k, pr in enumerate(cfg.probes) if pr.kind == "ramsey"]
        deep = max(ramsey, key=lambda k: cfg.probes[k].delay_s) if ramsey else -1
        self.masks = np.array([[(s == "all" or pr.kind == s) if s != "ramsey_deep" else k == deep
                                for k, pr in enumerate(cfg.probes)] for s in _V1_PROBE_SETS])
        self.family_param = [PARAMETER_NAMES.index(_FAMILY_PARAM[f]) for f in self.families]
        self.target = np.zeros((self.num_envs, nf))  # estimated best value of each family's parameter
        self.probed_at = np.full((self.num_envs, nf), -np.inf)  # device clock of the family's last probe

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        super()._reset_copy(i, options)
        self.target[i] = self.params[i, self.family_param]
        self.probed_at[i] = -np.inf

    def _apply_action(self, i: int, action: FloatArray) -> None:
        cfg: DriftTrackingV1Config = self.cfg  # type: ignore[assignment]
        self.choice[i] = (_level(float(action[0]), len(cfg.shot_levels)), _level(float(action[1]), len(_V1_PROBE_SETS)))
        self._apply_params(i, action[2:])

    def _update_estimates(self, i: int, p1: FloatArray, subset: NDArray[np.int64]) -> None:
        """Per probed family: the parameter value the probes ask for, from the measured angles
        (relative to the parameters the probes ran with, i.e. the current ones)."""
        cfg: DriftTrackingV1Config = self.cfg  # type: ignore[assignment]
        row = np.full(len(cfg.probes), np.nan)
        row[subset] = p1
        fam = analyse(row[None], cfg.probes, self.gate.duration_s).family_angle[0]
        for f, kind in enumerate(self.families):
            if not any(cfg.probes[k].kind == kind for k in subset):
                continue
            angle = fam[FAMILIES.index(kind)]
            p = self.params[i, self.family_param[f]]
            if kind == "amplitude":
                # SX·X^n reads P1 = (1 + sin((n + ½)·π·ε))/2: angle per X = π·ε, over-rotation ε.
                self.target[i, f] = p / (1.0 + angle / math.pi)
            else:
                # Ramsey reads P1 = (1 − sin(2π(δ − Δ)τ))/2: angle per gate = −2π(δ − Δ)·T.
                self.target[i, f] = p - angle / (2.0 * math.pi * self.gate.duration_s)
            self.probed_at[i, f] = self.devices[i].clock_s

    def _observe(self, step_idx: list[int], reset_idx: list[int]) -> tuple[
            FloatArray, FloatArray, NDArray[np.bool_], list[dict[str, Any]]]:
        cfg: DriftTrackingV1Config = self.cfg  # type: ignore[assignment]
        idx = step_idx + reset_idx
        n, ns = len(idx), len(step_idx)
        # The correction acts over the user workload of the interval ...
        err0, _, _ = self.gate_error(idx)
        for i in step_idx:
            self.devices[i].advance(cfg.decision_interval_s)
        err1, truth1, waves = self.gate_error(idx)
        # ... and the probe runs at its end, so the next decision sees a fresh reading.
        shots = [cfg.shot_levels[self.choice[i, 0]] for i in step_idx]
        subsets = [np.flatnonzero(self.masks[self.choice[i, 1]]) for i in step_idx]
        seqs_all = self.task.sequences(self.params[step_idx]) if step_idx else []
        seqs = [[seqs_all[j][k] for k in subsets[j]] for j in range(ns)]
        counts = run_on_devices([self.devices[i] for i in step_idx], seqs, shots)
        spent = np.zeros(n)
        for j, i in enumerate(step_idx):
            if shots[j] > 0:
                p1 = counts[j][:, 1] / shots[j]
                self.last_p1[i, subsets[j]] = p1
                self._update_estimates(i, p1, subsets[j])
                spent[j] = shots[j] * len(subsets[j])
                self.task.shots_used[i] += int(spent[j])
            self.history[i].append(self.last_p1[i].copy())
        est = analyse(self.last_p1[idx], cfg.probes, self.gate.duration_s).infidelity
        obs = np.zeros((n, self.observation_space.shape[0]))
        rew = np.zeros(n)
        term = np.zeros(n, dtype=np.bool_)
        infos = []
        for j, i in enumerate(idx):
            t = self.devices[i].clock_s
            if j < ns:
                rew[j] = -cfg.error_scale * 0.5 * (err0[j] + err1[j]) - cfg.shot_cost * spent[j] / 1000.0
            term[j] = t + cfg.decision_interval_s > cfg.episode_s + 1e-9
            scale = self.step_scale(i)[self.family_param]
            wanted = (self.target[i] - self.params[i, self.family_param]) / scale
            age = np.minimum((t - self.probed_at[i]) / cfg.age_scale_s, 1.0)
            obs[j] = np.concatenate([wanted, age, self.last_p1[i], [min(t / cfg.episode_s, 1.0)]])
            info = self.base_info(i, truth1 if cfg.report_truth else None, j, waves[j])
            info["gate_error"] = float(err1[j])
            info["interval_error"] = float(0.5 * (err0[j] + err1[j]))
            info["infidelity_estimate"] = float(est[j])
            info["shots_step"] = int(spent[j])
            infos.append(info)
        lo, hi = self.observation_space.low, self.observation_space.high
        return np.clip(obs, lo, hi), rew, term, infos


class DriftTrackingV1Env(SingleCoreEnv):
    """Track a drifting device with cheap, frequent probes (DriftTracking-v1).

    ## Description
    As DriftTracking-v0 (``transmon_drifting``, 10 min of user workload per decision,
    24 h episodes), redesigned so that a measurement-only tracker can be learned: each
    step applies the correction, runs the interval's workload, and then runs the chosen
    probe, whose reading the next decision sees. Amplitude and the drive frequency are
    tracked (β does not drift in the preset).

    ## Action Space
    ``Box(-1, 1, (2 + P,), float32)``: a[0] picks shots per probe from ``shot_levels``
    (0, 32, 64, 128 by default; 0 = no probe), a[1] the probe set (deepest Ramsey
    alone, both Ramsey, amplitude, all) in equal bins, a[2:] moves the P parameters (amplitude, detuning) by
    ``max_step`` units. NaN/inf or out-of-range actions raise ``ValueError``.

    ## Observation Space
    ``Box(float32)`` of 2F + K + 1 (F probe families, K probes): per family, the
    correction its latest probes ask for, in ``max_step`` units of its parameter and
    relative to the current parameters (clipped to ±``estimate_clip``; 0 before any
    probe), the time since the family was last probed (/``age_scale_s``, capped at 1);
    the last excited fraction of each probe (0.5 before any); the elapsed fraction of the
    episode. All of it comes from shots, none from simulation truth.

    ## Rewards
    −``error_scale`` × the interval's true error (trapezoid of the error right after the
    correction and at the end of the workload: gate infidelity with virtual Z plus a
    ``circuit_time_s`` circuit's frame error, as in v0) − ``shot_cost`` per 1000 shots
    (1.0 by default, so probing has to pay for itself).

    ## Starting State
    As v0: a freshly calibrated gate with a small miscalibration, no probe yet.

    ## Episode End
    Terminated when the next decision would pass ``episode_s``; ``TimeLimit`` 144 steps.

    ## Arguments
    age_scale_s, estimate_clip plus the fields of ``DriftTrackingConfig``
    (``DriftTrackingV1Config``), render_mode. ``info`` as v0 plus ``shots_step``.

    ## Version History
    - v1: probe at the end of the interval, estimate and age observation, deep Ramsey,
      amplitude and detuning only, shot levels up to 128, shot cost 1 per 1000 shots,
      detuning step 20 kHz, parameter window ±20 steps (v0's ±2 % amplitude window cannot
      follow 24 h of drift).
    - v0: initial version.
    """

    core_class = DriftTrackingV1Core

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.drift_tracking_v1_state(self.core, index, "pulsecal/DriftTracking-v1")


class DriftTrackingV1VectorEnv(BatchedVectorEnv):
    """N copies of ``DriftTrackingV1Env`` sharing device calls per step."""

    core_class = DriftTrackingV1Core

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.drift_tracking_v1_state(self.core, index, "pulsecal/DriftTracking-v1")
