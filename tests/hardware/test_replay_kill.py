"""SIGKILL a replay session at random points and resume it from its journal: the resumed
session ends with exactly the parameters of an uninterrupted one with the same seed.

Each worker is a forked child of the test process (so a start costs milliseconds, not the
two seconds of importing the physics), killed with SIGKILL once the journal has grown to a
random number of lines — any point of the session: mid-submit, between a job's result and
its ``completed`` record, inside a ledger write, after the last job but before the report.
The next worker resumes the same folder; a session that reaches its end starts over in a
new folder. With fault injection on, kills also land in the middle of retries. 24 kills
take ~5 s this way, so both variants run by default; the slow one does 100.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.replay import (
    ReplaySettings,
    ScriptedPolicy,
    miscalibrated_start,
    run_session,
    simulated_backend,
)

SEED = 11
FAULTS = 0.1


def _settings() -> ReplaySettings:
    b = simulated_backend(seed=SEED)
    start = miscalibrated_start(b.device.current_transmon(), 20e-9, amplitude_rel=-0.04, beta_rel=0.4,
                                detuning_hz=-0.4e6)
    return ReplaySettings("kill", SEED, tuple(start.as_array()), max_steps=5,  # type: ignore[arg-type]
                          env={"shots_per_probe": 40, "shot_budget": 100_000})


def _session(folder: Path) -> None:
    backend = simulated_backend(seed=SEED, fault_rate=FAULTS, idempotent_submit=False)
    run_session(backend, ScriptedPolicy(), folder, _settings(), sleep=lambda s: None, plots=False)


def _worker(folder: str) -> None:
    try:
        _session(Path(folder))
    finally:
        os._exit(0)  # never run the parent's (pytest's) exit handlers in the child


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _finished(folder: Path) -> bool:
    return any(r["event"] == "session_finished" for r in read_journal(folder / "journal.jsonl"))


def _kill_and_resume(tmp_path: Path, kills: int) -> None:
    ref = tmp_path / "ref"
    _session(ref)
    ref_final = next(r for r in read_journal(ref / "journal.jsonl") if r["event"] == "session_finished")
    total = _lines(ref / "journal.jsonl")

    ctx = mp.get_context("fork")
    folder = tmp_path / "killed"
    journal = folder / "journal.jsonl"
    rng = np.random.default_rng(SEED)
    done_kills = 0
    t0 = time.monotonic()
    while done_kills < kills:
        if _finished(folder):
            # The session got to the end before this kill: start it over in a new folder
            # so every kill lands in unfinished work.
            folder = tmp_path / f"killed{done_kills}"
            journal = folder / "journal.jsonl"
        have = _lines(journal)
        # A resumed process rewrites nothing finished, so the journal grows from where it
        # was; aim up to a quarter of a session further (past the end: after the report).
        target = have + int(rng.integers(1, total // 4))
        p = ctx.Process(target=_worker, args=(str(folder),))
        p.start()
        while p.is_alive() and _lines(journal) < target:
            time.sleep(0.0005)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            done_kills += 1
        p.join()
        assert time.monotonic() - t0 < 600
    # Resume every folder to the end, then compare with the uninterrupted session.
    for f in sorted(tmp_path.glob("killed*")):
        _session(f)
        recs = list(read_journal(f / "journal.jsonl"))
        fin = [r for r in recs if r["event"] == "session_finished"]
        assert len(fin) == 1
        assert fin[0]["final_params"] == ref_final["final_params"]
        # Every env step applied once in the audit log, every device call finished once.
        assert [r["env_step"] for r in recs if r["event"] == "action"] == [1, 2, 3, 4, 5]
        assert [r["step"] for r in recs if r["event"] == "run_done"] == list(range(6))
        # Shots: the uninterrupted count plus the charged re-runs of jobs whose first
        # execution died with a killed process — never fewer.
        orphans = sum(r["shots"] for r in recs if r["event"] == "orphaned")
        assert ShotLedger(f / "ledger.json").used_shots == ref_final["ledger_shots"] + orphans


def test_five_sigkills_resume_to_the_same_calibration(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, kills=5)


def test_twenty_four_sigkills_resume_to_the_same_calibration(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, kills=24)


@pytest.mark.slow
def test_hundred_sigkills_resume_to_the_same_calibration(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, kills=100)
