"""Shot ledger persistence and limits; journal append, fsync path and torn-line tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pulsecal.hardware.journal import Journal, read_journal
from pulsecal.hardware.ledger import ShotLedger, utc_day
from pulsecal.hardware.safety import SafetyViolation


def test_ledger_counts_per_day_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    led = ShotLedger(path, budget_shots=10_000)
    led.reserve("a", 1000, "2024-01-01", max_shots_per_day=5000)
    led.reserve("a", 1000, "2024-01-01", max_shots_per_day=5000)  # idempotent
    led.reserve("b", 2000, "2024-01-02", max_shots_per_day=5000)
    led.confirm("a", "job-1")
    led.reserve("c", 500, "2024-01-02", max_shots_per_day=5000)
    led.release("c")
    again = ShotLedger(path)
    assert again.used_shots == 3000 and again.budget_shots == 10_000
    assert again.shots_on("2024-01-01") == 1000 and again.shots_on("2024-01-02") == 2000
    assert again.entry("a").state == "done" and again.entry("a").job_id == "job-1"
    assert again.entry("c").state == "released"
    with pytest.raises(ValueError, match="is done"):
        again.release("a")
    with pytest.raises(ValueError, match="shots=1000"):
        again.reserve("a", 999, "2024-01-01", max_shots_per_day=5000)


def test_ledger_refuses_over_day_and_budget(tmp_path: Path) -> None:
    led = ShotLedger(tmp_path / "l.json", budget_shots=3000)
    led.reserve("a", 2000, "d1", max_shots_per_day=2500)
    with pytest.raises(SafetyViolation, match="max_shots_per_day=2600"):
        led.reserve("b", 600, "d1", max_shots_per_day=2500)
    with pytest.raises(SafetyViolation, match="shot_budget=3600"):
        led.reserve("b", 1600, "d2", max_shots_per_day=2500)
    assert led.used_shots == 2000


def test_ledger_rejects_unknown_format(tmp_path: Path) -> None:
    p = tmp_path / "l.json"
    p.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="format='other'"):
        ShotLedger(p)


def test_utc_day() -> None:
    assert utc_day(0.0) == "1970-01-01"
    assert utc_day(86_399.9) == "1970-01-01" and utc_day(86_400.0) == "1970-01-02"


def test_utc_day_is_datetimes_day_around_every_midnight() -> None:
    """utc_day keeps the last day's span; it must name the day datetime names, also within a
    microsecond of midnight (datetime rounds to the microsecond) and when time goes back."""
    from datetime import UTC, datetime

    import numpy as np

    def reference(t: float) -> str:
        return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d")

    rng = np.random.default_rng(5)
    midnights = 86_400.0 * rng.integers(1, 40_000, 50)
    offsets = [-1e-3, -1.5e-6, -1e-6, -6e-7, -5e-7, -4e-7, -1e-7, 0.0, 1e-7, 4e-7, 5e-7, 1e-6, 1e-3]
    times = [float(m + o) for m in midnights for o in offsets]
    times += [float(t) for t in rng.uniform(0, 4e9, 500)]
    times += times[::-1]  # back and forth across the cached day
    assert [utc_day(t) for t in times] == [reference(t) for t in times]


def test_journal_appends_one_json_object_per_line(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl", clock=lambda: 12.5)
    j.append("submitted", job_key="k1", counts={"0": 3})
    j.append("completed", job_key="k1")
    recs = read_journal(tmp_path / "j.jsonl")
    assert [r["event"] for r in recs] == ["submitted", "completed"]
    assert recs.records[0]["ts"] == 12.5 and recs.records[0]["counts"] == {"0": 3}
    assert recs.torn_tail == ""


def test_journal_tolerates_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    for i in range(3):
        j.append("submitted", job_key=f"k{i}")
    data = path.read_bytes()
    path.write_bytes(data[:-17])  # a crash in the middle of the last write
    read = read_journal(path)
    assert [r["job_key"] for r in read] == ["k0", "k1"]
    assert read.torn_tail.startswith("{")
    # Re-opening moves the torn tail aside, so the next record starts on its own line.
    j2 = Journal(path)
    j2.append("completed", job_key="k9")
    read = read_journal(path)
    assert [r["job_key"] for r in read] == ["k0", "k1", "k9"] and read.torn_tail == ""
    assert (tmp_path / "j.jsonl.torn").read_bytes().startswith(b"{")


def test_journal_refuses_corruption_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"event": "a"}\nnot json\n{"event": "b"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_journal(path)
