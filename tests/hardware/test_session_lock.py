"""One process per session folder: two real ``pulsecal-replay`` processes on one session,
and two on one sweep, never both run it; the refused one names the holder's PID and exits
3; every job key is submitted once and the ledgers equal the shots the backends played;
a SIGKILLed holder leaves no stale lock.

The processes are ``session_lock_worker.py`` (the console script with a simulated backend
that counts what it executes). The first one pauses right after its first job ran, so it
is inside its session, holding the lock, when the second one starts: the overlap is a
barrier, not a race, and does not depend on the machine's load.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import DeviceDayLedger, ShotLedger
from pulsecal.hardware.session_lock import (
    EXIT_SESSION_BUSY,
    LOCK_NAME,
    SessionBusy,
    read_holder,
    session_lock,
)

WORKER = Path(__file__).with_name("session_lock_worker.py")
SESSION_ARGS = ["session_id=dup", "folder=runs/dup", "plots=false", "max_steps=3"]
SWEEP_ARGS = ["-m", "hydra/launcher=basic", "qubit=0,1", "sweep.name=dup", "sweep.params_store=null",
              "plots=false", "sweep.plots=false", "max_steps=2"]


def _env(tmp_path: Path, name: str, hold: bool) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "LOCK_TEST_PLAYED": str(tmp_path / f"{name}.json")}
    env.pop("LOCK_TEST_HOLD", None)
    if hold:
        env["LOCK_TEST_HOLD"] = str(tmp_path / "release")
    return env


def _start_holder(tmp_path: Path, args: list[str]) -> subprocess.Popen[str]:
    """Start the first process and return once it is paused inside its session."""
    p = subprocess.Popen([sys.executable, str(WORKER), *args], cwd=tmp_path, env=_env(tmp_path, "a", True),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (tmp_path / "release.holding").exists():
        if p.poll() is not None:
            _, err = p.communicate()
            pytest.fail(f"the holder ended before it held the session (exit {p.returncode}): {err[-2000:]}")
        assert time.monotonic() < deadline, "the holder never reached its first job"
        time.sleep(0.02)
    return p


def _run_second(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(WORKER), *args], cwd=tmp_path, env=_env(tmp_path, "b", False),
                          capture_output=True, text=True, timeout=300)


def _release(tmp_path: Path, p: subprocess.Popen[str]) -> tuple[str, str]:
    (tmp_path / "release").write_text("go")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    return out, err


def _played(tmp_path: Path, name: str) -> dict[str, Any]:
    path = tmp_path / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"shots": 0, "keys": []}


_PROGRESS_LINE = re.compile(r"^\S+: step \d+/\d+, shots \d+(/\d+)?, estimated infidelity \S+$")


def _error_lines(stderr: str) -> list[str]:
    # The refusal is the process's only output on stderr, one line, besides the progress
    # lines of the sessions it did run (hardware.progress, plain when piped).
    return [line for line in stderr.strip().splitlines() if not _PROGRESS_LINE.match(line)]


def _check_exactly_once(folder: Path, played_keys: Counter[str]) -> list[dict[str, Any]]:
    """One session_started, every job key submitted once, each played once, the ledger
    equal to the played shots of this folder's keys."""
    recs = list(read_journal(folder / "journal.jsonl"))
    events = Counter(r["event"] for r in recs)
    assert events["session_started"] == 1 and events["session_finished"] == 1, events
    submitted = Counter(r["job_key"] for r in recs if r["event"] == "submitting")
    assert submitted and max(submitted.values()) == 1, submitted.most_common(3)
    ours = {k: n for k, n in played_keys.items() if k in submitted}
    assert ours == dict.fromkeys(submitted, 1)  # the backends played each key once
    return recs


def _refused_while_held(tmp_path: Path, args: list[str]) -> tuple[
        subprocess.Popen[str], subprocess.CompletedProcess[str], str, str]:
    """Run ``args`` a second time while a holder runs them, release the holder, and check
    the second run exited busy with one error line: the holder, the second run, that line
    and the holder's stdout."""
    a = _start_holder(tmp_path, args)
    try:
        b = _run_second(tmp_path, args)
    finally:
        out_a, _ = _release(tmp_path, a)
    assert b.returncode == EXIT_SESSION_BUSY, b.stderr[-3000:]
    (line,) = _error_lines(b.stderr)
    return a, b, line, out_a


def test_a_second_process_on_one_session_is_refused_naming_the_holder(tmp_path: Path) -> None:
    a, b, line, out_a = _refused_while_held(tmp_path, SESSION_ARGS)
    assert f"session folder runs/dup is busy: held by PID {a.pid} " in line, line
    assert "session dup:" not in b.stdout and _played(tmp_path, "b")["shots"] == 0
    assert "session dup: 3 steps" in out_a

    folder = tmp_path / "runs" / "dup"
    played_a = _played(tmp_path, "a")
    recs = _check_exactly_once(folder, Counter(played_a["keys"]))
    assert {r.get("process") for r in recs if "process" in r} == {0}  # one process wrote it all
    ledger = ShotLedger(folder / "ledger.json")
    assert ledger.used_shots == played_a["shots"] == sum(r["shots"] for r in recs if r["event"] == "submitting")
    assert not (folder / LOCK_NAME).exists()  # the holder let go and removed it


