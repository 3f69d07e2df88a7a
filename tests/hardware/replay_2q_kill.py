"""Kill a two-qubit session's worker process twice mid-session, then check what the
journal and the ledger say about it: shared by the CZ and the ECR kill-and-resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import ShotLedger

HERE = Path(__file__).resolve().parent


def journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_twice(worker: str, folder: Path, total_lines: int, *args: str) -> int:
    """Run ``python <worker> <folder> <args>`` and SIGKILL it once its journal holds a third,
    then (a fresh process resuming) two thirds of ``total_lines``; returns the kills that
    landed mid-session."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    kills = 0
    for target in (total_lines // 3, 2 * total_lines // 3):
        p = subprocess.Popen([sys.executable, str(HERE / worker), str(folder), *args], env=env)
        t0 = time.monotonic()
        while p.poll() is None and journal_lines(folder / "journal.jsonl") < target:
            assert time.monotonic() - t0 < 300
            time.sleep(0.001)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    return kills


def check_resumed_journal(folder: Path, *, env_steps: int, device_calls: int, ref_ledger_shots: int,
                          max_in_flight: int) -> None:
    """Every env step applied once, every device call finished once, every job key submitted
    once except keys whose execution died with a killed process (an in-process backend
    forgets them; each further submission is charged by one ``orphaned`` record), at most
    ``max_in_flight`` such keys, and the ledger = the shots of every submission."""
    recs = list(read_journal(folder / "journal.jsonl"))
    assert [r["env_step"] for r in recs if r["event"] == "action"] == list(range(1, env_steps + 1))
    assert [r["step"] for r in recs if r["event"] == "run_done"] == list(range(device_calls))
    submitted = Counter(r["job_key"] for r in recs if r["event"] == "submitting")
    orphaned = [r for r in recs if r["event"] == "orphaned"]
    assert {k: n - 1 for k, n in submitted.items() if n > 1} == dict(Counter(r["job_key"] for r in orphaned))
    assert sum(n > 1 for n in submitted.values()) <= max_in_flight
    ledger = ShotLedger(folder / "ledger.json")
    assert ledger.used_shots == ref_ledger_shots + sum(r["shots"] for r in orphaned)
    assert ledger.used_shots == sum(r["shots"] for r in recs if r["event"] == "submitting")
    assert {k for k, e in ledger.entries.items() if e.state == "reserved"} == set()
