"""The batched core of the DriftTracking environments and their settings.

``DriftTrackingCore`` keeps a DRAG gate calibrated over hours of device time: each decision
chooses a correction, how many shots to spend and which probe family to run, and the
device drifts along its clock in between.
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
from .drag_calibration_core import DragCalibrationCore, GateCalibrationConfig
from .probe_analysis import analyse
from .probes import FAMILIES, Probe, default_probes
from .protocol import run_on_devices
from .vector import FloatArray

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


def action_level(a: float, n: int) -> int:
    """Map a ∈ [−1, 1] to one of n equal bins."""
    return min(int((a + 1.0) * 0.5 * n), n - 1)


class DriftTrackingCore(DragCalibrationCore):
    """Batched core of ``DriftTrackingEnv``."""

    config_class = DriftTrackingConfig

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        k, p = len(cfg.probes), len(cfg.parameters)
        w = cfg.window * max(1.0, max(cfg.miscalibration[i] / cfg.max_step[i] for i in cfg.parameter_columns()))
        low = np.concatenate([np.zeros(2 * k), -w * np.ones(p), [0.0]]).astype(np.float32)
        high = np.concatenate([np.ones(2 * k), w * np.ones(p), [1.0]]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2 + p,), dtype=np.float32)
        self.age = np.ones((self.num_envs, k))
        self.choice = np.zeros((self.num_envs, 2), dtype=np.int64)  # shot level, probe set
        self.masks = np.array([[s == "all" or pr.kind == s for pr in cfg.probes] for s in _PROBE_SETS])

    def observation_names(self) -> tuple[str, ...]:
        """One name per observation entry (``contract.EnvDescription.observation_names``)."""
        return contract.drift_tracking_observation_names(self)

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        super()._reset_copy(i, options)
        self.last_p1[i] = 0.5
        self.age[i] = 1.0
        self.choice[i] = 0

    def _apply_action(self, i: int, action: FloatArray) -> None:
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        self.choice[i] = (action_level(float(action[0]), len(cfg.shot_levels)), action_level(float(action[1]), len(_PROBE_SETS)))
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
        shots, subsets, counts = self._run_probes(step_idx)
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
        return self._interval_results(idx, ns, err0, err1, truth1, waves, spent)

    def _run_probes(self, step_idx: list[int]) -> tuple[list[int], list[NDArray[np.int64]], list[Any]]:
        """Probes of the stepping copies, the chosen subset at the chosen shot level:
        (shots per probe, probe indices, counts) per copy."""
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        shots = [cfg.shot_levels[self.choice[i, 0]] for i in step_idx]
        subsets = [np.flatnonzero(self.masks[self.choice[i, 1]]) for i in step_idx]
        seqs_all = self.task.sequences(self.params[step_idx]) if step_idx else []
        seqs = [[seqs_all[j][k] for k in subsets[j]] for j in range(len(step_idx))]
        return shots, subsets, run_on_devices([self.devices[i] for i in step_idx], seqs, shots)

    def _observation(self, i: int, t: float) -> FloatArray:
        """Copy ``i``'s observation at device time ``t``."""
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        return np.concatenate([self.last_p1[i], self.age[i], self.normalised_params(i),
                               [min(t / cfg.episode_s, 1.0)]])

    def _interval_results(self, idx: list[int], ns: int, err0: FloatArray, err1: FloatArray,
                          truth1: dict[str, FloatArray], waves: NDArray[np.complex128], spent: FloatArray
                          ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], list[dict[str, Any]]]:
        """Observations, rewards, terminations and infos of the copies ``idx`` (the first
        ``ns`` stepping) from the true error at the start (``err0``) and end (``err1``) of
        the interval and the shots each spent on it."""
        cfg: DriftTrackingConfig = self.cfg  # type: ignore[assignment]
        n = len(idx)
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
            obs[j] = self._observation(i, t)
            info = self.base_info(i, truth1 if cfg.report_truth else None, j, waves[j])
            info["gate_error"] = float(err1[j])
            info["interval_error"] = float(0.5 * (err0[j] + err1[j]))
            info["infidelity_estimate"] = float(est[j])
            infos.append(info)
        verdicts = self.verdicts_at_end(idx, ns, term)
        if verdicts is not None:
            # The tracked gate at the end of the day, verified (after the truth above).
            for info, v in zip(infos, verdicts, strict=True):
                info["verdict"] = v
                info["verification_shots"] = 0 if v is None else v.shots_used
                info["shots_used"] += info["verification_shots"]
        lo, hi = self.observation_space.low, self.observation_space.high
        return np.clip(obs, lo, hi), rew, term, infos
