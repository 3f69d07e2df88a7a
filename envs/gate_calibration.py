"""GateCalibration-v0: calibrate a DRAG X/SX gate from error-amplifying measurements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from . import contract
from .calibration import (
    PARAMETER_NAMES,
    CalibrationTask,
    DragGate,
    DragParams,
    Probe,
    analyse,
    default_probes,
    finite,
    nominal_params,
    require,
)
from .device import DeviceParams, SimulatedDevice
from .physics._fast_jit import clip, jit
from .presets import DeviceSampler, get_preset
from .protocol import Device
from .vector import BatchedCore, BatchedVectorEnv, FloatArray, InfoColumns, SingleCoreEnv

# Scale of each parameter's miscalibration and step: relative for amplitude and β, Hz and
# rad for detuning and phase (the kind of each entry of PARAMETER_NAMES).
_RELATIVE = np.array([True, True, False, False])
_RELATIVE_T = tuple(bool(x) for x in _RELATIVE)
_RESET_OPTIONS = frozenset({"device", "device_params", "miscalibration", "initial_params"})


# The per-step bookkeeping of a few copies is two dozen NumPy operations on arrays of a few
# numbers each, whose call overhead outweighs the arithmetic many times over; these kernels
# do the same element-wise operations in the same order in one call. No FMA contraction
# (fastmath off): they must give the bits of the array forms they replace.


@jit(fastmath=False)
def _move_params(params: FloatArray, rows: NDArray[np.int64], delta_unit: FloatArray,
                 pidx: NDArray[np.int64], max_step: FloatArray, window_step: FloatArray,
                 start: FloatArray, unit: FloatArray) -> None:
    """params[i, pidx] += delta_unit[j] · max_step[pidx] · unit[i, pidx] for i = rows[j]
    (distinct), then each parameter clipped to start ± window_step · unit and the
    amplitude to [−1, 1], in place: ``_apply_params`` of each row."""
    for j in range(rows.shape[0]):
        i = rows[j]
        for q in range(pidx.shape[0]):
            c = pidx[q]
            params[i, c] += delta_unit[j, q] * (max_step[c] * unit[i, c])
        for c in range(params.shape[1]):
            lim = window_step[c] * unit[i, c]
            params[i, c] = clip(params[i, c], start[i, c] - lim, start[i, c] + lim)
        params[i, 0] = clip(params[i, 0], -1.0, 1.0)


@jit(fastmath=False)
def _step_outcome(rows: NDArray[np.int64], n_step: int, p1: FloatArray, est: FloatArray,
                  params: FloatArray, start: FloatArray, unit: FloatArray, max_step: FloatArray,
                  pidx: NDArray[np.int64], last_error: FloatArray, last_p1: FloatArray,
                  shots_used: NDArray[np.int64], step_shots: int, shot_budget: int,
                  error_floor: float, cost: float, low: FloatArray, high: FloatArray,
                  ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """GateCalibration's observation (n, K + P + 1) clipped to [low, high], reward (n,) and
    terminated (n,) of copies ``rows`` (distinct; the first ``n_step`` stepped) from their
    probe readings p1 (n, K) and estimated infidelity est (n,); stores est and p1 as the
    copies' last ones."""
    n, k = p1.shape
    obs = np.empty((n, k + pidx.shape[0] + 1))
    rew = np.zeros(n)
    term = np.empty(n, dtype=np.bool_)
    last = obs.shape[1] - 1
    for j in range(n):
        i = rows[j]
        if j < n_step:
            # Telescoping log-improvement: an episode's return is log10(E_0/E_T) minus the
            # shot cost, so shot noise only enters at the two ends. (libm's log10, as
            # math.log10: NumPy's rounds differently in the last bit.)
            rew[j] = (math.log10(last_error[i] + error_floor) - math.log10(est[j] + error_floor)) - cost
        last_error[i] = est[j]
        for q in range(k):
            last_p1[i, q] = p1[j, q]
            obs[j, q] = clip(p1[j, q], low[q], high[q])
        for q in range(pidx.shape[0]):
            c = pidx[q]
            norm = (params[i, c] - start[i, c]) / (max_step[c] * unit[i, c])  # normalised_params
            obs[j, k + q] = clip(norm, low[k + q], high[k + q])
        used = shots_used[i]
        term[j] = used + step_shots > shot_budget
        frac = used / shot_budget
        obs[j, last] = clip(frac if frac < 1.0 else 1.0, low[last], high[last])
    return obs, rew, term


