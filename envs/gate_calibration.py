"""GateCalibration-v0: calibrate a DRAG X/SX gate from error-amplifying measurements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from . import contract
from .calibration_task import CalibrationTask
from .drag import DragParams
from .drag_calibration_core import DragCalibrationCore, _objects
from .physics.calibration_kernels import gate_step_outcome
from .probe_analysis import analyse
from .vector import BatchedVectorEnv, FloatArray, InfoColumns, SingleCoreEnv

# The core's per-copy arrays a spare slot carries (``advance_and_reset``).
_PER_COPY_ARRAYS = ("params", "start", "unit", "last_p1", "last_error", "clip_count", "clip_req", "clip_app",
                    "clip_bound")


class GateCalibrationCore(DragCalibrationCore):
    """Batched core of ``GateCalibrationEnv``."""

    lengthens_gate = True

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        cfg = self.cfg
        k, p = len(cfg.probes), len(cfg.parameters)
        w = cfg.window * max(1.0, max(cfg.miscalibration[i] / cfg.max_step[i] for i in cfg.parameter_columns()))
        low = np.concatenate([np.zeros(k), -w * np.ones(p), [0.0]]).astype(np.float32)
        high = np.concatenate([np.ones(k), w * np.ones(p), [1.0]]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (p,), dtype=np.float32)
        self.step_shots = cfg.shots_per_probe * k
        # Constants of ``_observe``, built once.
        self._step_cost = cfg.shot_cost * self.step_shots / 1000.0
        self._obs_low = self.observation_space.low.astype(np.float64)
        self._obs_high = self.observation_space.high.astype(np.float64)

    def observation_names(self) -> tuple[str, ...]:
        """One name per observation entry (``contract.EnvDescription.observation_names``)."""
        return contract.gate_calibration_observation_names(self)

    def _apply_action(self, i: int, action: FloatArray) -> None:
        self._apply_params(i, action)

    def _apply_actions(self, idx: list[int], actions: NDArray[np.float64]) -> None:
        # ``_apply_params`` for all copies in one call (unless a subclass changed the rule).
        if type(self)._apply_action is not GateCalibrationCore._apply_action:
            super()._apply_actions(idx, actions)
            return
        self._move_rows(np.asarray(idx, dtype=np.int64), actions)

    def ends_after_step(self, idx: list[int]) -> NDArray[np.bool_] | None:
        # Every step spends exactly step_shots, so the budget test is known in advance.
        if type(self)._observe is not GateCalibrationCore._observe:
            return None
        # used + 2·step_shots > budget, with the constant side folded (integers: the same test).
        return self.task.shots_used[np.asarray(idx, dtype=np.int64)] > self.cfg.calibration_budget - 2 * self.step_shots

    def advance_and_reset(
        self, step_idx: Sequence[int], actions: NDArray[Any], then_reset: Sequence[int],
        reset_options: Sequence[dict[str, Any] | None] | None = None,
    ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], Sequence[dict[str, Any]], FloatArray,
               Sequence[dict[str, Any]]]:
        """One measurement call for the step and the resets after it: each ending copy's
        next episode is drawn into a spare slot (its own generator, so the same draws as a
        reset after the step), measured alongside the step on its new device, and moved
        into the copy's slot afterwards. Counts and generators are those of the two-call
        path; the physics may batch the pulses differently, which can only show in the
        last bits of the truth metrics."""
        if type(self)._observe is not GateCalibrationCore._observe or type(self)._reset_copy is not (
                DragCalibrationCore._reset_copy):
            return super().advance_and_reset(step_idx, actions, then_reset, reset_options)
        ends = [int(i) for i in then_reset]
        n, m = self.num_envs, len(ends)
        spare = list(range(n, n + m))
        self._spare_slots(ends)
        try:
            obs, rew, term, infos = self.advance(step_idx, actions, spare, reset_options)
            rows, src = np.asarray(ends, dtype=np.int64), np.asarray(spare, dtype=np.int64)
            for name in _PER_COPY_ARRAYS:
                arr = getattr(self, name)
                arr[rows] = arr[src]
            self.task.shots_used[rows] = self.task.shots_used[src]
            for i, j in zip(ends, spare, strict=True):
                self.devices[i] = self.task.devices[i] = self.devices[j]
                self.task.gates[i] = self.task.gates[j]
                self.fits[i] = self.fits[j]
                self.history[i] = self.history[j]
                self.stated[i] = self.stated[j]
        finally:
            self._drop_spare_slots(n)
        k = len(step_idx)
        return obs[:k], rew[:k], term[:k], infos[:k], obs[k:], infos[k:]

    def _spare_slots(self, like: list[int]) -> None:
        """Append one slot per copy in ``like`` to every per-copy container (the copy's
        generator object itself, so draws in the slot advance the copy's stream)."""
        # Every row, then the copied ones: one gather per array.
        rows = np.array([*range(len(self.params)), *like], dtype=np.int64)
        for name in _PER_COPY_ARRAYS:
            setattr(self, name, getattr(self, name)[rows])
        self.task.shots_used = self.task.shots_used[rows]
        self.devices += [self.devices[i] for i in like]
        self.task.devices += [self.task.devices[i] for i in like]
        self.task.gates += [self.task.gates[i] for i in like]
        self.fits += [self.fits[i] for i in like]
        self.stated += [self.stated[i] for i in like]
        self.history += [[] for _ in like]
        self.rngs += [self.rngs[i] for i in like]

    def _drop_spare_slots(self, n: int) -> None:
        for name in _PER_COPY_ARRAYS:
            setattr(self, name, getattr(self, name)[:n].copy())
        self.task.shots_used = self.task.shots_used[:n].copy()
        del self.devices[n:], self.task.devices[n:], self.task.gates[n:], self.fits[n:], self.history[n:]
        del self.stated[n:]
        del self.rngs[n:]

    def _observe(self, step_idx: list[int], reset_idx: list[int]) -> tuple[
            FloatArray, FloatArray, NDArray[np.bool_], Sequence[dict[str, Any]]]:
        cfg = self.cfg
        idx = step_idx + reset_idx
        rows = np.asarray(idx, dtype=np.int64)
        params = self.params[rows]
        p1 = self.task.measure(params, cfg.shots_per_probe, index=idx)
        groups = self.task.gate_groups(idx)
        if groups is None:
            infidelity_estimate = analyse(p1, cfg.probes, self.gate.duration_s).infidelity
        else:  # copies at lengthened gates: each read with its own gate's probe gains
            infidelity_estimate = np.empty(len(idx))
            for gate, pos in groups:
                infidelity_estimate[pos] = analyse(p1[pos], cfg.probes, gate.duration_s).infidelity
        waves, truth = self.truth(idx, params=params)
        obs, rew, term = gate_step_outcome(
            rows, len(step_idx), p1, infidelity_estimate, self.params, self.start, self.unit, self._max_step, self.param_index,
            self.last_error, self.last_p1, self.task.shots_used, self.step_shots, cfg.calibration_budget,
            cfg.error_floor, self._step_cost, self._obs_low, self._obs_high)
        history = self.history
        for i, row in zip(idx, p1, strict=True):
            history[i].append(row)
        verdicts = self.verdicts_at_end(idx, len(step_idx), term)
        columns = self.base_columns(idx, truth, waves, params)
        columns["infidelity_estimate"] = infidelity_estimate
        if verdicts is not None:
            columns["verdict"] = _objects(verdicts)
            columns["verification_shots"] = np.array([0 if v is None else v.shots_used for v in verdicts],
                                                     dtype=np.int64)
        return obs, rew, term, InfoColumns(columns)


class GateCalibrationEnv(SingleCoreEnv):
    """Calibrate a DRAG X (and SX) gate on a device whose true parameters stay hidden.

    ## Description
    A transmon gate (lifted-Gaussian DRAG, ``gate_duration_s``) starts miscalibrated in
    amplitude, DRAG β and drive detuning. Each step the agent nudges the parameters and the
    env runs a fixed set of error-amplifying probe sequences (``calibration.Probe``:
    SX·X^n for the signed amplitude error, SY·(X̄X)^n for β, Ramsey with a π/2
    quadrature for the signed detuning) for ``shots_per_probe`` shots each on the device.
    The device is simulated (``SimulatedDevice``: shot noise, readout error, open system).

    ``parameters`` defaults to (amplitude, beta_s, detuning_hz): the drive phase is a
    gauge here (every probe starts in |0> and ends in a Z measurement, so a common phase
    of X and SX is invisible, and virtual Z makes it free); add "phase" to calibrate it
    against a reference anyway. SX shares β and detuning and has half the X area, so the
    amplitude probes (which start with SX) calibrate both.

    ## Action Space
    ``Box(-1, 1, (len(parameters),), float32)``: the change of each calibrated parameter
    in units of ``max_step`` (relative to the starting value for amplitude and β, in Hz
    and rad for detuning and phase). Parameters stay within ``window`` × max(max_step,
    miscalibration) of their start. NaN/inf or out-of-range actions raise ``ValueError``
    (they are not clipped).

    ## Observation Space
    ``Box(float32)`` of K + P + 1 entries: the measured excited-state fraction of each of
    the K probes (ideal 1/2; deviations are signed and amplified), the P calibrated
    parameters as (value − start)/max_step, and the fraction of the shot budget used.

    ## Rewards
    From measurements only: the per-gate error angles read from the probes
    (``calibration.analyse``) give an estimated infidelity E; the reward is
    log10(E_prev + floor) − log10(E + floor) − shot_cost·(shots this step)/1000.

    ## Starting State
    A device from the preset ``device`` (or from ``sampler``/``DeviceSampler`` when
    ``randomize_device``) and a start of textbook parameters × uniform miscalibration
    (±5 % amplitude, ±50 % β, ±1 MHz by default). The reset measures once (it costs
    shots). ``reset(options=...)`` fixes a scenario: ``device_params`` (DeviceParams),
    ``miscalibration`` (dict name → offset, relative for amplitude and beta_s),
    ``initial_params`` (DragParams), or ``device`` (any ``Device``, e.g. a hardware
    ``BackendDevice``, used as is; with a non-simulated device ``initial_params`` is
    required and ``info`` carries no truth keys).

    ## Episode End
    Terminated when the next step would exceed ``shot_budget`` (less the verification's
    shots when ``verification`` is set). Truncation by ``TimeLimit`` (registered
    ``max_episode_steps``).

    With ``verification`` (a ``VerificationSettings`` or a mapping of its fields, {} the
    trusted defaults; default None: off) the terminating step also runs the verification checks on the device
    (``envs.verification``, docs/verification.md) and its info holds ``verdict`` (a
    ``Verdict``) and ``verification_shots``; other steps carry ``verdict`` None. The
    verification's shots are reserved from ``shot_budget`` at the start and counted in
    ``shots_used``. A non-simulated device needs the reset option ``stated_coherence``
    (the lab's T1/T2). A copy truncated by the time limit carries no verdict.

    ## Arguments
    device, randomize_device, sampler, drift, open_system, gate_duration_s, probes,
    shots_per_probe, shot_budget, shot_cost, parameters, miscalibration, max_step, window,
    error_floor, report_truth, amplitude_limit, verification, render_mode (see
    ``GateCalibrationConfig``). ``info`` holds
    the truth (fidelity, fidelity_raw, leakage, coherence_limit: evaluation only), the
    measured ``infidelity_estimate``, shots_used, device_time_s, waveform, dt_s, params.

    ## Version History
    - v0: initial version.
    """

    core_class = GateCalibrationCore

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.gate_calibration_state(self.core, index, "pulsecal/GateCalibration-v0")


class GateCalibrationVectorEnv(BatchedVectorEnv):
    """N copies of ``GateCalibrationEnv`` sharing one device call per step."""

    core_class = GateCalibrationCore

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.gate_calibration_state(self.core, index, "pulsecal/GateCalibration-v0")


def scripted_calibration(
    task: CalibrationTask, start: DragParams, shots: int = 200, rounds: int = 3,
    index: Sequence[int] = (0,),
) -> DragParams:
    """Textbook calibration through the task's device: fit each error from its probes.

    Each round runs the probes at the current parameters and inverts the probe model of
    ``Probe``: amplitude from SX·X^n (ε = angle/π), β from SY·(X̄X)^n (linear response,
    measured by a finite difference in β), detuning from Ramsey. Used by the tests as
    proof that the observations carry enough information; a baseline for agents.
    """
    p = start.as_array().copy()
    i = list(index)
    dur = task.gate.duration_s
    for _ in range(rounds):
        a = analyse(task.measure(p[None], shots, index=i), task.probes, dur).family_angle[0]
        p[0] *= 1.0 - a[0] / math.pi
        p[2] -= a[2] / (2.0 * math.pi * dur)  # Ramsey: P1 = (1 − sin(2π(δ − Δ)τ))/2
        # β: the DRAG family angle is linear in β near the optimum; a probe at β + h gives
        # the slope.
        h = 0.1 * abs(p[1]) + 1e-12
        q = p.copy()
        q[1] += h
        a2 = analyse(task.measure(q[None], shots, index=i), task.probes, dur).family_angle[0]
        slope = (a2[1] - a[1]) / h
        if slope != 0:
            p[1] -= float(np.clip(a[1] / slope, -0.5 * abs(p[1]), 0.5 * abs(p[1])))
    return DragParams.from_array(p)
