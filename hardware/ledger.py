"""The shot ledger: every job's shots, per UTC day and against a budget, persisted as JSON.

Shots are reserved *before* a job is submitted and stay counted unless the job provably
never ran (``release``), so a crash between submit and result over-counts rather than
under-counts. Shots that already ran and were never counted (an execution that died with a
killed process) are added with ``charge``: one write, no limit checked, since refusing them
cannot un-run them. Reservations are keyed by the job's idempotency key, so a retry or a resumed
session reserving the same key again is a no-op.

The session ledger's file (``pulsecal.ledger/2``) is append-only, so a change costs the same
at the first job and the ten-thousandth: one line per change, the job's key and its new
entry, between a header line and a closing ``}}`` line::

    {"format": "pulsecal.ledger/2", "budget_shots": 10000, "jobs": {
     "k1": {"day": "2026-12-07", "job_id": "", "shots": 400, "state": "reserved"}
    ,"k1": {"day": "2026-12-07", "job_id": "j-17", "shots": 400, "state": "done"}
    }}

A change overwrites the closing line with its own line plus a new closing line, in one
write. The whole file stays one JSON document whose ``jobs`` are each key's last entry
(JSON parsers keep the last of repeated names, Python's ``json`` among them), so a reader of
the ``pulsecal.ledger/1`` snapshot (``json.loads(...)["jobs"]``) reads it unchanged; the
totals are recomputed on open. A crash can only tear the last line: opening tolerates that
with a warning (the torn change is dropped, or kept if its line is whole), and the next
change rewrites the file whole (temporary file, fsync, rename), which is also how a
``pulsecal.ledger/1`` file is migrated and how a changed budget reaches the header.

What is fsynced: a reservation and a charge, before the call returns (a job is submitted
only after its reservation is on disk; a charge counts shots that ran). A confirmation or a
release is written but not fsynced: lost to a power cut, it leaves the job *reserved*, still
counted, which is the state a kill between a result and its confirmation leaves and the
resume path already handles (``replay.orphans``). So a job costs one fsync. A caller whose
own fsynced write-ahead record carries the reservation (``BackendGraphDevice``: the batch's
``intent`` record in the job journal, restored with ``restore`` on resume) reserves with
``durable=False``, and a job costs the ledger no fsync (docs/concurrency.md).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .backend import Violation
from .safety import SafetyViolation

LEDGER_FORMAT = "pulsecal.ledger/2"
LEDGER_FORMAT_V1 = "pulsecal.ledger/1"  # the whole-file snapshot: read, and migrated on the first change
_FOOTER = b"}}\n"
# json.dumps with options builds an encoder per call; a ledger line is written twice per job.
_SORTED = json.JSONEncoder(sort_keys=True)
RESERVED, DONE, RELEASED = "reserved", "done", "released"


def utc_day(timestamp_s: float) -> str:
    """The UTC calendar day of a POSIX timestamp, as YYYY-MM-DD."""
    # Asked several times per job (every check counts today's shots): the last day's name is
    # kept with the span of timestamps that surely fall in it. Within 1 µs of a midnight,
    # where datetime's rounding to the microsecond decides the day, it is computed afresh.
    global _last_day
    lo, hi, name = _last_day
    if lo <= timestamp_s < hi:
        return name
    name = datetime.fromtimestamp(timestamp_s, tz=UTC).strftime("%Y-%m-%d")
    start = datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    _last_day = (start + 1e-6, start + 86_400 - 1e-6, name)  # one rebinding: threads see old or new
    return name


_last_day: tuple[float, float, str] = (0.0, 0.0, "")  # (lo, hi, name) of the last day utc_day named


@dataclass(frozen=True)
class LedgerEntry:
    job_key: str
    shots: int
    day: str
    state: str
    job_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"shots": self.shots, "day": self.day, "state": self.state, "job_id": self.job_id}


class ShotLedger:
    """Counts shots per job key, per UTC day and in total against ``budget_shots``.

    Args:
        path: JSON file to persist to (loaded if it exists; module docstring for its
            format); None keeps it in memory.
        budget_shots: most shots this ledger may ever count (None: no budget).
        fsync: fsync reservations and charges (turn off only in tests that write thousands
            of entries).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 budget_shots: int | None = None, fsync: bool = True) -> None:
        if budget_shots is not None and (isinstance(budget_shots, bool)
                                         or not isinstance(budget_shots, int) or budget_shots < 0):
            raise ValueError(f"ShotLedger.budget_shots={budget_shots!r}: allowed an integer >= 0 or None")
        self.path = Path(path) if path is not None else None
        self.budget_shots = budget_shots
        self._fsync = fsync
        self._entries: dict[str, LedgerEntry] = {}
        self._per_day: dict[str, int] = {}
        self._used = 0
        # The next change rewrites the file whole instead of appending: no file yet, a v1
        # file, a torn tail or a budget other than the header's.
        self._rewrite = True
        self._latest: tuple[LedgerEntry, bool] | None = None
        if self.path is not None and self.path.exists():
            self._load(self.path)

    # -- queries ------------------------------------------------------------------------

    @property
    def used_shots(self) -> int:
        """Shots counted (reserved or done), over all days."""
        return self._used

    def shots_on(self, day: str) -> int:
        return self._per_day.get(day, 0)

    def entry(self, job_key: str) -> LedgerEntry | None:
        return self._entries.get(job_key)

    @property
    def entries(self) -> Mapping[str, LedgerEntry]:
        return dict(self._entries)

    # -- changes ------------------------------------------------------------------------

    def _holds(self, job_key: str, shots: int, state: str) -> bool:
        """Whether ``job_key`` is already counted (not released), with these ``shots``; a
        ValueError naming ``state`` if it is counted with other shots."""
        old = self._entries.get(job_key)
        if old is None or old.state == RELEASED:
            return False
        if old.shots != shots:
            raise ValueError(f"job_key {job_key!r} {state} with shots={old.shots}: "
                             f"allowed the same shots again, got {shots}")
        return True

    def reserve(self, job_key: str, shots: int, day: str, *, max_shots_per_day: int,
                durable: bool = True) -> None:
        """Count ``shots`` for ``job_key`` on ``day``; a no-op if the key is already counted.

        ``durable=False`` writes the reservation without fsync: only for a caller that makes
        it durable itself before the job is submitted (module docstring).

        Raises SafetyViolation naming the per-day limit or the budget if it would be exceeded.
        """
        if self._holds(job_key, shots, "reserved"):
            return
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ValueError(f"shots={shots!r}: allowed an integer >= 1")
        v: list[Violation] = []
        if self.shots_on(day) + shots > max_shots_per_day:
            v.append(Violation("max_shots_per_day", self.shots_on(day) + shots,
                               f"<= {max_shots_per_day} shots on {day}"))
        if self.budget_shots is not None and self._used + shots > self.budget_shots:
            v.append(Violation("shot_budget", self._used + shots, f"<= {self.budget_shots} shots"))
        if v:
            raise SafetyViolation(v)
        self._put(LedgerEntry(job_key, shots, day, RESERVED), durable=durable)

    def restore(self, job_key: str, shots: int, day: str) -> bool:
        """Count, as reserved and fsynced, a job a durable write-ahead record says may have been
        submitted, whose unsynced reservation a power cut lost. No limit applies (the job
        may have run). A no-op, returning False, if the key is already counted with these shots."""
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ValueError(f"shots={shots!r}: allowed an integer >= 1")
        if self._holds(job_key, shots, "restored"):
            return False
        self._put(LedgerEntry(job_key, shots, day, RESERVED), durable=True)
        return True

    def charge(self, job_key: str, shots: int, day: str, job_id: str = "") -> None:
        """Count ``shots`` that already ran under ``job_key`` on ``day``, as done, in one write.

        No per-day limit or budget applies (they gate what may run; these shots ran). A no-op
        if the key is already counted with the same shots; a released key is counted again.
        """
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ValueError(f"shots={shots!r}: allowed an integer >= 1")
        if self._holds(job_key, shots, "counted"):
            return
        self._put(LedgerEntry(job_key, shots, day, DONE, job_id), durable=True)

    def confirm(self, job_key: str, job_id: str = "") -> None:
        """Mark a reserved job as run (its result arrived)."""
        e = self._require(job_key)
        if e.state != DONE:
            self._put(LedgerEntry(job_key, e.shots, e.day, DONE, job_id or e.job_id), durable=False)

    def release(self, job_key: str) -> None:
        """Un-count a job that provably never ran (the backend does not know its key)."""
        e = self._require(job_key)
        if e.state == DONE:
            raise ValueError(f"job_key {job_key!r} is done: allowed releasing reserved jobs only")
        if e.state != RELEASED:
            self._put(LedgerEntry(job_key, e.shots, e.day, RELEASED, e.job_id), durable=False)

    # -- internals ----------------------------------------------------------------------

    def _require(self, job_key: str) -> LedgerEntry:
        e = self._entries.get(job_key)
        if e is None:
            raise KeyError(f"job_key {job_key!r} is not in the ledger")
        return e

    def _count(self, e: LedgerEntry, sign: int) -> None:
        if e.state != RELEASED:
            self._used += sign * e.shots
            self._per_day[e.day] = self._per_day.get(e.day, 0) + sign * e.shots

    def _put(self, e: LedgerEntry, *, durable: bool) -> None:
        old = self._entries.get(e.job_key)
        if old is not None:
            self._count(old, -1)
        self._entries[e.job_key] = e
        self._count(e, +1)
        self._latest = (e, durable)
        self._save()

    def _save(self) -> None:
        """Persist the latest change: its line appended, or the file rewritten whole."""
        if self.path is None:
            return
        assert self._latest is not None, "_save is called by _put only"
        e, durable = self._latest
        if self._rewrite or not self._append(e, durable and self._fsync):
            _write_atomic(self.path, self._compacted(), self._fsync)
            self._rewrite = False

    def to_dict(self) -> dict[str, Any]:
        return {"format": LEDGER_FORMAT, "budget_shots": self.budget_shots,
                "used_shots": self._used, "per_day": dict(sorted(self._per_day.items())),
                "jobs": {k: e.to_dict() for k, e in self._entries.items()}}

    def _header(self) -> bytes:
        return (f'{{"format": {json.dumps(LEDGER_FORMAT)}, "budget_shots": {json.dumps(self.budget_shots)}, '
                f'"jobs": {{\n').encode()

    @staticmethod
    def _line(lead: bytes, e: LedgerEntry) -> bytes:
        return lead + f"{json.dumps(e.job_key)}: {_SORTED.encode(e.to_dict())}\n".encode()

    def _compacted(self) -> bytes:
        lines = [self._line(b"," if i else b" ", e) for i, e in enumerate(self._entries.values())]
        return self._header() + b"".join(lines) + _FOOTER

    def _append(self, e: LedgerEntry, fsync: bool) -> bool:
        """Overwrite the closing line with ``e``'s line and a new closing line; False (and
        nothing written) if the file does not end as this ledger left it."""
        assert self.path is not None
        try:
            fh = open(self.path, "r+b")
        except FileNotFoundError:
            return False
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 5:
                return False
            fh.seek(size - 5)
            end = fh.read(5)
            # The byte before the closing line tells whether a record precedes it: the
            # header ends in "{", a record in "}".
            if end == b"{\n" + _FOOTER:
                lead = b" "
            elif end == b"}\n" + _FOOTER:
                lead = b","
            else:
                return False
            fh.seek(size - len(_FOOTER))
            fh.write(self._line(lead, e) + _FOOTER)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        return True

    def _load(self, path: Path) -> None:
        data = path.read_bytes()
        first, _, rest = data.partition(b"\n")
        try:
            whole = json.loads(first)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):  # a one-line document: the v1 snapshot (or not a ledger)
            self._load_v1(path, whole)
            return
        try:
            head = json.loads(first + b"}}")
        except json.JSONDecodeError:
            head = None
        if not isinstance(head, dict) or head.get("format") != LEDGER_FORMAT:
            got = head.get("format") if isinstance(head, dict) else None
            raise ValueError(f"ledger {path} format={got!r}: allowed {LEDGER_FORMAT!r} or {LEDGER_FORMAT_V1!r}")
        file_budget = head.get("budget_shots")
        if self.budget_shots is None:
            self.budget_shots = file_budget
        lines = rest.split(b"\n")
        final = max((i for i, x in enumerate(lines) if x), default=-1)
        closed = False
        torn = b""
        for i, raw in enumerate(lines):
            n = i + 2  # line number in the file
            last = i == final
            if not raw:
                continue
            if raw == _FOOTER[:-1] and last:
                closed = True
                continue
            try:
                if raw[:1] not in (b" ", b","):
                    raise ValueError("no leading ' ' or ','")
                item = json.loads(b"{" + raw[1:] + b"}")
                ((key, e),) = item.items()
                entry = LedgerEntry(str(key), int(e["shots"]), str(e["day"]), str(e["state"]),
                                    str(e.get("job_id", "")))
            except (ValueError, KeyError, TypeError, AttributeError):
                if last:
                    torn = raw
                    break
                raise ValueError(f"ledger {path} line {n} is not a ledger record: allowed a torn last "
                                 "line only") from None
            self._set_loaded(path, entry)
        if torn or not closed:
            why = f"dropped its torn last line {torn[:120].decode(errors='replace')!r}" if torn else \
                "its closing line is missing (the last change's line is whole and kept)"
            warnings.warn(f"ledger {path} ends in a torn write: {why}; the next change rewrites it whole",
                          RuntimeWarning, stacklevel=3)
            return
        self._rewrite = file_budget != self.budget_shots

    def _load_v1(self, path: Path, d: dict[str, Any]) -> None:
        if d.get("format") != LEDGER_FORMAT_V1:
            raise ValueError(f"ledger {path} format={d.get('format')!r}: allowed {LEDGER_FORMAT!r} or "
                             f"{LEDGER_FORMAT_V1!r}")
        if self.budget_shots is None:
            self.budget_shots = d.get("budget_shots")
        for k, e in d["jobs"].items():
            self._set_loaded(path, LedgerEntry(k, int(e["shots"]), str(e["day"]), str(e["state"]),
                                               str(e.get("job_id", ""))))

    def _set_loaded(self, path: Path, entry: LedgerEntry) -> None:
        if entry.state not in (RESERVED, DONE, RELEASED):
            raise ValueError(f"ledger {path} job {entry.job_key!r} state={entry.state!r}: allowed "
                             f"{RESERVED}, {DONE}, {RELEASED}")
        old = self._entries.get(entry.job_key)
        if old is not None:
            self._count(old, -1)
        self._entries[entry.job_key] = entry
        self._count(entry, +1)