@dataclass(frozen=True)
class GateCalibrationConfig:
    """Validated constructor arguments of ``GateCalibrationEnv`` (see its docstring)."""

    device: str = "transmon_20ns"
    randomize_device: bool = False
    sampler: DeviceSampler | None = None
    drift: bool = False
    open_system: bool = True
    gate_duration_s: float | None = None
    probes: tuple[Probe, ...] = field(default_factory=default_probes)
    shots_per_probe: int = 20
    shot_budget: int = 1000
    shot_cost: float = 0.05
    parameters: tuple[str, ...] = ("amplitude", "beta_s", "detuning_hz")
    miscalibration: tuple[float, float, float, float] = (0.05, 0.5, 1e6, 0.0)
    max_step: tuple[float, float, float, float] = (0.05, 0.5, 1e6, 0.2)
    window: float = 2.0
    error_floor: float = 1e-6
    report_truth: bool = True

    def __post_init__(self) -> None:
        get_preset(self.device)  # raises naming the preset
        require(isinstance(self.randomize_device, bool), "randomize_device", self.randomize_device, "a bool")
        require(self.sampler is None or isinstance(self.sampler, DeviceSampler), "sampler",
                self.sampler, "a DeviceSampler or None")
        if self.gate_duration_s is not None:
            require(finite("gate_duration_s", self.gate_duration_s) > 0, "gate_duration_s",
                    self.gate_duration_s, "> 0 s or None (the preset's)")
        probes = tuple(self.probes)
        require(len(probes) >= 1 and all(isinstance(p, Probe) for p in probes), "probes",
                self.probes, "a non-empty sequence of Probe")
        object.__setattr__(self, "probes", probes)
        require(isinstance(self.shots_per_probe, int) and 1 <= self.shots_per_probe <= 10**7,
                "shots_per_probe", self.shots_per_probe, "an int in [1, 1e7]")
        require(isinstance(self.shot_budget, int) and self.shot_budget >= self.shots_per_probe * len(probes),
                "shot_budget", self.shot_budget,
                f"an int >= shots_per_probe·len(probes) = {self.shots_per_probe * len(probes)}")
        require(finite("shot_cost", self.shot_cost) >= 0, "shot_cost", self.shot_cost, ">= 0 per 1000 shots")
        params = tuple(self.parameters)
        require(len(params) >= 1 and len(set(params)) == len(params)
                and all(p in PARAMETER_NAMES for p in params),
                "parameters", self.parameters, f"distinct names from {list(PARAMETER_NAMES)}")
        object.__setattr__(self, "parameters", params)
        for name in ("miscalibration", "max_step"):
            v = tuple(getattr(self, name))
            require(len(v) == 4 and all(math.isfinite(float(x)) and float(x) >= 0 for x in v), name, v,
                    "4 finite values >= 0 (amplitude rel., beta rel., detuning Hz, phase rad)")
            object.__setattr__(self, name, tuple(float(x) for x in v))
        require(self.miscalibration[0] < 0.5 and self.miscalibration[1] < 5, "miscalibration",
                self.miscalibration, "amplitude < 0.5 and beta < 5 (relative)")
        require(all(self.max_step[i] > 0 for i in self._param_index()), "max_step", self.max_step,
                "> 0 for every calibrated parameter")
        require(finite("window", self.window) >= 1, "window", self.window, ">= 1 (× max miscalibration)")
        require(finite("error_floor", self.error_floor) > 0, "error_floor", self.error_floor, "> 0")

    def _param_index(self) -> list[int]:
        return [PARAMETER_NAMES.index(p) for p in self.parameters]