def test_a_sweep_started_twice_runs_each_qubit_in_one_process(tmp_path: Path) -> None:
    # The holder pauses in q0; the second sweep is refused q0 and runs q1; the holder then
    # finishes q0 and finds q1 finished.
    a, b, line, out_a = _refused_while_held(tmp_path, SWEEP_ARGS)
    assert line.startswith("error: qubit 0: session folder runs/sweep/dup/q0 is busy: ")
    assert f"held by PID {a.pid} " in line
    assert "qubit 1: finished after 1 attempt(s)" in b.stdout
    assert "qubit 1: skipped, finished" in out_a and "qubit 0: finished after 1 attempt(s)" in out_a

    root = tmp_path / "runs" / "sweep" / "dup"
    played_a, played_b = _played(tmp_path, "a"), _played(tmp_path, "b")
    played_keys = Counter(played_a["keys"]) + Counter(played_b["keys"])
    assert set(played_a["keys"]).isdisjoint(played_b["keys"])
    for q in (0, 1):
        _check_exactly_once(root / f"q{q}", played_keys)
        status = json.loads((root / f"q{q}" / "status.json").read_text())
        assert status["state"] == "finished" and status["attempts"] == 1, status
    day = DeviceDayLedger(root / "device_day_ledger.json").read()
    qubit_ledgers = [ShotLedger(root / f"q{q}" / "ledger.json").used_shots for q in (0, 1)]
    assert sum(day["per_day"].values()) == sum(qubit_ledgers) == played_a["shots"] + played_b["shots"]
    assert qubit_ledgers[0] == played_a["shots"] and qubit_ledgers[1] == played_b["shots"]
    summary = json.loads((root / "summary.json").read_text())
    assert summary["counts"] == {"finished": 2} and summary["total_shots"] == sum(qubit_ledgers)


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    a = _start_holder(tmp_path, SESSION_ARGS)
    os.kill(a.pid, signal.SIGKILL)
    a.communicate(timeout=60)
    folder = tmp_path / "runs" / "dup"
    # The file the killed holder wrote is still there; the kernel dropped its lock.
    assert read_holder(folder)["pid"] == a.pid
    b = _run_second(tmp_path, SESSION_ARGS)
    assert b.returncode == 0, b.stderr[-3000:]
    assert "session dup: 3 steps" in b.stdout
    recs = list(read_journal(folder / "journal.jsonl"))
    events = Counter(r["event"] for r in recs)
    assert events["session_started"] == 1 and events["session_resumed"] == 1 and events["session_finished"] == 1
    # The job the killed process ran is run again under its key (its execution died with
    # it) and charged as an orphan; everything else ran once.
    played_a, played_b = _played(tmp_path, "a"), _played(tmp_path, "b")
    assert len(played_a["keys"]) == 1 and played_a["keys"][0] in played_b["keys"]
    assert Counter(played_b["keys"]).most_common(1)[0][1] == 1
    ledger = ShotLedger(folder / "ledger.json")
    assert ledger.used_shots == played_a["shots"] + played_b["shots"]
    assert not (folder / LOCK_NAME).exists()


# -- the lock in one process -------------------------------------------------------------------


def test_lock_is_reentrant_in_its_thread_and_refuses_another(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "s"
    with session_lock(folder) as path:
        assert read_holder(folder)["pid"] == os.getpid() and path == folder / LOCK_NAME
        with session_lock(folder):  # run_qubit around run_session
            pass
        assert path.exists()
        caught: list[BaseException] = []

        def other() -> None:
            try:
                with session_lock(folder):
                    pass
            except SessionBusy as e:
                caught.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert len(caught) == 1 and isinstance(caught[0], SessionBusy)
        assert f"held by PID {os.getpid()} " in str(caught[0]) and "\n" not in str(caught[0])
    assert not (tmp_path / "runs").exists()  # created by the lock, left empty: removed again
    with session_lock(folder):  # free again
        (folder / "journal.jsonl").write_text("")
    assert folder.is_dir() and not (folder / LOCK_NAME).exists()


def test_a_lock_held_by_another_process_refuses_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    code = ("import sys, time; from pulsecal.hardware.session_lock import session_lock\n"
            f"with session_lock({str(folder)!r}):\n    print('held', flush=True); sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(SessionBusy) as e:
            with session_lock(folder):
                pass
        assert time.monotonic() - t0 < 5  # refused, not queued behind the holder
        assert e.value.pid == p.pid and e.value.folder == folder
    finally:
        p.communicate("", timeout=60)
    assert p.returncode == 0
    with session_lock(folder):
        assert read_holder(folder)["pid"] == os.getpid()
