"""The textbook calibration as a fixed-gain controller: a replay baseline needing no training."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.calibration import analyse
from pulsecal.envs.contract import CalibrationState, probes_from_json

# The controller's memory between steps: the previous (β, DRAG-family angle) and the
# measured slope of the angle in β (None until two steps have measured it).
ScriptedState = tuple[tuple[float, float] | None, float | None]


class ScriptedPolicy:
    """The textbook calibration as a fixed-gain controller on the env's observation.

    Reads the probe populations of the observation with ``calibration.analyse`` into the
    per-gate error angle of each family and steps each calibrated parameter against it:
    amplitude × (1 − ε_amp/π) (SX·X^n), detuning − angle/(2π·T_gate) (Ramsey), and β by a
    secant on the DRAG-family angle (its slope is device-dependent, so it is measured from
    the controller's own successive steps; the first step explores by ``explore`` × max
    step). ``gain`` < 1 damps shot noise. A baseline before trained agents land, and the
    reference the agents are compared against on hardware.

    It needs the env's calibration state (``bind``, before every ``act``): the probe set,
    the gate length, the current parameters and what one unit of action changes. It
    drives envs whose observation starts with the probe fractions and whose action steps
    the calibrated parameters (GateCalibration-v0).

    Args:
        gain: fraction of the estimated correction applied per step, in (0, 1].
        explore: first β step, in units of the env's β max step, in (0, 1].
    """

    def __init__(self, *, gain: float = 0.8, explore: float = 0.3) -> None:
        if not (isinstance(gain, int | float) and 0 < gain <= 1):
            raise ValueError(f"ScriptedPolicy.gain={gain!r}: allowed (0, 1]")
        if not (isinstance(explore, int | float) and 0 < explore <= 1):
            raise ValueError(f"ScriptedPolicy.explore={explore!r}: allowed (0, 1]")
        self.gain = float(gain)
        self.explore = float(explore)
        self._calibration: CalibrationState | None = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted", "gain": self.gain, "explore": self.explore}

    def bind(self, calibration_state: CalibrationState) -> None:
        state = calibration_state
        probes = probes_from_json(state.settings["probes"]) if state.settings.get("probes") else ()
        if (not probes or state.measurement.names != tuple(p.name for p in probes)
                or state.measurement.observation_slice[0] != 0
                or any(e.kind != "step" for e in state.action)):
            raise TypeError(f"ScriptedPolicy.bind: env {state.env_id} is not a GateCalibration-v0 env "
                            "(probe fractions first in the observation, actions that step parameters)")
        self._calibration = state

    def initial_state(self) -> ScriptedState:
        return (None, None)

    def act(self, observation: NDArray[Any], state: ScriptedState) -> tuple[NDArray[np.float32], ScriptedState]:
        calibration = self._calibration
        if calibration is None:
            raise RuntimeError("ScriptedPolicy.act before bind(calibration_state): the probe set is unknown")
        previous, slope = state
        probes = probes_from_json(calibration.settings["probes"])
        duration_s = calibration.gate.duration_s
        obs = np.asarray(observation, dtype=np.float64)
        angle = analyse(obs[: len(probes)][None], probes, duration_s).family_angle[0]
        scale = {e.name: e.per_unit_action for e in calibration.action}
        correction = {
            "amplitude": -calibration.parameter("amplitude") * angle[0] / math.pi,
            "detuning_hz": -angle[2] / (2.0 * math.pi * duration_s),
            "phase": 0.0,
        }
        # β's step scale even when β is not calibrated: it only sets the secant's threshold.
        beta_scale = scale.get("beta_s", math.nan)
        beta, drag_angle = calibration.parameter("beta_s"), float(angle[1])
        if previous is not None:
            step_beta, step_angle = beta - previous[0], drag_angle - previous[1]
            if abs(step_beta) > 1e-3 * beta_scale and step_angle != 0 and math.isfinite(step_angle / step_beta):
                slope = step_angle / step_beta
        if slope is None:
            correction["beta_s"] = -self.explore * beta_scale * (math.copysign(1.0, drag_angle) if drag_angle else 1.0)
        else:
            correction["beta_s"] = -drag_angle / slope
        names = [e.name for e in calibration.action]
        wanted = np.array([correction[n] for n in names])
        action = self.gain * wanted / np.array([scale[n] for n in names])
        return np.clip(action, -1.0, 1.0).astype(np.float32), ((beta, drag_angle), slope)
