"""The two-qubit calibration envs as a replay session runs them: on a device it is handed.

``CZCalibration-v0`` draws its own simulated device at every reset and reports the truth
of it in ``info``. A replay session (``pulsecal.hardware.replay``) instead hands the env
the device it must measure through (a journaled, safety-checked backend) and the gate the
lab starts from, and has no truth to report. ``CZSessionEnv`` is that env: the same core,
observation, action, reward and shot plan (an agent trained on ``CZCalibration-v0``
replays on it unchanged), with

- ``reset(options={"device": d, "initial_params": (amplitude_phi0, length_s,
  phase_q0_rad, phase_q1_rad)})``: the reference probes and every round run on ``d``
  (any envs ``Device`` with the multi-qubit channels of the preset); without a device the
  env draws one as ``CZCalibration-v0`` does, without initial parameters its start;
- ``info`` without the truth (the device may be hardware): shots, device time, the
  estimated error, the measured conditional phase and the parameters;
- ``calibration_state()``: the env contract (``envs.contract``) a session, a scripted
  policy and a report read;
- ``verify(device, settings)``: the session's verdict on the final CZ, interleaved
  two-qubit RB run through the device (``rb2q.session_verdict``; the env setting
  ``verification`` is refused: the session verifies, not the env).

``replay_env_class(env_id)`` maps a registered two-qubit env id to its session form;
``REPLAY_ENV_IDS`` lists the ids that have one. This is where a new two-qubit env is
made replayable: the hardware layer asks here and knows no env id itself. The ECR
session form of ``CRCalibration-v0`` is ``envs.ecr_session.ECRSessionEnv``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import cz_calibration_core as core
from .contract import (
    CalibrationState,
    Gate,
    Measurement,
    ShotPlan,
    refuse_env_verification,
    session_reset_options,
    stepped_gate_state,
)
from .cz_calibration import CZCalibrationCore
from .ecr_session import CR_ENV_ID, ECRSessionEnv
from .protocol import Device
from .rb2q import session_verdict
from .vector import SingleCoreEnv
from .verification import Verdict

CZ_ENV_ID = "pulsecal/CZCalibration-v0"
PARAMETER_UNITS: tuple[str, ...] = ("Phi0", "s", "rad", "rad")


class CZSessionCore(CZCalibrationCore):
    """``CZCalibrationCore`` on a given device, from a given start, without truth."""

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        refuse_env_verification(self.cfg.verification, "CZ")

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        device, start = session_reset_options(options)
        if device is None:
            super()._reset_copy(i, {})
        else:
            # As ``CZCalibrationCore._reset_copy`` with the device given: the same draws
            # from the copy's generator, so without a sampler a seed picks the same start
            # either way.
            rng = self.rngs[i]
            rng.integers(2**63)  # the device seed the simulated reset would draw
            self.devices[i] = device
            amp, length, _, _ = self.cfg.nominal_params
            u = rng.uniform(-1.0, 1.0, 2)
            phases = rng.uniform(-math.pi, math.pi, 2)
            self.params[i] = [amp + u[0] * self.cfg.start_amplitude_phi0,
                              length + u[1] * self.cfg.start_length_s, *phases]
            self._clip(i)
            self.shots_used[i] = 0
            self.history[i] = []
            self.readings[i] = None
            counts = device.run(core.reference_sequences(self.pulse), self.cfg.reference_shots)
            self.shots_used[i] = 7 * self.cfg.reference_shots
            self.offsets[i] = core.reference_offsets(np.asarray(counts)[None])[0]
        if start is not None:
            p = np.asarray(start, dtype=np.float64)
            if p.shape != (4,) or not np.all(np.isfinite(p)):
                raise ValueError(f"options['initial_params']={start!r}: allowed 4 finite numbers "
                                 f"{core.PARAMETER_NAMES}")
            self.params[i] = p
            self._clip(i)

    def _info(self, i: int) -> dict[str, Any]:
        dev = self.devices[i]
        r = self.readings[i]
        assert dev is not None and r is not None
        return {
            "shots_used": int(self.shots_used[i]),
            "device_time_s": float(dev.clock_s),
            "estimated_error": float(r.estimated_error[0]),
            "infidelity_estimate": float(r.estimated_error[0]),
            "measured_conditional_phase": float(r.conditional_phase[0]),
            "params": self.params[i].copy(),
            "dt_s": float(self.pulse.dt_s),
        }

    def calibration_state(self, index: int = 0, env_id: str = CZ_ENV_ID) -> CalibrationState:
        cfg = self.cfg
        scale = (cfg.max_step_amplitude_phi0, cfg.max_step_length_s, cfg.max_step_phase_rad,
                 cfg.max_step_phase_rad)
        values = self.params[index]
        r = self.readings[index]
        p1 = tuple(float(x) for x in r.p1[0]) if r is not None else (math.nan,) * 6
        measurement = Measurement(core.PROBE_NAMES[:6], p1, (0, 6))
        round_shots = cfg.round_shots
        reset_shots = 7 * cfg.reference_shots + round_shots
        steps = (cfg.shot_budget - reset_shots) // round_shots
        plan = ShotPlan(cfg.shot_budget, reset_shots, round_shots, steps, steps)
        duration = float(values[1]) + self.pulse.settle_samples * self.pulse.dt_s
        return stepped_gate_state(env_id, Gate("CZ", duration), core.PARAMETER_NAMES, PARAMETER_UNITS, scale, values,
                                  measurement, plan, cfg)


class CZSessionEnv(SingleCoreEnv):
    """``CZCalibration-v0`` as a replay session runs it (module docstring)."""

    core_class = CZSessionCore

    def calibration_state(self, index: int = 0) -> CalibrationState:
        return self.core.calibration_state(index)  # type: ignore[attr-defined, no-any-return]

    def verify(self, device: Device, verification: Mapping[str, Any]) -> Verdict:
        """The verdict on the current CZ (flux pulse and its two virtual Zs): interleaved
        two-qubit RB as plain pulse sequences on ``device`` (``rb2q.session_verdict``), from
        the spec sheet alone."""
        c: CZSessionCore = self.core  # type: ignore[assignment]
        return session_verdict(device, "CZ", core._gate_ops(c.pulse, c.params[0]), verification,
                               c.preset.params.model, c.preset.params.channels)


REPLAY_ENVS: Mapping[str, type[SingleCoreEnv]] = {CZ_ENV_ID: CZSessionEnv, CR_ENV_ID: ECRSessionEnv}
REPLAY_ENV_IDS: tuple[str, ...] = tuple(sorted(REPLAY_ENVS))


def replay_env_class(env_id: str) -> type[SingleCoreEnv] | None:
    """The session form of the two-qubit env ``env_id`` (None: it has none)."""
    return REPLAY_ENVS.get(env_id)


__all__ = ["CZ_ENV_ID", "PARAMETER_UNITS", "REPLAY_ENVS", "REPLAY_ENV_IDS", "CZSessionCore", "CZSessionEnv",
           "replay_env_class"]
