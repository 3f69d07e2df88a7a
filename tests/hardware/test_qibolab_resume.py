"""qibolab executes synchronously inside ``submit``: there is no remote job to find after a
kill, so a session killed during a device call re-runs that call's jobs on resume. The
ledger must then count both executions of each (the killed ones as ``orphaned`` charges,
journaled first), so it equals the shots the platform really played. Checked on the dummy
platform (plumbing) with a kill right after ``platform.execute`` returned, on qubit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("qibolab")

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.hardware.adapters.qibolab import QibolabBackend
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.replay import ReplaySettings, run_session

from .hw_helpers import FakeClock


class _Kill(BaseException):
    """The process dies (BaseException: nothing in the session may catch it)."""


class Counting:
    """A qibolab backend that counts the shots its platform executes and can die right
    after the n-th execution (the job ran; its result never reached the session)."""

    def __init__(self, kill_after: int | None = None) -> None:
        self.inner = QibolabBackend("dummy")
        self.name = self.inner.name
        self.kill_after = kill_after
        self.executed_shots = 0
        self.executions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit(self, artifact: Any, shots: int, job_key: str) -> Any:
        ran = self.inner.find(job_key) is None
        h = self.inner.submit(artifact, shots, job_key)
        if ran:
            self.executions += 1
            self.executed_shots += shots
            if self.executions == self.kill_after:
                raise _Kill
        return h


def test_a_kill_during_a_qibolab_job_reruns_it_and_the_ledger_counts_both(tmp_path: Path) -> None:
    settings = ReplaySettings("qk", 0, (0.3, 0.2e-9, 0.0, 0.0), max_steps=2,
                              env={"shots_per_probe": 20, "gate_duration_s": 40e-9}, qubit=2)
    clock = FakeClock()
    first = Counting(kill_after=9)  # 6 probes per device call: the 3rd job of the second call
    with pytest.raises(_Kill):
        run_session(first, ScriptedPolicy(), tmp_path, settings, clock=clock, sleep=clock.sleep, fsync=False,
                    plots=False)
    second = Counting()
    r = run_session(second, ScriptedPolicy(), tmp_path, settings, clock=clock, sleep=clock.sleep, fsync=False,
                    plots=False)
    recs = read_journal(tmp_path / "journal.jsonl")
    orphaned = [x for x in recs if x["event"] == "orphaned"]
    # The killed device call (step 1) had run 3 of its 6 jobs; the resumed process re-runs
    # the whole call (its counts come back together), so exactly those 3 are charged again,
    # each journaled before its re-run.
    ran_in_killed_call = [x["job_key"] for x in recs if x["event"] == "submitting" and x["process"] == 0][6:]
    assert len(ran_in_killed_call) == 3
    assert [x["job_key"] for x in orphaned] == ran_in_killed_call and all(x["shots"] == 20 for x in orphaned)
    assert r.orphan_shots == 60
    # Nothing to find: the fresh backend does not know the key, so it ran it again.
    assert sum(x["event"] == "recovered" for x in recs) == 0
    ledger = ShotLedger(tmp_path / "ledger.json")
    assert ledger.used_shots == r.ledger_shots == first.executed_shots + second.executed_shots
    assert r.ledger_shots == 3 * 6 * 20 + 60  # the session's jobs + the three played twice
