"""SIGKILL a replay session at random points and resume it from its journal: the resumed
session ends with exactly the parameters of an uninterrupted one with the same seed, and its
ledger holds the uninterrupted session's shots plus exactly the charges its journal records.

Each worker is killed with SIGKILL once the journal has grown to a random number of lines —
any point of the session: mid-submit, between a job's result and its ``completed`` record,
inside a ledger write, after the last job but before the report. The next worker resumes
the same folder; a session that reaches its end starts over in a new folder. With fault
injection on, kills also land in the middle of retries. ``test_replay_crash_points`` crashes
the session at every write boundary in turn, deterministically; this file is the random,
real-signal half.

Workers are forks of a ``forkserver`` that preloaded ``replay_kill_worker`` and ran one
short session (``replay_kill_forkserver``), so a start costs milliseconds, not the seconds
of importing the physics and loading its kernels; the server is itself a fresh,
single-threaded interpreter: never a fork of the pytest process, which may hold JAX's
threads (see ``replay_kill_worker``). 24 kills take ~10 s this way, so both variants run
by default; the slow one does 100.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from replay_kill_worker import SINGLE_THREADED_ENV, check_forked_worker, session, work

from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import ShotLedger

SEED = 11


def _context(monkeypatch: pytest.MonkeyPatch) -> mp.context.ForkServerContext:
    ctx = mp.get_context("forkserver")
    assert isinstance(ctx, mp.context.ForkServerContext)
    # Takes effect when this process starts its forkserver (the first Process.start): the
    # server inherits the environment then. Python 3.11's forkserver ignores the parent's
    # sys.path, so the preloaded modules' folder goes in through PYTHONPATH.
    ctx.set_forkserver_preload(["replay_kill_worker", "replay_kill_forkserver"])
    for k, v in SINGLE_THREADED_ENV.items():
        monkeypatch.setenv(k, v)
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    p = ctx.Process(target=check_forked_worker)
    p.start()
    p.join()
    # 0: warm and the only thread; 1: the preload did not happen (a forkserver started
    # earlier without it: every worker would pay the imports); 2: a second thread.
    assert p.exitcode == 0, f"forkserver worker check failed with exit code {p.exitcode}"
    return ctx


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _finished(folder: Path) -> bool:
    return any(r["event"] == "session_finished" for r in read_journal(folder / "journal.jsonl"))


def _kill_and_resume(tmp_path: Path, kills: int, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = tmp_path / "ref"
    session(ref)
    ref_final = next(r for r in read_journal(ref / "journal.jsonl") if r["event"] == "session_finished")
    total = _lines(ref / "journal.jsonl")

    ctx = _context(monkeypatch)
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
        p = ctx.Process(target=work, args=(str(folder),))
        p.start()
        while p.is_alive() and _lines(journal) < target:
            time.sleep(0.0005)
        if p.is_alive() and p.pid is not None:
            os.kill(p.pid, signal.SIGKILL)
            done_kills += 1
        p.join()
        assert time.monotonic() - t0 < 600
    # Resume every folder to the end, then compare with the uninterrupted session.
    for f in sorted(tmp_path.glob("killed*")):
        session(f)
        recs = list(read_journal(f / "journal.jsonl"))
        fin = [r for r in recs if r["event"] == "session_finished"]
        assert len(fin) == 1
        assert fin[0]["final_params"] == ref_final["final_params"]
        # Every env step applied once in the audit log, every device call finished once.
        assert [r["env_step"] for r in recs if r["event"] == "action"] == [1, 2, 3, 4, 5]
        assert [r["step"] for r in recs if r["event"] == "run_done"] == list(range(6))
        # Shots: the uninterrupted count plus the charged re-runs of jobs whose first
        # execution died with a killed process — never fewer — and every extra ledger
        # entry explained by exactly one journal record.
        orphaned = [r for r in recs if r["event"] == "orphaned"]
        orphans = sum(r["shots"] for r in orphaned)
        ledger = ShotLedger(f / "ledger.json")
        assert ledger.used_shots == ref_final["ledger_shots"] + orphans
        extra = {k: e.shots for k, e in ledger.entries.items() if ":orphan:" in k and e.state != "released"}
        assert sorted(r["ledger_key"] for r in orphaned) == sorted(extra)
        assert all(extra[r["ledger_key"]] == r["shots"] for r in orphaned)
        assert {k for k, e in ledger.entries.items() if e.state == "reserved"} == set()


def test_five_sigkills_resume_to_the_same_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _kill_and_resume(tmp_path, kills=5, monkeypatch=monkeypatch)


def test_twenty_four_sigkills_resume_to_the_same_calibration(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _kill_and_resume(tmp_path, kills=24, monkeypatch=monkeypatch)


@pytest.mark.slow
def test_hundred_sigkills_resume_to_the_same_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _kill_and_resume(tmp_path, kills=100, monkeypatch=monkeypatch)