class DragCalibrationCore(BatchedCore):
    """N copies of a DRAG calibration on simulated devices (shared by GateCalibration and
    DriftTracking): device draw, parameter bookkeeping, batched probes and truth."""

    config_class: type[GateCalibrationConfig] = GateCalibrationConfig

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs)
        self.cfg = self.config_class(**kwargs)
        cfg = self.cfg
        self.preset = get_preset(cfg.device)
        self.sampler = cfg.sampler if cfg.sampler is not None else (DeviceSampler() if cfg.randomize_device else None)
        dur = cfg.gate_duration_s if cfg.gate_duration_s is not None else self.preset.gate_duration_s
        self.gate = DragGate(dur)
        self.gate.n_samples(self.preset.params.dt_s)  # duration on the grid, checked now
        self.pidx = np.array(cfg._param_index(), dtype=np.int64)
        # Config constants of ``_apply_params`` as arrays, built once (the same values).
        self._max_step = np.asarray(cfg.max_step)
        self._window_step = cfg.window * np.maximum(self._max_step, np.asarray(cfg.miscalibration))
        self.devices: list[Device] = [self.preset.make(np.random.default_rng(0), open_system=cfg.open_system)
                                               for _ in range(self.num_envs)]
        self.task = CalibrationTask(list(self.devices), self.gate, cfg.probes)
        n = self.num_envs
        self.params = np.zeros((n, 4))
        self.start = np.zeros((n, 4))
        self.unit = np.ones((n, 4))  # per-copy scale of each parameter (miscalibration unit)
        self.last_p1 = np.full((n, len(cfg.probes)), 0.5)
        self.last_error = np.zeros(n)
        self.history: list[list[FloatArray]] = [[] for _ in range(n)]

    # -- state --------------------------------------------------------------------------------

    def _draw_device(self, i: int, options: dict[str, Any]) -> None:
        rng = self.rngs[i]
        drawn = self.sampler.sample(rng) if self.sampler is not None else self.preset.params
        dev_seed = int(rng.integers(2**63))  # always drawn, so options never shift later draws
        if "device" in options:
            # Any Device (a hardware BackendDevice, or a prepared simulator): used as is.
            dev = options["device"]
            if not isinstance(dev, Device):
                raise TypeError(f"options['device'] is {type(dev).__name__}: allowed a Device")
            if abs(float(dev.dt_s) - self.preset.params.dt_s) > 1e-15:
                raise ValueError(f"options['device'].dt_s={dev.dt_s!r}: allowed the preset's "
                                 f"{self.preset.params.dt_s!r}")
        else:
            params = options.get("device_params", drawn)
            if not isinstance(params, DeviceParams):
                raise TypeError(f"options['device_params'] is {type(params).__name__}: allowed DeviceParams")
            drift = self.preset.drift if self.cfg.drift else None
            dev = SimulatedDevice.from_seed(params, drift, dev_seed, open_system=self.cfg.open_system)
        self.devices[i] = dev
        self.task.devices[i] = dev
        self.task.shots_used[i] = 0

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        if options:
            unknown = set(options) - _RESET_OPTIONS
            if unknown:
                raise ValueError(f"reset options {sorted(unknown)} are unknown: allowed {sorted(_RESET_OPTIONS)}")
        self._draw_device(i, options)
        rng = self.rngs[i]
        u = rng.uniform(-1.0, 1.0, 4).tolist()  # always drawn, so options never shift later draws
        dev = self.devices[i]
        # Four numbers: Python floats (the same IEEE operations as the former array form,
        # element by element, without an array per operation).
        if isinstance(dev, SimulatedDevice):
            ref = nominal_params(dev.current_transmon(), self.gate).as_tuple()
        elif "initial_params" in options:
            ref = (0.0, 0.0, 0.0, 0.0)
        else:
            raise ValueError("options['initial_params'] is required with a non-simulated device "
                             "(nobody knows its textbook parameters but the lab)")
        if "miscalibration" in options:
            m = dict(options["miscalibration"])
            bad = set(m) - set(PARAMETER_NAMES)
            if bad:
                raise ValueError(f"options['miscalibration'] keys {sorted(bad)}: allowed {list(PARAMETER_NAMES)}")
            off = [float(m.get(k, 0.0)) for k in PARAMETER_NAMES]
        else:
            off = [a * b for a, b in zip(u, self.cfg.miscalibration, strict=True)]
        # ref + off · unit, unit = |ref| for a relative parameter, 1 otherwise.
        start = [r + o * (abs(r) if rel else 1.0) for r, o, rel in zip(ref, off, _RELATIVE_T, strict=True)]
        if "initial_params" in options:
            ip = options["initial_params"]
            arr = (ip.as_array() if isinstance(ip, DragParams) else np.asarray(ip, dtype=np.float64)).copy()
            require(arr.shape == (4,) and bool(np.all(np.isfinite(arr))), "options['initial_params']",
                    arr, "a DragParams or 4 finite values")
            start = arr.tolist()
        # The agent's parameter scale is its step size around where it started (it never
        # sees the reference): the observation shows (params − start) / max_step.
        self.unit[i] = [(abs(x) or 1.0) if rel else 1.0 for x, rel in zip(start, _RELATIVE_T, strict=True)]
        self.start[i] = start
        self.params[i] = start
        self.history[i] = []

    def step_scale(self, i: int) -> FloatArray:
        return np.asarray(self.cfg.max_step) * self.unit[i]

    def _apply_params(self, i: int, delta_unit: FloatArray) -> None:
        """Move the calibrated parameters by ``delta_unit`` × max_step, within the window."""
        self._move_rows(np.array([i], dtype=np.int64), np.asarray(delta_unit, dtype=np.float64)[None])

    def _move_rows(self, rows: NDArray[np.int64], delta_unit: FloatArray) -> None:
        """``_apply_params`` of copies ``rows`` (distinct) with ``delta_unit`` (n, P)."""
        _move_params(self.params, rows, delta_unit, self.pidx, self._max_step, self._window_step,
                     self.start, self.unit)

    def normalised_params(self, i: int) -> FloatArray:
        return ((self.params[i] - self.start[i]) / self.step_scale(i))[self.pidx]

    def truth(self, idx: list[int], *, force: bool = False, params: FloatArray | None = None) -> tuple[
            NDArray[np.complex128], dict[str, FloatArray] | None]:
        """X waveforms (n, S) of copies ``idx`` and, if reported (or ``force``), their truth
        on each device now, in one batched call (``params``: ``self.params[idx]``, if the
        caller has them)."""
        p = self.params[idx] if params is None else params
        if not idx or not (self.cfg.report_truth or force):
            return self.task.x_waveforms(p), None
        # Waveforms and operators from the measurement just before, when there was one.
        return self.task.x_truth(p, idx)

    def base_info(self, i: int, truth: dict[str, FloatArray] | None, j: int,
                  waveform: NDArray[np.complex128]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "shots_used": int(self.task.shots_used[i]),
            "device_time_s": float(self.devices[i].clock_s),
            "waveform": waveform,
            "dt_s": float(self.task.dt_s),
            "params": self.params[i].copy(),
        }
        if truth is not None:
            for k, v in truth.items():
                info[k] = float(v[j])
        return info

    def base_columns(self, idx: list[int], truth: dict[str, FloatArray] | None,
                     waveforms: NDArray[np.complex128], params: FloatArray | None = None,
                     ) -> dict[str, NDArray[Any]]:
        """``base_info`` of copies ``idx`` as one array per key (``InfoColumns``), same
        keys, order and values (``params``: a copy of ``self.params[idx]``, if the caller
        has one)."""
        rows = np.asarray(idx, dtype=np.int64)
        devices = self.devices
        dt_s = np.empty(len(idx))
        dt_s.fill(self.task.dt_s)
        columns: dict[str, NDArray[Any]] = {
            "shots_used": self.task.shots_used[rows],
            "device_time_s": np.array([devices[i].clock_s for i in idx], dtype=np.float64),
            "waveform": waveforms,
            "dt_s": dt_s,
            "params": self.params[rows] if params is None else params,
        }
        if truth is not None:
            for k, v in truth.items():
                columns[k] = np.asarray(v, dtype=np.float64)
        return columns

    def render_copy(self, i: int) -> NDArray[np.uint8]:
        from .render import render_calibration

        return render_calibration(
            self.gate.waveforms(self.params[i], self.task.dt_s), self.task.dt_s,
            self.history[i], [p.name for p in self.cfg.probes],
            title=f"{type(self).__name__.replace('Core', '')} copy {i}",
        )


