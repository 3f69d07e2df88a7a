"""The ECR session the two-qubit replay tests run, also as a killable subprocess.

``python replay_ecr_worker.py <folder> [verify]`` runs (or resumes) the session in ``<folder>`` on a
freshly built simulated cross-resonance backend, as a new process after a kill would.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.agents.policies import ScriptedECRPolicy
from pulsecal.envs.ecr_session import CR_ENV_ID
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset
from pulsecal.hardware.adapters.simulated import FaultRates, SimulatedMultiQubitBackend
from pulsecal.hardware.replay import ReplaySettings
from pulsecal.hardware.replay.two_qubit import ECRTruth, run_two_qubit_session, two_qubit_limits

SEED = 3
# CR amplitude 25 % under the spec-sheet setting (0.594), phase and cancellation tone off:
# 1 − F ≈ 0.06 on the preset.
START = (0.446, -0.263, 0.024, 0.516)
# Closed system and 200 shots per sequence: a session of a few seconds.
ENV = {"randomize_device": False, "shot_budget": 20_000, "shots_per_sequence": 200}
# The preset's ZX(π/4) half needs |u| ≈ 0.6 on the CR line, over the default envelope's 0.5.
MAX_CR_AMPLITUDE = 0.8
# A small interleaved RB (a few seconds through the backend): enough to end in a verdict,
# not to decide one at this gate (the config's is larger; docs/lab_sessions.md).
SMALL_RB = {"lengths": [1, 2, 4], "n_random": 2, "shots": 50}


def backend(fault_rate: float = 0.0, *, idempotent_submit: bool = True) -> SimulatedMultiQubitBackend:
    dev = get_multi_qubit_preset("two_transmons_cr").make(np.random.default_rng(SEED), open_system=False)
    return SimulatedMultiQubitBackend(dev, rng=np.random.default_rng(SEED + 1), faults=FaultRates.uniform(fault_rate),
                                      idempotent_submit=idempotent_submit)


def settings(max_steps: int = 5, session_id: str = "ecr", **kwargs: Any) -> ReplaySettings:
    return ReplaySettings(session_id, SEED, START, max_steps=max_steps, env=dict(ENV), env_id=CR_ENV_ID, **kwargs)


def session(folder: Path, *, max_steps: int = 5, fault_rate: float = 0.0, **kwargs: Any) -> tuple[Any, Any]:
    """Run (or resume) the session in ``folder``; returns (result, backend)."""
    b = backend(fault_rate, idempotent_submit=False)
    kwargs.setdefault("sleep", lambda s: None)
    policy = kwargs.pop("policy", None) or ScriptedECRPolicy()
    extra = kwargs.pop("settings", {})
    kwargs.setdefault("limits", two_qubit_limits(b, max_cr_amplitude=MAX_CR_AMPLITUDE))
    result = run_two_qubit_session(b, policy, folder, settings(max_steps, **extra),
                                   truth=ECRTruth(b.device, ENV), **kwargs)
    return result, b


if __name__ == "__main__":
    # ``<folder> verify``: the session ends with the small RB verdict.
    session(Path(sys.argv[1]), settings={"verification": SMALL_RB} if sys.argv[2:] == ["verify"] else {})
