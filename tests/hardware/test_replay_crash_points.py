"""Crash a replay session at every write boundary in turn and resume it: the ledger and the
journal stay reconcilable at every crash point.

The session's durable state is the journal and the ledger; a kill can only land between two
of their writes (each is atomic: a torn last journal line is dropped, the ledger is replaced
whole). So instead of hoping a random SIGKILL hits each window (``test_replay_kill``), the
n-th write raises ``_Crash`` right after it lands, for every n, and a "new process" (a
freshly built simulated backend, whose in-process jobs died with the old one) resumes the
folder. After the resume, for every crash point:

* the session ends with the uninterrupted session's parameters;
* ledger shots = uninterrupted shots + the shots of the journal's ``orphaned`` records, with
  exactly one record per extra (``<key>:orphan:<n>``) ledger entry, and no reservation left;
* the ledger counts at least the shots every backend instance really executed.

Two crashes matter too: a resumed process charges the executions that died with the first
one and re-submits them, so the second crash sweeps every write boundary of that process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from replay_kill_worker import SEED, settings

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.hardware.journal import Journal, read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.replay import run_session, simulated_backend


class _Crash(BaseException):
    """A simulated kill (BaseException: nothing in the session may catch it)."""


@dataclass
class _Writes:
    """Counts durable writes (journal records, ledger files) and crashes after the n-th."""

    crash_after: int | None = None
    n: int = 0
    log: list[str] = field(default_factory=list)

    def tick(self, what: str) -> None:
        self.n += 1
        self.log.append(what)
        if self.crash_after is not None and self.n >= self.crash_after:
            raise _Crash(f"after write {self.n} ({what})")


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> _Writes:
    w = _Writes()
    append, save = Journal.append, ShotLedger._save

    def journal_append(self: Journal, event: str, **fields: object) -> dict[str, object]:
        rec = append(self, event, **fields)
        w.tick(f"journal {event}")
        return rec

    def ledger_save(self: ShotLedger) -> None:
        save(self)
        if self.path is not None:
            w.tick("ledger")

    monkeypatch.setattr(Journal, "append", journal_append)
    monkeypatch.setattr(ShotLedger, "_save", ledger_save)
    return w


def _process(folder: Path, writes: _Writes, crash_after: int | None, *, max_steps: int,
             fault_rate: float) -> tuple[bool, int]:
    """One process on the folder: (finished, shots its backend executed)."""
    writes.n, writes.log, writes.crash_after = 0, [], crash_after
    backend = simulated_backend(seed=SEED, fault_rate=fault_rate, idempotent_submit=False)
    try:
        run_session(backend, ScriptedPolicy(), folder, settings(max_steps), sleep=lambda s: None,
                    plots=False, fsync=False)
        return True, backend.executed_shots
    except _Crash:
        return False, backend.executed_shots
    finally:
        writes.crash_after = None


def _reference(tmp_path: Path, writes: _Writes, **kw: object) -> tuple[dict[str, object], list[str]]:
    _process(tmp_path / "ref", writes, None, **kw)  # type: ignore[arg-type]
    fin = next(r for r in read_journal(tmp_path / "ref" / "journal.jsonl") if r["event"] == "session_finished")
    return fin, list(writes.log)


def _check(folder: Path, ref: dict[str, object], executed: int, where: str) -> int:
    recs = list(read_journal(folder / "journal.jsonl"))
    fin = [r for r in recs if r["event"] == "session_finished"]
    assert len(fin) == 1 and fin[0]["final_params"] == ref["final_params"], where
    ledger = ShotLedger(folder / "ledger.json")
    orphaned = [r for r in recs if r["event"] == "orphaned"]
    extra = {k: e.shots for k, e in ledger.entries.items() if ":orphan:" in k and e.state != "released"}
    assert sorted(r["ledger_key"] for r in orphaned) == sorted(extra), where
    assert all(extra[r["ledger_key"]] == r["shots"] for r in orphaned), where
    assert ledger.used_shots == ref["ledger_shots"] + sum(r["shots"] for r in orphaned), where
    assert not [k for k, e in ledger.entries.items() if e.state == "reserved"], where
    assert ledger.used_shots >= executed, f"{where}: the ledger under-counts executed shots"
    return ledger.used_shots - executed


def _call_window(log: list[str], step: int) -> range:
    """Write numbers (1-based) from the ``run`` record of device call ``step`` to its
    ``run_done``: every kind of write boundary of a live call."""
    runs = [i for i, w in enumerate(log, 1) if w == "journal run"]
    dones = [i for i, w in enumerate(log, 1) if w == "journal run_done"]
    return range(runs[step], dones[step] + 1)


def test_a_crash_after_every_write_of_a_live_call_reconciles(tmp_path: Path, writes: _Writes) -> None:
    kw = {"max_steps": 1, "fault_rate": 0.0}
    ref, log = _reference(tmp_path, writes, **kw)
    window = _call_window(log, 1)
    assert {"ledger", "journal submitting", "journal submitted", "journal completed"} <= {log[i - 1] for i in window}
    for n in window:
        f = tmp_path / f"c{n}"
        done, shots1 = _process(f, writes, n, **kw)  # type: ignore[arg-type]
        assert not done
        done, shots2 = _process(f, writes, None, **kw)  # type: ignore[arg-type]
        assert done
        _check(f, ref, shots1 + shots2, f"crash after write {n} ({log[n - 1]})")


def test_a_second_crash_after_every_write_of_the_resubmitting_process_reconciles(
        tmp_path: Path, writes: _Writes) -> None:
    kw = {"max_steps": 1, "fault_rate": 0.0}
    ref, log = _reference(tmp_path, writes, **kw)
    # First kill: call 1 half done (jobs completed, one submitted and running, the next
    # one reserved): the resumed process charges and re-submits every one of them.
    window = _call_window(log, 1)
    first = [i for i in window if log[i - 1] == "journal submitting"][3] + 1
    assert log[first - 1] == "journal submitted"
    over = set()
    n = 1
    while True:
        f = tmp_path / f"c{n}"
        _, shots1 = _process(f, writes, first, **kw)  # type: ignore[arg-type]
        done2, shots2 = _process(f, writes, n, **kw)  # type: ignore[arg-type]
        second = list(writes.log)
        done3, shots3 = _process(f, writes, None, **kw)  # type: ignore[arg-type]
        assert done3
        over.add(_check(f, ref, shots1 + shots2 + shots3, f"crash after write {first}, then after {n} "
                        f"({second[-1]})"))
        if done2 or "journal run_done" in second:
            break
        n += 1
    assert n > 20  # the sweep went through the whole re-submission
    assert 0 in over  # a crash before any re-run costs no phantom shot


@pytest.mark.slow
@pytest.mark.parametrize("fault_rate", [0.0, 0.1])
def test_every_pair_of_crash_points_reconciles(tmp_path: Path, writes: _Writes, fault_rate: float) -> None:
    kw = {"max_steps": 1, "fault_rate": fault_rate}
    ref, log = _reference(tmp_path, writes, **kw)
    for first in range(1, len(log) + 1):
        n = 1
        while True:
            f = tmp_path / f"c{first}_{n}"
            _, shots1 = _process(f, writes, first, **kw)  # type: ignore[arg-type]
            done2, shots2 = _process(f, writes, n, **kw)  # type: ignore[arg-type]
            done3, shots3 = _process(f, writes, None, **kw)  # type: ignore[arg-type]
            assert done3
            _check(f, ref, shots1 + shots2 + shots3, f"crash after write {first}, then after {n}")
            if done2:
                break
            n += 1


@pytest.mark.slow  # ~13 s CPU, ~20 s on a shared machine
def test_the_devices_day_ledger_matches_the_session_after_a_crash_at_every_write(
        tmp_path: Path, writes: _Writes, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a device day ledger the crash points include its writes too (charged before
    the session's reservation, released or synced on resume): after every resume it counts
    exactly the session ledger's shots, key by key."""
    from pulsecal.hardware.ledger import DeviceDayLedger

    write = DeviceDayLedger._write

    def device_write(self: DeviceDayLedger, data: dict[str, object]) -> None:
        write(self, data)
        writes.tick("device ledger")

    monkeypatch.setattr(DeviceDayLedger, "_write", device_write)

    def process(folder: Path, crash_after: int | None) -> tuple[bool, int]:
        writes.n, writes.log, writes.crash_after = 0, [], crash_after
        backend = simulated_backend(seed=SEED, idempotent_submit=False)
        try:
            run_session(backend, ScriptedPolicy(), folder, settings(1), sleep=lambda s: None, plots=False,
                        fsync=False, device_ledger=DeviceDayLedger(tmp_path / "device.json", fsync=False))
            return True, backend.executed_shots
        except _Crash:
            return False, backend.executed_shots
        finally:
            writes.crash_after = None

    ref_folder = tmp_path / "ref"
    process(ref_folder, None)
    log = list(writes.log)
    ref = next(r for r in read_journal(ref_folder / "journal.jsonl") if r["event"] == "session_finished")
    window = _call_window(log, 1)
    assert "device ledger" in {log[i - 1] for i in window}
    day = DeviceDayLedger(tmp_path / "device.json")
    for n in window:
        f = tmp_path / f"c{n}"
        done, shots1 = process(f, n)
        assert not done
        done, shots2 = process(f, None)
        assert done
        _check(f, ref, shots1 + shots2, f"crash after write {n} ({log[n - 1]})")
        scope = str(f.resolve())
        counted = {k: e.shots for k, e in ShotLedger(f / "ledger.json").entries.items() if e.state != "released"}
        mine = {k[len(scope) + 1:]: v for jobs in day.read()["days"].values() for k, v in jobs.items()
                if k.startswith(scope + "/")}
        assert mine == counted, f"crash after write {n} ({log[n - 1]})"