class GateCalibrationCore(DragCalibrationCore):
    """Batched core of ``GateCalibrationEnv``."""

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        cfg = self.cfg
        k, p = len(cfg.probes), len(cfg.parameters)
        w = cfg.window * max(1.0, max(cfg.miscalibration[i] / cfg.max_step[i] for i in cfg._param_index()))
        low = np.concatenate([np.zeros(k), -w * np.ones(p), [0.0]]).astype(np.float32)
        high = np.concatenate([np.ones(k), w * np.ones(p), [1.0]]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (p,), dtype=np.float32)
        self.step_shots = cfg.shots_per_probe * k
        # Constants of ``_observe``, built once.
        self._step_cost = cfg.shot_cost * self.step_shots / 1000.0
        self._obs_low = self.observation_space.low.astype(np.float64)
        self._obs_high = self.observation_space.high.astype(np.float64)

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
        return self.task.shots_used[np.asarray(idx, dtype=np.int64)] > self.cfg.shot_budget - 2 * self.step_shots

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
            for name in ("params", "start", "unit", "last_p1", "last_error"):
                arr = getattr(self, name)
                arr[rows] = arr[src]
            self.task.shots_used[rows] = self.task.shots_used[src]
            for i, j in zip(ends, spare, strict=True):
                self.devices[i] = self.task.devices[i] = self.devices[j]
                self.history[i] = self.history[j]
        finally:
            self._drop_spare_slots(n)
        k = len(step_idx)
        return obs[:k], rew[:k], term[:k], infos[:k], obs[k:], infos[k:]

    def _spare_slots(self, like: list[int]) -> None:
        """Append one slot per copy in ``like`` to every per-copy container (the copy's
        generator object itself, so draws in the slot advance the copy's stream)."""
        # Every row, then the copied ones: one gather per array.
        rows = np.array([*range(len(self.params)), *like], dtype=np.int64)
        for name in ("params", "start", "unit", "last_p1", "last_error"):
            setattr(self, name, getattr(self, name)[rows])
        self.task.shots_used = self.task.shots_used[rows]
        self.devices += [self.devices[i] for i in like]
        self.task.devices += [self.task.devices[i] for i in like]
        self.history += [[] for _ in like]
        self.rngs += [self.rngs[i] for i in like]

    def _drop_spare_slots(self, n: int) -> None:
        for name in ("params", "start", "unit", "last_p1", "last_error"):
            setattr(self, name, getattr(self, name)[:n].copy())
        self.task.shots_used = self.task.shots_used[:n].copy()
        del self.devices[n:], self.task.devices[n:], self.history[n:], self.rngs[n:]

    def _observe(self, step_idx: list[int], reset_idx: list[int]) -> tuple[
            FloatArray, FloatArray, NDArray[np.bool_], Sequence[dict[str, Any]]]:
        cfg = self.cfg
        idx = step_idx + reset_idx
        rows = np.asarray(idx, dtype=np.int64)
        params = self.params[rows]
        p1 = self.task.measure(params, cfg.shots_per_probe, index=idx)
        est = analyse(p1, cfg.probes, self.gate.duration_s).infidelity
        waves, truth = self.truth(idx, params=params)
        obs, rew, term = _step_outcome(
            rows, len(step_idx), p1, est, self.params, self.start, self.unit, self._max_step, self.pidx,
            self.last_error, self.last_p1, self.task.shots_used, self.step_shots, cfg.shot_budget,
            cfg.error_floor, self._step_cost, self._obs_low, self._obs_high)
        history = self.history
        for i, row in zip(idx, p1, strict=True):
            history[i].append(row)
        columns = self.base_columns(idx, truth, waves, params)
        columns["infidelity_estimate"] = est
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
    Terminated when the next step would exceed ``shot_budget``. Truncation by
    ``TimeLimit`` (registered ``max_episode_steps``).

    ## Arguments
    device, randomize_device, sampler, drift, open_system, gate_duration_s, probes,
    shots_per_probe, shot_budget, shot_cost, parameters, miscalibration, max_step, window,
    error_floor, report_truth, render_mode (see ``GateCalibrationConfig``). ``info`` holds
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
