"""The session the kill tests run, in a module small enough to preload in a forkserver.

``test_replay_kill`` starts its killable workers from a ``forkserver`` that preloads this
module (and with it numpy, scipy and ``pulsecal.hardware.replay``, ~1 s, once), so every
worker is a fork of a fresh, single-threaded interpreter: never of the pytest process,
which may hold JAX's or torch's threads (``os.fork()`` of a multithreaded process can
deadlock the child). The BLAS thread pools are held to one thread (``SINGLE_THREADED_ENV``,
set when the forkserver starts) so the server really has no other thread to fork.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.hardware.replay import (
    ReplaySettings,
    miscalibrated_start,
    run_session,
    simulated_backend,
)

SEED = 11
FAULTS = 0.1
SINGLE_THREADED_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                       "NUMBA_NUM_THREADS": "1"}


def settings(max_steps: int = 5) -> ReplaySettings:
    b = simulated_backend(seed=SEED)
    start = miscalibrated_start(b.device.current_transmon(), 20e-9, amplitude_rel=-0.04, beta_rel=0.4,
                                detuning_hz=-0.4e6)
    return ReplaySettings("kill", SEED, tuple(start.as_array()), max_steps=max_steps,  # type: ignore[arg-type]
                          env={"shots_per_probe": 40, "shot_budget": 100_000})


def session(folder: Path, *, max_steps: int = 5, fault_rate: float = FAULTS, fsync: bool = True) -> object:
    """Run (or resume) the session in ``folder`` on a freshly built simulated backend, as a
    new process would; returns the backend (its ``executed_shots`` are this run's)."""
    backend = simulated_backend(seed=SEED, fault_rate=fault_rate, idempotent_submit=False)
    run_session(backend, ScriptedPolicy(), folder, settings(max_steps), sleep=lambda s: None, plots=False,
                fsync=fsync)
    return backend


def work(folder: str) -> None:
    """A killable worker's target."""
    session(Path(folder))


def check_forked_worker() -> None:
    """Exit 0 in a worker forked from a warm, single-threaded forkserver (1: not preloaded,
    2: the forkserver it was forked from runs more than one thread)."""
    if "replay_kill_forkserver" not in sys.modules:
        sys.exit(1)
    if len(os.listdir(f"/proc/{os.getppid()}/task")) != 1:
        sys.exit(2)
