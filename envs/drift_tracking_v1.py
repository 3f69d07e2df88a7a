"""DriftTracking-v1: keep a gate calibrated on a drifting device, with fresh probes.

It is the tracking-friendly redesign: the probe runs at the end of each interval, just
before the next decision (so a correction never acts on a stale reading), the observation
carries per-family estimates of the needed correction (read from the probes alone) and the
time since each family was last probed, and the deep Ramsey probe is long enough to
resolve kHz of frequency drift with tens of shots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from . import contract
from ._validation import finite, require
from .drag import PARAMETER_NAMES
from .drift_tracking_core import DriftTrackingConfig, DriftTrackingCore, action_level
from .probe_analysis import analyse
from .probes import FAMILIES, Probe
from .vector import BatchedVectorEnv, FloatArray, SingleCoreEnv


def tracking_probes() -> tuple[Probe, ...]:
    """Probes of DriftTracking-v1: amplitude (depths 4, 24) and Ramsey (1 µs, 6 µs).

    Frequency drift dominates the circuit-level error, so the Ramsey pair is deep: at 6 µs
    64 shots resolve ~3.5 kHz (frame error ~8e-5 for a 1 µs circuit), and the 1 µs probe
    (unambiguous over ±250 kHz) unwraps it. β does not drift in the drifting preset, so
    v1 leaves out the DRAG family and does not calibrate β.
    """
    return (Probe("amplitude", 4), Probe("amplitude", 24),
            Probe("ramsey", delay_s=1e-6), Probe("ramsey", delay_s=6e-6))


_FAMILY_PARAM = {"amplitude": "amplitude", "ramsey": "detuning_hz"}
_PROBE_SETS = ("ramsey_deep", "ramsey", "amplitude", "all")


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
                                for k, pr in enumerate(cfg.probes)] for s in _PROBE_SETS])
        self.family_param = [PARAMETER_NAMES.index(_FAMILY_PARAM[f]) for f in self.families]
        self.target = np.zeros((self.num_envs, nf))  # estimated best value of each family's parameter
        self.probed_at = np.full((self.num_envs, nf), -np.inf)  # device clock of the family's last probe

    def observation_names(self) -> tuple[str, ...]:
        """One name per observation entry (``contract.EnvDescription.observation_names``)."""
        return contract.drift_tracking_v1_observation_names(self)

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        super()._reset_copy(i, options)
        self.target[i] = self.params[i, self.family_param]
        self.probed_at[i] = -np.inf

    def _apply_action(self, i: int, action: FloatArray) -> None:
        cfg: DriftTrackingV1Config = self.cfg  # type: ignore[assignment]
        self.choice[i] = (action_level(float(action[0]), len(cfg.shot_levels)), action_level(float(action[1]), len(_PROBE_SETS)))
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
        shots, subsets, counts = self._run_probes(step_idx)
        spent = np.zeros(n)
        for j, i in enumerate(step_idx):
            if shots[j] > 0:
                p1 = counts[j][:, 1] / shots[j]
                self.last_p1[i, subsets[j]] = p1
                self._update_estimates(i, p1, subsets[j])
                spent[j] = shots[j] * len(subsets[j])
                self.task.shots_used[i] += int(spent[j])
            self.history[i].append(self.last_p1[i].copy())
        obs, rew, term, infos = self._interval_results(idx, ns, err0, err1, truth1, waves, spent)
        for info, used in zip(infos, spent, strict=True):
            info["shots_step"] = int(used)
        return obs, rew, term, infos

    def _observation(self, i: int, t: float) -> FloatArray:
        cfg: DriftTrackingV1Config = self.cfg  # type: ignore[assignment]
        scale = self.step_scale(i)[self.family_param]
        wanted = (self.target[i] - self.params[i, self.family_param]) / scale
        age = np.minimum((t - self.probed_at[i]) / cfg.age_scale_s, 1.0)
        return np.concatenate([wanted, age, self.last_p1[i], [min(t / cfg.episode_s, 1.0)]])


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
