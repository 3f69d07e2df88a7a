"""The CZ session on qibolab's emulator (``pulsecal_emulator_2q_cz``) the emulator CZ tests
run, also as a killable subprocess.

``python replay_2q_emulator_worker.py <folder> [max_steps]`` runs (or resumes) the session in
``<folder>`` on a fresh emulator backend, as a new process after a kill would. The emulator
samples its shots from NumPy's global generator; ``KeySeeded`` seeds it from each job's key
before the job runs, so a job re-run after a kill returns the counts it returned the first
time and a resumed session can be compared with an uninterrupted one exactly.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.agents.policies import ScriptedCZPolicy
from pulsecal.hardware.adapters.qibolab import QibolabBackend
from pulsecal.hardware.package_data import emulator_platforms_dir
from pulsecal.hardware.replay import ReplaySettings
from pulsecal.hardware.replay.two_qubit import run_two_qubit_session

PLATFORM = "pulsecal_emulator_2q_cz"
SEED = 3
# configs/replay_experiment/cz_session_emulator.yaml's start: 5 mΦ0 above the nominal
# amplitude, both virtual Zs off.
START = (0.1583, 52e-9, 0.8, -1.1)
ENV = {"shot_budget": 20_000, "shots_per_probe": 200}


class KeySeeded:
    """A ``QibolabBackend`` whose every job samples its shots from a generator seeded by the
    job's key (module docstring); ``executed_shots`` counts what the platform played."""

    def __init__(self) -> None:
        import os

        os.environ["QIBOLAB_PLATFORMS"] = str(emulator_platforms_dir())
        self.inner = QibolabBackend(PLATFORM)
        self.name = self.inner.name
        self.executed_shots = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit(self, artifact: Any, shots: int, job_key: str) -> Any:
        if self.inner.find(job_key) is None:
            np.random.seed(zlib.crc32(job_key.encode()))  # noqa: NPY002
            self.executed_shots += shots
        return self.inner.submit(artifact, shots, job_key)


def settings(max_steps: int = 6, session_id: str = "cz_emulator") -> ReplaySettings:
    return ReplaySettings(session_id, SEED, START, max_steps=max_steps, env=dict(ENV),
                          env_id="pulsecal/CZCalibration-v0")


def session(folder: Path, *, max_steps: int = 6, **kwargs: Any) -> tuple[Any, KeySeeded]:
    """Run (or resume) the session in ``folder``; returns (result, backend)."""
    b = KeySeeded()
    kwargs.setdefault("sleep", lambda s: None)
    result = run_two_qubit_session(b, kwargs.pop("policy", None) or ScriptedCZPolicy(), folder,  # type: ignore[arg-type]
                                   settings(max_steps), **kwargs)
    return result, b


if __name__ == "__main__":
    session(Path(sys.argv[1]), max_steps=int(sys.argv[2]) if len(sys.argv) > 2 else 6)
