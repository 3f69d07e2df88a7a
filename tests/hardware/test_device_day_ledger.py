"""The device's per-day shot limit over all its sessions: ``DeviceDayLedger`` charges a job
before it is submitted, under a file lock, so parallel sessions (a sweep's qubits) cannot
together exceed ``SafetyLimits.max_shots_per_day`` although each alone stays under it."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import pytest

from pulsecal.hardware.ledger import DeviceDayLedger, ShotLedger
from pulsecal.hardware.safety import SafetyViolation

DAY = "2026-11-21"


def test_reserve_counts_each_job_once_and_refuses_past_the_days_limit(tmp_path: Path) -> None:
    d = DeviceDayLedger(tmp_path / "dev.json", fsync=False)
    d.reserve("s1", "k1", 600, DAY, max_shots_per_day=1000)
    d.reserve("s1", "k1", 600, DAY, max_shots_per_day=1000)  # a retry: no second charge
    d.reserve("s2", "k1", 300, DAY, max_shots_per_day=1000)  # another session's key
    assert d.shots_on(DAY) == 900 and d.counted("s2", "k1") == 300
    with pytest.raises(SafetyViolation, match=r"max_shots_per_day=1100, allowed <= 1000 shots on 2026-11-21 "
                                              r"over all sessions of the device"):
        d.reserve("s3", "k9", 200, DAY, max_shots_per_day=1000)
    assert d.shots_on(DAY) == 900 and d.counted("s3", "k9") == 0  # refused: nothing charged
    d.reserve("s3", "k9", 200, "2026-11-22", max_shots_per_day=1000)  # a new UTC day
    d.charge("s3", "orphan", 500, DAY)  # ran already: counted past the limit
    assert d.shots_on(DAY) == 1400
    d.release("s1", "k1")
    assert d.shots_on(DAY) == 800
    with pytest.raises(ValueError, match=r"shots=0: allowed an integer >= 1"):
        d.reserve("s1", "k2", 0, DAY, max_shots_per_day=1000)
    with pytest.raises(ValueError, match=r"scope='': allowed a non-empty string"):
        d.reserve("", "k2", 1, DAY, max_shots_per_day=1000)


def test_sync_makes_a_scope_equal_its_session_ledger(tmp_path: Path) -> None:
    d = DeviceDayLedger(tmp_path / "dev.json", fsync=False)
    led = ShotLedger(None, fsync=False)
    led.reserve("a", 100, DAY, max_shots_per_day=10**6)
    led.charge("a:orphan:1", 100, DAY)
    led.reserve("b", 50, DAY, max_shots_per_day=10**6)
    led.release("b")
    d.reserve("s", "a", 100, DAY, max_shots_per_day=10**6)
    d.reserve("s", "lost", 70, DAY, max_shots_per_day=10**6)  # killed before the session reserved it
    d.reserve("other", "x", 10, DAY, max_shots_per_day=10**6)
    d.sync("s", led)
    assert d.counted("s", "a") == 100 and d.counted("s", "a:orphan:1") == 100
    assert d.counted("s", "lost") == 0 and d.counted("s", "b") == 0
    assert d.shots_on(DAY) == 210  # other scopes untouched


def _reserver(path: str, scope: str, out: mp.Queue) -> None:
    d = DeviceDayLedger(path, fsync=False)
    ok = 0
    for k in range(20):
        try:
            d.reserve(scope, f"job{k}", 100, DAY, max_shots_per_day=5000)
            ok += 1
        except SafetyViolation:
            pass
    out.put(ok)


def test_parallel_reservations_never_pass_the_limit(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_reserver, args=(str(tmp_path / "dev.json"), f"s{i}", q)) for i in range(4)]
    for p in procs:
        p.start()
    accepted = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert sum(accepted) == 50 and DeviceDayLedger(tmp_path / "dev.json").shots_on(DAY) == 5000


# One session in a fresh interpreter (no threads inherited from pytest); prints its outcome.
_SESSION = """
import sys
from pulsecal.hardware.ledger import DeviceDayLedger
from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.hardware.replay import ReplaySettings, default_limits, run_session, simulated_backend
from pulsecal.hardware.safety import SafetyViolation

folder, ledger, seed, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
backend = simulated_backend(seed=seed)
settings = ReplaySettings(f"day{seed}", seed, (0.5, 0.2e-9, 3e5, 0.0), max_steps=1,
                          env={"shots_per_probe": 50, "shot_budget": 100_000})
try:
    run_session(backend, ScriptedPolicy(), folder, settings,
                limits=default_limits(backend, 0, max_shots_per_day=limit), fsync=False, plots=False,
                sleep=lambda s: None, device_ledger=DeviceDayLedger(ledger, fsync=False))
    print("finished")
except SafetyViolation as e:
    print("refused: " + str(e))
"""


@pytest.mark.slow  # three interpreters start and run a session each: ~15-30 s
def test_parallel_sessions_share_the_devices_daily_limit(tmp_path: Path) -> None:
    # A session is 2 measurements x 6 probes x 50 shots = 600 shots; the device allows 1300 a
    # day. Each session alone fits (its own ledger never sees more than 600); three together
    # do not, and the day ledger stops them at the limit, whichever runs first (each
    # session's own ledger alone would have let all three finish).
    dev = tmp_path / "device_day_ledger.json"
    procs = [subprocess.Popen([sys.executable, "-c", _SESSION, str(tmp_path / f"s{i}"), str(dev), str(i), "1300"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    results = {}
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results[i] = out.strip().splitlines()[-1]
    refused = [r for r in results.values() if r != "finished"]
    # How far each got depends on the interleaving; that no more than 1300 ran does not.
    assert refused and all("max_shots_per_day" in r for r in refused), results
    day = DeviceDayLedger(dev)
    total = sum(day.read()["per_day"].values())
    per_session = [ShotLedger(tmp_path / f"s{i}" / "ledger.json").used_shots for i in range(3)]
    assert total <= 1300 and total == sum(per_session) and total > 1300 - 300  # no call of 300 fit
    assert all(n <= 600 for n in per_session)
    assert all(per_session[s] == 600 for s, r in results.items() if r == "finished")
