"""The append-only session ledger (pulsecal.ledger/2): one line per change, readable as the
v1 snapshot was, a torn tail tolerated, v1 files migrated, one fsync per job."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pulsecal.hardware import ledger as ledger_mod
from pulsecal.hardware.ledger import ShotLedger


def _job(led: ShotLedger, key: str, shots: int = 100) -> None:
    led.reserve(key, shots, "2026-12-07", max_shots_per_day=10**9)
    led.confirm(key, f"id-{key}")


def test_each_change_appends_one_line_and_keeps_the_file_json(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    led = ShotLedger(path, budget_shots=10**6, fsync=False)
    for i in range(50):
        _job(led, f"k{i}")
    before = path.read_bytes()
    _job(led, "k50")
    after = path.read_bytes()
    # everything but the closing line is left as it was: a change costs one line, not a rewrite
    assert after.startswith(before[:-3]) and after.endswith(b"}}\n")
    assert after.count(b"\n") == before.count(b"\n") + 2  # reserve and confirm of k50
    doc = json.loads(after)  # the whole file is one JSON document: each key's last entry
    assert doc["format"] == "pulsecal.ledger/2" and doc["budget_shots"] == 10**6
    assert len(doc["jobs"]) == 51 and doc["jobs"]["k7"] == {"shots": 100, "day": "2026-12-07",
                                                            "state": "done", "job_id": "id-k7"}
    again = ShotLedger(path)
    assert again.used_shots == 5100 and again.shots_on("2026-12-07") == 5100
    assert again.entries == led.entries


def test_a_torn_last_line_is_dropped_with_a_warning_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    led = ShotLedger(path, fsync=False)
    _job(led, "a", 300)
    led.reserve("b", 200, "2026-12-07", max_shots_per_day=10**9)
    data = path.read_bytes()
    path.write_bytes(data[:-20])  # a crash in the middle of writing b's reservation
    with pytest.warns(RuntimeWarning, match="torn last line"):
        torn = ShotLedger(path)
    assert torn.used_shots == 300 and torn.entry("b") is None
    torn.reserve("c", 50, "2026-12-07", max_shots_per_day=10**9)  # rewrites the file whole
    assert json.loads(path.read_bytes())["jobs"].keys() == {"a", "c"}
    assert ShotLedger(path).used_shots == 350


def test_a_whole_last_line_without_the_closing_line_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    led = ShotLedger(path, fsync=False)
    _job(led, "a", 300)
    path.write_bytes(path.read_bytes()[:-3])  # the record landed, the closing line did not
    with pytest.warns(RuntimeWarning, match="closing line is missing"):
        kept = ShotLedger(path)
    assert kept.entry("a") is not None and kept.entry("a").state == "done" and kept.used_shots == 300


def test_a_bad_line_before_the_last_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    led = ShotLedger(path, fsync=False)
    for k in "abc":
        _job(led, k)
    lines = path.read_bytes().split(b"\n")
    lines[2] = b",garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match="line 3 is not a ledger record"):
        ShotLedger(path)


def test_a_v1_snapshot_is_read_and_migrated_on_the_first_change(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    v1 = {"format": "pulsecal.ledger/1", "budget_shots": 5000, "used_shots": 700,
          "per_day": {"2026-12-06": 700},
          "jobs": {"a": {"shots": 700, "day": "2026-12-06", "state": "done", "job_id": "j1"},
                   "b": {"shots": 90, "day": "2026-12-06", "state": "released", "job_id": ""}}}
    path.write_text(json.dumps(v1, sort_keys=True))
    led = ShotLedger(path)
    assert led.used_shots == 700 and led.budget_shots == 5000 and led.entry("b").state == "released"
    led.reserve("c", 100, "2026-12-07", max_shots_per_day=10**9)
    doc = json.loads(path.read_bytes())
    assert doc["format"] == "pulsecal.ledger/2" and doc["budget_shots"] == 5000
    assert ShotLedger(path).used_shots == 800 and ShotLedger(path).shots_on("2026-12-06") == 700


def test_a_new_budget_reaches_the_header(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    _job(ShotLedger(path, budget_shots=1000, fsync=False), "a")
    _job(ShotLedger(path, budget_shots=2000, fsync=False), "b")
    assert json.loads(path.read_bytes())["budget_shots"] == 2000 and ShotLedger(path).used_shots == 200


def test_a_job_costs_one_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.json"
    led = ShotLedger(path)
    _job(led, "first")  # creates the file (a whole write)
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(ledger_mod.os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    _job(led, "second")
    assert len(calls) == 1  # the reservation; the confirmation is written, not fsynced
    led.charge("third", 10, "2026-12-07")
    assert len(calls) == 2
    led.reserve("fourth", 10, "2026-12-07", max_shots_per_day=10**9)
    led.release("fourth")
    assert len(calls) == 3
    assert ShotLedger(path).used_shots == 210
