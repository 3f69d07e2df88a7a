"""The textbook ECR update rules as a step-by-step controller: a two-qubit replay baseline."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.contract import CalibrationState
from pulsecal.envs.cr_calibration_core import HALF_ANGLE, ECRShape
from pulsecal.envs.ecr_session import ECR_PARAMETER_NAMES


def single_length_rates(bloch: NDArray[Any], tau_s: float) -> dict[str, float]:
    """The CR rates (rad/s, Sheldon's convention as ``ecr_textbook.fit_cr_hamiltonian``:
    the target feels ½·(IP + z_c·ZP)·σ_P) from the target's Bloch vectors after one CR
    half of effective duration ``tau_s`` with the control in |0⟩ and |1⟩ (``bloch`` (2, 3)).

    One length cannot tell a z rate from the rest, so IZ and ZZ are taken as 0 (they are
    second order in the drive): the rotation that takes +z to the measured direction is
    then about an axis in the xy plane, by the polar angle of the vector. A common readout
    contrast scales all three components alike and drops out of that angle."""
    omega = []
    for bx, by, bz in np.asarray(bloch, dtype=np.float64).reshape(2, 3):
        s = math.hypot(bx, by)
        theta = math.atan2(s, bz)
        # R_n(θ)·z = (n_y sin θ, −n_x sin θ, cos θ) for n in the xy plane.
        nx, ny = (-by / s, bx / s) if s > 0 else (0.0, 0.0)
        omega.append((theta * nx / tau_s, theta * ny / tau_s))
    (x0, y0), (x1, y1) = omega
    return {"ix": 0.5 * (x0 + x1), "iy": 0.5 * (y0 + y1), "zx": 0.5 * (x0 - x1), "zy": 0.5 * (y0 - y1)}


def _wrap(x: float) -> float:
    return float(math.atan2(math.sin(x), math.cos(x)))


class ScriptedECRPolicy:
    """The textbook ECR's tomography update (``agents.baselines.ecr_textbook.TextbookECR``,
    Sheldon et al. 2016), applied once per env step to the one-length CR tomography the
    observation of ``CRCalibration-v0`` reads (``single_length_rates``):

    1. CR phase −= atan(ZY/ZX): all of the conditional rate into ±ZX, whichever is nearer
       (the textbook's atan2 turns a negative ZX by π, which the env's reward does not ask);
    2. cancellation tone −= (IX + i·IY)/(2π·Ω) of the CR's own IX/IY (the tone's part taken
       out), rotated by the phase change: the tone drives the target at 2π·Ω·u;
    3. CR amplitude ×= (π/4)/(|ZX|·τ_half): ZX linear in the amplitude at weak drive.

    Each correction is damped by ``gain`` and clipped to the env's largest step. Deterministic,
    observations only, with the env's calibration state (``bind``) for the knobs, the action
    scales, the shape and the spec-sheet Rabi frequency the env scales its pulses with.
    """

    def __init__(self, *, gain: float = 0.8) -> None:
        if not (isinstance(gain, int | float) and not isinstance(gain, bool) and 0 < gain <= 1):
            raise ValueError(f"ScriptedECRPolicy.gain={gain!r}: allowed (0, 1]")
        self.gain = float(gain)
        self._calibration: CalibrationState | None = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted_ecr", "gain": self.gain}

    def bind(self, calibration_state: CalibrationState) -> None:
        names = tuple(e.name for e in calibration_state.action)
        settings = calibration_state.settings
        if (names != ECR_PARAMETER_NAMES or any(e.kind != "step" for e in calibration_state.action)
                or not {"rabi_hz", "dt_s", "shape"} <= set(settings)):
            raise TypeError(f"ScriptedECRPolicy.bind: env {calibration_state.env_id} is not the session form of "
                            f"CRCalibration-v0 (actions that step {ECR_PARAMETER_NAMES}; got {names})")
        self._calibration = calibration_state

    def initial_state(self) -> None:
        return None

    def act(self, observation: NDArray[Any], state: None) -> tuple[NDArray[np.float32], None]:
        cal = self._calibration
        if cal is None:
            raise RuntimeError("ScriptedECRPolicy.act before bind(calibration_state): the action scales are unknown")
        shape = ECRShape(**cal.settings["shape"])
        dt_s = float(cal.settings["dt_s"])
        rabi = float(cal.settings["rabi_hz"])
        tau = float(shape.envelope().sum()) * dt_s
        h = single_length_rates(np.asarray(observation, dtype=np.float64)[:6], tau)
        amp, cancel, cancel_phase = (cal.parameter(n) for n in ("cr_amp", "cancel_amp", "cancel_phase_rad"))
        # Onto whichever sign of ZX is nearer: either is the same ECR up to a virtual Z on
        # the target (the env's reward reads |ZX|), and a phase step is small.
        dphi = -math.atan(h["zy"] / h["zx"]) if h["zx"] != 0 else -math.copysign(math.pi / 2, h["zy"])
        zx = math.hypot(h["zx"], h["zy"])
        own = complex(h["ix"], h["iy"]) - 2 * math.pi * rabi * cancel * complex(math.cos(cancel_phase),
                                                                                math.sin(cancel_phase))
        tone = -own * complex(math.cos(dphi), math.sin(dphi)) / (2 * math.pi * rabi)
        new_amp = min(1.0, amp * HALF_ANGLE / max(zx * tau, 1e-12))
        scale = {e.name: e.per_unit_action for e in cal.action}
        turn = _wrap(math.atan2(tone.imag, tone.real) - cancel_phase) if abs(tone) > 0 else 0.0
        # The tone's phase moves by at most one step: until it points at the wanted tone,
        # its amplitude goes to the wanted tone's part along its current phase (none past
        # a right angle), so a tone on the wrong axis is not grown while it turns.
        lag = max(0.0, abs(turn) - scale["cancel_phase_rad"])
        want = min(1.0, abs(tone)) * max(0.0, math.cos(lag))
        correction = {"cr_amp": new_amp - amp, "cr_phase_rad": dphi, "cancel_amp": want - cancel,
                      "cancel_phase_rad": turn}
        action = np.array([self.gain * correction[n] / scale[n] for n in ECR_PARAMETER_NAMES])
        return np.clip(action, -1.0, 1.0).astype(np.float32), None


__all__ = ["ScriptedECRPolicy", "single_length_rates"]
