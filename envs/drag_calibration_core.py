"""The batched core shared by the DRAG calibration environments, and their settings.

``DragCalibrationCore`` holds what GateCalibration-v0, GateCalibration-v1 and the drift
tracking environments have in common: N copies, each with its device (drawn from a preset
or a sampler, or handed in through ``reset(options={"device": ...})``), the DRAG
parameters being calibrated, their start and scale, the shot counter
(``CalibrationTask``) and the truth reported in ``info`` on simulated devices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import finite, require
from .amplitude_limit import FULL_SCALE, AmplitudeLimit, GateFit, fit_gate
from .calibration_task import CalibrationTask
from .drag import PARAMETER_NAMES, DragGate, DragParams, nominal_values
from .physics.calibration_kernels import move_params
from .presets import DeviceSampler, get_preset
from .probes import Probe, default_probes
from .protocol import Device, truth_class
from .simulated_device import DeviceParams, SimulatedDevice
from .vector import BatchedCore, FloatArray
from .verification import (
    StatedCoherence,
    Verdict,
    VerificationSettings,
    stated_coherence_of,
    verify_devices,
)

# Scale of each parameter's miscalibration and step: relative for amplitude and β, Hz and
# rad for detuning and phase (the kind of each entry of PARAMETER_NAMES).
_RELATIVE = np.array([True, True, False, False])
_RELATIVE_T = tuple(bool(x) for x in _RELATIVE)
_RESET_OPTIONS = frozenset({"device", "device_params", "miscalibration", "initial_params", "stated_coherence"})
# Which bound brought a parameter back (``info["limits"][name]["bound"]``), by code.
_BOUNDS = ("", "window", "full scale")


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
    amplitude_limit: AmplitudeLimit = field(default_factory=AmplitudeLimit)
    verification: VerificationSettings | None = None

    def __post_init__(self) -> None:
        get_preset(self.device)  # raises naming the preset
        if isinstance(self.verification, Mapping):
            # From a config file: the VerificationSettings fields as a mapping ({} = defaults).
            object.__setattr__(self, "verification", VerificationSettings.from_mapping(self.verification))
        require(self.verification is None or isinstance(self.verification, VerificationSettings),
                "verification", self.verification, "None, a VerificationSettings or a mapping of its fields")
        if isinstance(self.amplitude_limit, Mapping):
            # From a config file: the AmplitudeLimit fields as a mapping.
            object.__setattr__(self, "amplitude_limit", AmplitudeLimit(**dict(self.amplitude_limit)))
        require(isinstance(self.amplitude_limit, AmplitudeLimit), "amplitude_limit", self.amplitude_limit,
                "an AmplitudeLimit or a mapping of its fields")
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
        require(self.calibration_budget >= self.shots_per_probe * len(probes), "shot_budget", self.shot_budget,
                f">= shots_per_probe·len(probes) + verification shots = "
                f"{self.shots_per_probe * len(probes) + self.verification_shots}")
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
        require(all(self.max_step[i] > 0 for i in self.parameter_columns()), "max_step", self.max_step,
                "> 0 for every calibrated parameter")
        require(finite("window", self.window) >= 1, "window", self.window, ">= 1 (× max miscalibration)")
        require(finite("error_floor", self.error_floor) > 0, "error_floor", self.error_floor, "> 0")

    @property
    def verification_shots(self) -> int:
        """Shots the episode-end verification may spend (all its stages; 0 without
        ``verification``)."""
        return 0 if self.verification is None else self.verification.max_shots

    @property
    def calibration_budget(self) -> int:
        """The shots left to the calibration: ``shot_budget`` less the verification's,
        reserved from the start so that the verdict never runs out of shots."""
        return int(self.shot_budget) - self.verification_shots

    def parameter_columns(self) -> list[int]:
        """The columns (indices into ``PARAMETER_NAMES``) of the calibrated parameters."""
        return [PARAMETER_NAMES.index(p) for p in self.parameters]


class DragCalibrationCore(BatchedCore):
    """N copies of a DRAG calibration on simulated devices (shared by GateCalibration and
    DriftTracking): device draw, parameter bookkeeping, batched probes and truth."""

    config_class: type[GateCalibrationConfig] = GateCalibrationConfig
    # Whether the core runs each copy at its own gate (``task.gates``): the GateCalibration
    # cores lengthen an amplitude-limited device's gate; the others keep the nominal gate
    # and record a start that does not fit as clipped and failed.
    lengthens_gate: bool = False

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs)
        self.cfg = self.config_class(**kwargs)
        cfg = self.cfg
        self.preset = get_preset(cfg.device)
        self.sampler = cfg.sampler if cfg.sampler is not None else (DeviceSampler() if cfg.randomize_device else None)
        # The copies share one physics call per measurement, which needs one level count.
        require(self.sampler is None or num_envs == 1 or not self.sampler.mixed_levels,
                "sampler.four_level_fraction", getattr(self.sampler, "four_level_fraction", None),
                f"0 or 1 with {num_envs} batched copies (one level count per physics call), "
                "or a single copy")
        dur = cfg.gate_duration_s if cfg.gate_duration_s is not None else self.preset.gate_duration_s
        self.gate = DragGate(dur)
        self.gate.n_samples(self.preset.params.dt_s)  # duration on the grid, checked now
        self.param_index = np.array(cfg.parameter_columns(), dtype=np.int64)
        # Config constants of ``_apply_params`` as arrays, built once (the same values).
        self._max_step = np.asarray(cfg.max_step)
        self._window_step = cfg.window * np.maximum(self._max_step, np.asarray(cfg.miscalibration))
        self.devices: list[Device] = [self.preset.make(np.random.default_rng(0), open_system=cfg.open_system)
                                               for _ in range(self.num_envs)]
        self.task = CalibrationTask(list(self.devices), self.gate, cfg.probes, cfg.amplitude_limit)
        n = self.num_envs
        self.params = np.zeros((n, 4))
        self.start = np.zeros((n, 4))
        self.unit = np.ones((n, 4))  # per-copy scale of each parameter (miscalibration unit)
        self.last_p1 = np.full((n, len(cfg.probes)), 0.5)
        self.last_error = np.zeros(n)
        self.history: list[list[FloatArray]] = [[] for _ in range(n)]
        # The lab's T1/T2 per copy for the episode-end verdict, when the device has no
        # simulated truth to state them (reset option ``stated_coherence``).
        self.stated: list[StatedCoherence | None] = [None] * n
        # Each copy's gate decision and the parameters a bound brought back this episode:
        # per (copy, parameter) how many times, the last requested and applied values and
        # the bound (codes of _BOUNDS); ``info["limits"]`` reads them.
        self.fits: list[GateFit | None] = [None] * n
        self.clip_count = np.zeros((n, 4), dtype=np.int64)
        self.clip_req = np.zeros((n, 4))
        self.clip_app = np.zeros((n, 4))
        self.clip_bound = np.zeros((n, 4), dtype=np.int64)

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
        stated = options.get("stated_coherence")
        if stated is not None and not isinstance(stated, StatedCoherence):
            raise TypeError(f"options['stated_coherence'] is {type(stated).__name__}: allowed a StatedCoherence")
        if (self.cfg.verification is not None and stated is None and stated_coherence_of(dev) is None):
            raise ValueError("options['stated_coherence'] is required with verification and a non-simulated "
                             "device (the verdict's coherence limit comes from the lab's T1/T2)")
        self.stated[i] = stated

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        if options:
            unknown = set(options) - _RESET_OPTIONS
            if unknown:
                raise ValueError(f"reset options {sorted(unknown)} are unknown: allowed {sorted(_RESET_OPTIONS)}")
        self._draw_device(i, options)
        rng = self.rngs[i]
        u = rng.uniform(-1.0, 1.0, 4).tolist()  # always drawn, so options never shift later draws
        dev = self.devices[i]
        # Four numbers: Python floats, the IEEE operations of the NumPy expression element
        # by element, without an array per operation.
        if truth_class([dev]) is not None:
            # Uncapped: a π pulse that does not fit full scale is the gate fit's to handle.
            ref = nominal_values(dev.current_transmon(), self.gate)  # type: ignore[attr-defined]
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
        start[0] = self._fit_gate(i, start[0])
        # The agent's parameter scale is its step size around where it started (it never
        # sees the reference): the observation shows (params − start) / max_step.
        self.unit[i] = [(abs(x) or 1.0) if rel else 1.0 for x, rel in zip(start, _RELATIVE_T, strict=True)]
        self.start[i] = start
        self.params[i] = start
        self.history[i] = []

    def _fit_gate(self, i: int, amplitude: float) -> float:
        """Choose copy ``i``'s gate from its start amplitude (``amplitude_limit.fit_gate``)
        and return the start amplitude at that gate; a start that cannot fit is clipped to
        full scale, recorded in the copy's limits and its fit's failure."""
        self.clip_count[i] = 0
        self.clip_bound[i] = 0
        limit = self.cfg.amplitude_limit
        if not self.lengthens_gate:
            limit = AmplitudeLimit(FULL_SCALE, 1.0, limit.grid_samples, lengthen=False)
        gate, fit = fit_gate(amplitude, self.gate, self.task.dt_s, limit)
        if self.lengthens_gate:
            self.task.set_gate(i, gate)
        self.fits[i] = fit
        a = fit.amplitude
        if abs(a) > FULL_SCALE:
            applied = math.copysign(FULL_SCALE, a)
            self._note_clip(i, 0, a, applied, 2)
            return applied
        return a

    def _note_clip(self, i: int, column: int, requested: float, applied: float, bound: int) -> None:
        self.clip_count[i, column] += 1
        self.clip_req[i, column] = requested
        self.clip_app[i, column] = applied
        self.clip_bound[i, column] = bound

    def record_clips(self, rows: NDArray[np.int64], requested: FloatArray) -> None:
        """Note every parameter of copies ``rows`` (distinct) whose applied value differs
        from the ``requested`` (n, 4) one: a window or the full-scale amplitude acted."""
        applied = self.params[rows]
        hit = applied != requested
        if not hit.any():
            return
        r, c = np.nonzero(hit)
        i = rows[r]
        req, app = requested[r, c], applied[r, c]
        self.clip_count[i, c] += 1
        self.clip_req[i, c] = req
        self.clip_app[i, c] = app
        full = (c == 0) & (np.abs(req) > FULL_SCALE) & (np.abs(app) == FULL_SCALE)
        self.clip_bound[i, c] = np.where(full, 2, 1)

    def limits_info(self, i: int) -> dict[str, dict[str, Any]]:
        """Copy ``i``'s ``info["limits"]``: {parameter: {bound, requested, applied, count}}
        for every parameter a bound brought back this episode (empty: none)."""
        count = self.clip_count[i]
        if not count.any():
            return {}
        return {PARAMETER_NAMES[c]: {"bound": _BOUNDS[int(self.clip_bound[i, c])],
                                     "requested": float(self.clip_req[i, c]),
                                     "applied": float(self.clip_app[i, c]), "count": int(count[c])}
                for c in range(4) if count[c]}

    def limit_failure(self, i: int) -> str | None:
        """Why copy ``i`` cannot be calibrated within the limits: its gate fit's failure, or
        an amplitude the calibration asked beyond full scale and that is pinned there now."""
        fit = self.fits[i]
        if fit is not None and fit.failure is not None:
            return fit.failure
        if self.clip_bound[i, 0] == 2 and abs(self.params[i, 0]) == FULL_SCALE:
            return (f"amplitude limit: needs |u|={abs(self.clip_req[i, 0]):.3g} at "
                    f"{self.gate_duration_s(i) * 1e9:.4g} ns > 1 (full scale)")
        return None

    def verdicts_at_end(self, idx: list[int], n_step: int, terminated: NDArray[np.bool_]
                        ) -> list[Verdict | None] | None:
        """With ``verification`` configured: the verdict of each copy of ``idx`` whose
        episode ends now (the first ``n_step`` of ``idx`` stepped; ``terminated`` per
        position), None for the others; None without ``verification``.

        The checks run on the copy's own device through the ``Device`` protocol at the
        gate it was calibrated at, with the shots the calibration left; they are added to
        the copy's ``shots_used``."""
        s = self.cfg.verification
        if s is None:
            return None
        out: list[Verdict | None] = [None] * len(idx)
        ending = [j for j in range(n_step) if terminated[j]]
        groups: dict[int, list[int]] = {}
        for j in ending:
            groups.setdefault(id(self.task.gates[idx[j]]), []).append(j)
        for js in groups.values():
            rows = [idx[j] for j in js]
            stated: list[StatedCoherence] = []
            for i in rows:
                sc = self.stated[i] or stated_coherence_of(self.devices[i])
                assert sc is not None  # (a device without truth needs the reset option: checked there)
                stated.append(sc)
            left = [int(self.cfg.shot_budget - self.task.shots_used[i]) for i in rows]
            got = verify_devices([self.devices[i] for i in rows], self.task.gates[rows[0]], self.params[rows],
                                 stated, s, left)
            for j, i, v in zip(js, rows, got, strict=True):
                self.task.shots_used[i] += v.shots_used
                out[j] = v
        return out

    def gate_duration_s(self, i: int) -> float:
        """The duration copy ``i``'s gate is calibrated at."""
        return float(self.task.gates[i].duration_s)

    def step_scale(self, i: int) -> FloatArray:
        return np.asarray(self.cfg.max_step) * self.unit[i]

    def _apply_params(self, i: int, delta_unit: FloatArray) -> None:
        """Move the calibrated parameters by ``delta_unit`` × max_step, within the window."""
        self._move_rows(np.array([i], dtype=np.int64), np.asarray(delta_unit, dtype=np.float64)[None])

    def _move_rows(self, rows: NDArray[np.int64], delta_unit: FloatArray) -> None:
        """``_apply_params`` of copies ``rows`` (distinct) with ``delta_unit`` (n, P); a
        parameter the window or full scale brings back is recorded (``record_clips``)."""
        # The kernel's own sum, element by element (same IEEE operations), before its clip.
        cols = self.param_index
        requested = self.params[rows]
        requested[:, cols] += delta_unit * (self._max_step[cols] * self.unit[rows][:, cols])
        move_params(self.params, rows, delta_unit, self.param_index, self._max_step, self._window_step,
                     self.start, self.unit)
        self.record_clips(rows, requested)

    def normalised_params(self, i: int) -> FloatArray:
        return ((self.params[i] - self.start[i]) / self.step_scale(i))[self.param_index]

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
            "gate_duration_s": self.gate_duration_s(i),
            "limits": self.limits_info(i),
            "limit_failure": self.limit_failure(i),
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
            "gate_duration_s": np.array([self.gate_duration_s(i) for i in idx], dtype=np.float64),
            "limits": _objects([self.limits_info(i) for i in idx]),
            "limit_failure": _objects([self.limit_failure(i) for i in idx]),
        }
        if truth is not None:
            for k, v in truth.items():
                columns[k] = np.asarray(v, dtype=np.float64)
        return columns

    def render_copy(self, i: int) -> NDArray[np.uint8]:
        from .render import render_calibration

        return render_calibration(
            self.task.gates[i].waveforms(self.params[i], self.task.dt_s), self.task.dt_s,
            self.history[i], [p.name for p in self.cfg.probes],
            title=f"{type(self).__name__.replace('Core', '')} copy {i}",
        )


def _objects(values: list[Any]) -> NDArray[Any]:
    """A (n,) object array of ``values`` (an info column of dicts or optional strings)."""
    out = np.empty(len(values), dtype=object)
    for j, v in enumerate(values):
        out[j] = v
    return out
