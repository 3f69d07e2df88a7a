"""The two-qubit session the CZ replay tests run, also as a killable subprocess.

``python replay_2q_worker.py <folder>`` runs (or resumes) the session in ``<folder>`` on a
freshly built simulated two-qubit backend, as a new process after a kill would.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.agents.policies import ScriptedCZPolicy
from pulsecal.envs.cz_calibration import NOMINAL_PARAMS
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset
from pulsecal.hardware.adapters.simulated import FaultRates, SimulatedMultiQubitBackend
from pulsecal.hardware.replay import ReplaySettings
from pulsecal.hardware.replay.two_qubit import CZTruth, run_two_qubit_session

SEED = 3
# A start 5 mΦ0 above the nominal amplitude with both virtual Zs off: 1 − F ≈ 0.3.
START = (NOMINAL_PARAMS[0] + 0.005, NOMINAL_PARAMS[1], 0.8, -1.1)
# Closed system and 200 shots per probe: a session of a few seconds.
ENV = {"open_system": False, "shot_budget": 20_000, "shots_per_probe": 200, "reference_shots": 400}


def backend(fault_rate: float = 0.0, *, idempotent_submit: bool = True) -> SimulatedMultiQubitBackend:
    dev = get_multi_qubit_preset("two_transmons_cz").make(np.random.default_rng(SEED), open_system=False)
    return SimulatedMultiQubitBackend(dev, rng=np.random.default_rng(SEED + 1), faults=FaultRates.uniform(fault_rate),
                                      idempotent_submit=idempotent_submit)


def settings(max_steps: int = 6, session_id: str = "cz") -> ReplaySettings:
    return ReplaySettings(session_id, SEED, START, max_steps=max_steps, env=dict(ENV),
                          env_id="pulsecal/CZCalibration-v0")


def session(folder: Path, *, max_steps: int = 6, fault_rate: float = 0.0, **kwargs: Any) -> tuple[Any, Any]:
    """Run (or resume) the session in ``folder``; returns (result, backend)."""
    b = backend(fault_rate, idempotent_submit=False)
    kwargs.setdefault("sleep", lambda s: None)
    policy = kwargs.pop("policy", None) or ScriptedCZPolicy()
    result = run_two_qubit_session(b, policy, folder, settings(max_steps),
                                   truth=CZTruth(b.device), **kwargs)
    return result, b


if __name__ == "__main__":
    session(Path(sys.argv[1]))
