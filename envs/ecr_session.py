"""CRCalibration-v0 as a replay session runs it: on the device it is handed, without truth.

``CRCalibration-v0`` draws a simulated device at every reset and reports its truth in
``info``. ``ECRSessionEnv`` is the same core, observation, action, reward and shot plan
(an agent trained on ``CRCalibration-v0`` replays on it unchanged), with

- ``reset(options={"device": d, "initial_params": (cr_amp, cr_phase_rad, cancel_amp,
  cancel_phase_rad)})``: every tomography round runs on ``d`` (any envs ``Device`` with the
  channels of the preset: ``drive:q0@q1``, ``drive:q0``, ``drive:q1``); without a device
  the env draws one as ``CRCalibration-v0`` does, without initial parameters its start;
- the spec sheet instead of the device's truth wherever the env needs a device figure:
  the Rabi frequency that scales the π and π/2 pulses and the nominal CR amplitude that
  scales the observation and the amplitude action are the preset's (its nominal model),
  which a lab has; on the preset itself they are the same numbers;
- ``info`` without the truth: shots, device time, the measured half-CR error
  (``estimated_error`` / ``infidelity_estimate``, ``half_cr_error``) and the knobs;
- ``calibration_state()``: the env contract (``envs.contract``) a session, a scripted
  policy and a report read; its settings add ``dt_s``, ``rabi_hz`` and ``nominal_cr_amp``
  (the figures the env scales with), so a controller converts rates into knob changes.

``verification`` is refused as an env setting: the session verifies the final gate with
``verify(device, settings)`` through its journaled device (interleaved two-qubit RB as
plain pulse sequences, ``rb2q.run_irb_sequences``), not through the simulated device's
composed processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .contract import (
    CalibrationState,
    Gate,
    Measurement,
    ShotPlan,
    refuse_env_verification,
    session_reset_options,
    stepped_gate_state,
)
from .cr_calibration_core import (
    CONTROL,
    OBS_NAMES,
    CRCalibrationCore,
    ECRKnobs,
    drive_rabi_hz,
    ecr_ops,
    ecr_truth,
    nominal_knobs,
)
from .multi_qubit_model import DeviceModel
from .multi_qubit_presets import get_multi_qubit_preset
from .protocol import Device, PulseSequence
from .rb2q import session_verdict
from .vector import SingleCoreEnv
from .verification import Verdict

CR_ENV_ID = "pulsecal/CRCalibration-v0"
ECR_PARAMETER_NAMES: tuple[str, ...] = ("cr_amp", "cr_phase_rad", "cancel_amp", "cancel_phase_rad")
ECR_PARAMETER_UNITS: tuple[str, ...] = ("", "rad", "", "rad")


class ECRSessionCore(CRCalibrationCore):
    """``CRCalibrationCore`` on a given device, from a given start, without truth."""

    truth_keys: tuple[str, ...] = ("estimated_error", "infidelity_estimate")

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        refuse_env_verification(self.cfg.verification, "ECR")
        model = get_multi_qubit_preset(self.cfg.preset).params.model
        assert isinstance(model, DeviceModel)
        self.spec_model = model
        self.spec_rabi_hz = drive_rabi_hz(model, CONTROL)
        self.spec_nominal = nominal_knobs(model, self.cfg.shape)

    def _rabi_hz(self, i: int) -> float:
        return self.spec_rabi_hz

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        device, start = session_reset_options(options)
        if device is None:
            super()._reset_copy(i, {})
        else:
            self.devices[i] = device
            self.nominal[i] = self.spec_nominal
            self.knobs[i] = self._start_knobs(self.rngs[i], self.spec_nominal)
            self.shots_used[i] = 0
        if start is not None:
            p = np.asarray(start, dtype=np.float64)
            if p.shape != (4,) or not np.all(np.isfinite(p)) or not (0 <= p[0] <= 1 and 0 <= p[2] <= 1):
                raise ValueError(f"options['initial_params']={start!r}: allowed 4 finite numbers "
                                 f"{ECR_PARAMETER_NAMES}, both amplitudes in [0, 1]")
            self.knobs[i] = ECRKnobs.from_array(p)

    def _truth_info(self, dev: Any, k: ECRKnobs, rabi: float, measured_error: float) -> dict[str, float]:
        return {"estimated_error": measured_error, "infidelity_estimate": measured_error}

    def true_metrics(self, device: Any, params: Any) -> dict[str, float]:
        """The simulation truth of the ECR at ``params`` (``ECR_PARAMETER_NAMES``) as this env
        plays it on the simulated multi-qubit ``device`` (a session's report only)."""
        t = ecr_truth(device, ECRKnobs.from_array(np.asarray(params, dtype=np.float64)), self.cfg.shape,
                      self.spec_rabi_hz)
        return {"fidelity": t.fidelity, "infidelity": t.infidelity, "leakage": t.leakage,
                "coherence_limit": t.coherence_limit}

    def gate_ops(self, index: int = 0) -> list[Any]:
        """The current ECR's plays and barriers (the gate a verdict interleaves)."""
        k = self.knobs[index]
        assert k is not None
        return ecr_ops(k, self.cfg.shape, self._rabi_hz(index), self.spec_model.dt_s)

    def gate_sequence(self, index: int = 0) -> PulseSequence:
        return PulseSequence(tuple(self.gate_ops(index)))

    def calibration_state(self, index: int = 0, env_id: str = CR_ENV_ID) -> CalibrationState:
        cfg = self.cfg
        k = self.knobs[index]
        values = k.as_array() if k is not None else np.full(4, math.nan)
        nom = self.nominal[index] or self.spec_nominal
        scale = (cfg.amp_step * nom.cr_amp, cfg.phase_step_rad, cfg.cancel_step, cfg.phase_step_rad)
        bloch = tuple(float(x) for x in self.last_bloch[index].reshape(-1))
        measurement = Measurement(OBS_NAMES[:6], bloch, (0, 6))
        per_step = 6 * cfg.shots_per_sequence
        steps = (cfg.shot_budget - per_step) // per_step
        plan = ShotPlan(cfg.shot_budget, per_step, per_step, steps, steps)
        shape = cfg.shape
        duration = (2 * shape.half_samples + shape.x_samples) * float(self.spec_model.dt_s)
        return stepped_gate_state(env_id, Gate("ECR", duration), ECR_PARAMETER_NAMES, ECR_PARAMETER_UNITS, scale,
                                  values, measurement, plan, cfg, dt_s=float(self.spec_model.dt_s),
                                  rabi_hz=self.spec_rabi_hz, nominal_cr_amp=nom.cr_amp)


class ECRSessionEnv(SingleCoreEnv):
    """``CRCalibration-v0`` as a replay session runs it (module docstring)."""

    core_class = ECRSessionCore

    def calibration_state(self, index: int = 0) -> CalibrationState:
        return self.core.calibration_state(index)  # type: ignore[attr-defined, no-any-return]

    def verify(self, device: Device, verification: Mapping[str, Any]) -> Verdict:
        """The verdict on the current ECR: interleaved two-qubit RB (``rb2q``, settings the
        ``RB2QSettings`` fields of ``verification``) run as plain pulse sequences on
        ``device``, so a session's journaled backend runs, charges and replays them. The
        single-qubit natives are the spec sheet's textbook pulses, the coherence limit the
        settings' ``stated`` T1/T2 or else the spec sheet's (never a device's truth)."""
        core: ECRSessionCore = self.core  # type: ignore[assignment]
        return session_verdict(device, "ECR", core.gate_ops(), verification, core.spec_model,
                               get_multi_qubit_preset(core.cfg.preset).params.channels)


__all__ = ["CR_ENV_ID", "ECR_PARAMETER_NAMES", "ECR_PARAMETER_UNITS", "ECRSessionCore", "ECRSessionEnv"]
