"""``pulsecal-replay`` as a test process that counts what its simulated backend played and
can pause inside a session, so a second process meets it there.

    python session_lock_worker.py <pulsecal-replay arguments...>

Environment:
    LOCK_TEST_PLAYED  file this process writes after every job its backend executed:
                      ``{"pid", "shots", "keys"}`` (each execution's shots and job key; the
                      backend's own count, independent of the journal and the ledgers).
    LOCK_TEST_HOLD    optional: after the first job executed, create ``<hold>.holding`` and
                      wait until ``<hold>`` exists (the test's barrier: this process is then
                      inside its session, holding the folder's lock, mid-submit).

The console script runs unchanged (``pulsecal.scripts.replay.main``: its one-line errors
and exit codes); only ``SimulatedBackend.submit`` is wrapped, for every backend it builds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pulsecal.hardware.adapters.simulated import SimulatedBackend

PLAYED = Path(os.environ["LOCK_TEST_PLAYED"])
HOLD = os.environ.get("LOCK_TEST_HOLD")
played: dict[str, Any] = {"pid": os.getpid(), "shots": 0, "keys": []}
_submit = SimulatedBackend.submit


def _write_played() -> None:
    tmp = PLAYED.with_name(PLAYED.name + ".tmp")
    tmp.write_text(json.dumps(played))
    tmp.replace(PLAYED)


def _hold() -> None:
    assert HOLD is not None
    Path(HOLD + ".holding").write_text(str(os.getpid()))
    deadline = time.monotonic() + 300
    while not Path(HOLD).exists():
        if time.monotonic() > deadline:
            print("session_lock_worker: never released", file=sys.stderr)
            os._exit(9)
        time.sleep(0.02)


def counting_submit(self: SimulatedBackend, artifact: Any, shots: int, job_key: str) -> Any:
    before = self.executed_shots
    try:
        return _submit(self, artifact, shots, job_key)
    finally:
        ran = self.executed_shots - before
        if ran:
            played["shots"] += ran
            played["keys"].append(job_key)
            _write_played()
            if HOLD is not None and not Path(HOLD + ".holding").exists():
                _hold()


SimulatedBackend.submit = counting_submit  # type: ignore[method-assign]

if __name__ == "__main__":
    from pulsecal.scripts.replay import main

    sys.argv = ["pulsecal-replay", *sys.argv[1:]]
    main()
