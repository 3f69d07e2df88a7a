"""The textbook CZ update rules as a step-by-step controller: a two-qubit replay baseline."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs import cz_calibration_core as core
from pulsecal.envs.contract import CalibrationState
from pulsecal.envs.cz_calibration import observation_names

# The controller's memory between steps: the previous (amplitude, conditional-phase error)
# and the measured slope of that error in the amplitude (rad per Φ0).
CZScriptedState = tuple[tuple[float, float] | None, float]

# dφ_cond/dA near the CZ point of ``two_transmons_cz`` at the nominal 52 ns (measured on the
# closed-system preset: 2.01 rad at −0.002 Φ0, 4.51 rad at +0.002 Φ0 around 0.1533 Φ0); a
# prior only: the controller replaces it with its own secant once two steps measured it.
PRIOR_SLOPE_RAD_PER_PHI0 = 625.0


def _wrap(x: float) -> float:
    return float(math.atan2(math.sin(x), math.cos(x)))


class ScriptedCZPolicy:
    """The textbook CZ node sequence's update rules (``agents.baselines.cz_textbook``),
    applied once per env step to what the observation reads (``CZCalibration-v0``):

    - conditional phase: amplitude −= (φ_cond − π)/slope, the slope dφ_cond/dA from the
      controller's own successive steps (a secant, kept positive and within a factor of
      ``slope_range`` of the prior), the prior before that;
    - single-qubit phases: each virtual Z += the residual phase its Ramsey reads (the
      textbook's ``phase −= read/VZ_SIGN``), from the step after the amplitude settled
      within ``phase_after_rad`` of π (the residual phases move with the amplitude);
    - length: left as it is (the textbook's chevron picks it; one round of the env's probes
      does not resolve it).

    Deterministic, observations only (and the env's calibration state for the action
    scales, via ``bind``). ``gain`` in (0, 1] damps shot noise.
    """

    def __init__(self, *, gain: float = 0.8, phase_after_rad: float = 0.6, slope_range: float = 4.0) -> None:
        if not (isinstance(gain, int | float) and 0 < gain <= 1):
            raise ValueError(f"ScriptedCZPolicy.gain={gain!r}: allowed (0, 1]")
        if not (isinstance(phase_after_rad, int | float) and 0 < phase_after_rad <= math.pi):
            raise ValueError(f"ScriptedCZPolicy.phase_after_rad={phase_after_rad!r}: allowed (0, pi]")
        if not (isinstance(slope_range, int | float) and slope_range >= 1):
            raise ValueError(f"ScriptedCZPolicy.slope_range={slope_range!r}: allowed >= 1")
        self.gain = float(gain)
        self.phase_after_rad = float(phase_after_rad)
        self.slope_range = float(slope_range)
        self._calibration: CalibrationState | None = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted_cz", "gain": self.gain, "phase_after_rad": self.phase_after_rad,
                "slope_range": self.slope_range}

    def bind(self, calibration_state: CalibrationState) -> None:
        names = tuple(e.name for e in calibration_state.action)
        if names != core.PARAMETER_NAMES or any(e.kind != "step" for e in calibration_state.action):
            raise TypeError(f"ScriptedCZPolicy.bind: env {calibration_state.env_id} is not a CZCalibration-v0 "
                            f"env (actions that step {core.PARAMETER_NAMES}; got {names})")
        self._calibration = calibration_state

    def initial_state(self) -> CZScriptedState:
        return (None, PRIOR_SLOPE_RAD_PER_PHI0)

    def act(self, observation: NDArray[Any], state: CZScriptedState) -> tuple[NDArray[np.float32], CZScriptedState]:
        calibration = self._calibration
        if calibration is None:
            raise RuntimeError("ScriptedCZPolicy.act before bind(calibration_state): the action scales are unknown")
        repeats = int(calibration.settings.get("repeats", 3))
        names = observation_names(repeats)
        obs = np.asarray(observation, dtype=np.float64)
        read = {n: float(obs[names.index(n)]) * math.pi
                for n in ("read_phase_q1", "read_phase_cond", "read_phase_q0")}
        previous, slope = state
        amp = calibration.parameter("amplitude_phi0")
        err = _wrap(read["read_phase_cond"] - math.pi)
        if previous is not None:
            d_amp, d_err = amp - previous[0], err - previous[1]
            if abs(d_amp) > 1e-5 and d_err != 0:
                secant = d_err / d_amp
                lo, hi = PRIOR_SLOPE_RAD_PER_PHI0 / self.slope_range, PRIOR_SLOPE_RAD_PER_PHI0 * self.slope_range
                if lo <= secant <= hi:
                    slope = secant
        correction = {"amplitude_phi0": -err / slope, "length_s": 0.0, "phase_q0_rad": 0.0, "phase_q1_rad": 0.0}
        if abs(err) <= self.phase_after_rad:
            correction["phase_q0_rad"] = -read["read_phase_q0"] / core.VZ_SIGN
            correction["phase_q1_rad"] = -read["read_phase_q1"] / core.VZ_SIGN
        scale = {e.name: e.per_unit_action for e in calibration.action}
        action = np.array([self.gain * correction[n] / scale[n] for n in core.PARAMETER_NAMES])
        return np.clip(action, -1.0, 1.0).astype(np.float32), ((amp, err), slope)


__all__ = ["PRIOR_SLOPE_RAD_PER_PHI0", "CZScriptedState", "ScriptedCZPolicy"]