DEVICE_DAY_FORMAT = "pulsecal.device-day-ledger/1"


class DeviceDayLedger:
    """Shots per UTC day of one *device*, summed over every session that uses it.

    Each session keeps its own ``ShotLedger``; a device's per-day limit
    (``SafetyLimits.max_shots_per_day``) must bound all of them together, including
    sessions running in parallel processes (a sweep's qubits). This file does that: one
    JSON file per device behind an exclusive ``fcntl`` lock (``<path>.lock``), in which a
    job is *charged before it is submitted* (``reserve`` checks the day's sum and adds the
    job in one locked read-modify-write), so parallel sessions cannot together pass the
    limit. Jobs are keyed ``<scope>/<job_key>`` with the session's scope (its folder), so
    two sessions never share an entry; a key already counted is not counted again.

    Like the session ledger it may over-count but never under-counts: a kill between the
    device charge and the session's own reservation leaves a device entry the session does
    not count, which ``sync`` (called when the session resumes) releases.

    Args:
        path: the device's day-ledger file (created on first write).
        fsync: fsync every write.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._fsync = fsync

    # -- queries ------------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": DEVICE_DAY_FORMAT, "days": {}}
        d = json.loads(self.path.read_text())
        if d.get("format") != DEVICE_DAY_FORMAT:
            raise ValueError(f"device day ledger {self.path} format={d.get('format')!r}: "
                             f"allowed {DEVICE_DAY_FORMAT!r}")
        return dict(d)

    def shots_on(self, day: str) -> int:
        """Shots counted on ``day`` over all sessions of the device."""
        return int(sum(self.read()["days"].get(day, {}).values()))

    def counted(self, scope: str, job_key: str, day: str | None = None) -> int:
        """Shots counted for the job (on ``day`` only, if given); 0 if it is not counted."""
        key = _scoped(scope, job_key)
        for d, jobs in self.read()["days"].items():
            if (day is None or d == day) and key in jobs:
                return int(jobs[key])
        return 0

    # -- changes (each one locked read-modify-write) --------------------------------------

    def reserve(self, scope: str, job_key: str, shots: int, day: str, *, max_shots_per_day: int) -> None:
        """Charge ``shots`` of a job about to be submitted to ``day``; a no-op if the job is
        already counted. Raises SafetyViolation naming the device's per-day limit if the
        day's sum over all sessions would exceed it (nothing is charged then)."""
        self._add(scope, job_key, shots, day, max_shots_per_day)

    def charge(self, scope: str, job_key: str, shots: int, day: str) -> None:
        """Count shots that already ran (no limit: they cannot be un-run); a no-op if counted."""
        self._add(scope, job_key, shots, day, None)

    def _add(self, scope: str, job_key: str, shots: int, day: str, limit: int | None) -> None:
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ValueError(f"shots={shots!r}: allowed an integer >= 1")
        key = _scoped(scope, job_key)
        from .params_store import file_lock

        with file_lock(self.lock_path):
            data = self.read()
            if any(key in jobs for jobs in data["days"].values()):
                return
            jobs = data["days"].setdefault(day, {})
            total = int(sum(jobs.values())) + shots
            if limit is not None and total > limit:
                raise SafetyViolation([Violation("max_shots_per_day", total,
                                                 f"<= {limit} shots on {day} over all "
                                                 f"sessions of the device ({self.path.name})")])
            jobs[key] = shots
            self._write(data)

    def release(self, scope: str, job_key: str) -> None:
        """Un-count a job that provably never ran."""
        key = _scoped(scope, job_key)
        from .params_store import file_lock

        with file_lock(self.lock_path):
            data = self.read()
            hit = [d for d, jobs in data["days"].items() if key in jobs]
            for d in hit:
                del data["days"][d][key]
            if hit:
                self._write(data)

    def sync(self, scope: str, ledger: ShotLedger) -> None:
        """Make this scope's entries equal the session ledger's counted ones (on resume):
        charge what the session counts and the device does not (a kill between the two
        writes of an orphan charge), release what only the device counts (a kill between
        the device charge and the session's reservation: never submitted)."""
        from .params_store import file_lock

        prefix = scope + "/"
        want = {_scoped(scope, k): e for k, e in ledger.entries.items() if e.state != RELEASED}
        with file_lock(self.lock_path):
            data = self.read()
            changed = False
            for jobs in data["days"].values():
                for key in [k for k in jobs if k.startswith(prefix) and k not in want]:
                    del jobs[key]
                    changed = True
            have = {k for jobs in data["days"].values() for k in jobs}
            for key, e in want.items():
                if key not in have:
                    data["days"].setdefault(e.day, {})[key] = e.shots
                    changed = True
            if changed:
                self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        data["per_day"] = {d: int(sum(j.values())) for d, j in sorted(data["days"].items())}
        _dump_atomic(self.path, data, self._fsync)


def _dump_atomic(path: Path, data: Mapping[str, Any], fsync: bool) -> None:
    """Replace ``path`` by ``data`` as JSON so a reader never sees half a file."""
    _write_atomic(path, json.dumps(data, sort_keys=True).encode(), fsync)


def _write_atomic(path: Path, data: bytes, fsync: bool) -> None:
    """Replace ``path`` by ``data`` so a reader never sees half a file (a temporary file in
    the same folder, renamed over it; removed again if anything fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _scoped(scope: str, job_key: str) -> str:
    if not isinstance(scope, str) or not scope:
        raise ValueError(f"scope={scope!r}: allowed a non-empty string (the session's folder)")
    return f"{scope}/{job_key}"
