"""The append-only JSONL job journal.

One JSON object per line, written with a single ``write``, so a crash can only leave a torn
*last* line. ``append`` fsyncs its record before it returns; ``append(..., durable=False)``
writes it without waiting for the disk, and it becomes durable with the next fsync of the
file (fsync covers every earlier write to it). So a power cut loses at most the unsynced
records after the last durable one, and a killed process loses none (the kernel holds the
written data). Reading ignores (and reports) a torn last line; opening a journal for
appending moves a torn tail into ``<journal>.torn`` first, so the next record starts on a
fresh line and the journal never has a bad line in the middle.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOURNAL_FORMAT = "pulsecal.journal/1"


@dataclass(frozen=True)
class JournalRead:
    """Records read from a journal, and the torn last line if there was one."""

    records: tuple[dict[str, Any], ...]
    torn_tail: str = ""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def read_journal(path: str | os.PathLike[str]) -> JournalRead:
    """Parse a journal; a last line that is not valid JSON or lacks its newline is a torn
    write and is returned separately. A bad line anywhere else raises ValueError."""
    p = Path(path)
    if not p.exists():
        return JournalRead(())
    data = p.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail is b"" when the file ends with "\n"
    records: list[dict[str, Any]] = []
    for i, raw in enumerate(complete):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            if i == len(complete) - 1 and not tail:
                return JournalRead(tuple(records), raw.decode(errors="replace"))
            raise ValueError(f"journal {p} line {i + 1} is not JSON: allowed only a torn last line") from None
        if not isinstance(rec, dict):
            raise ValueError(f"journal {p} line {i + 1} is {type(rec).__name__}: allowed a JSON object")
        records.append(rec)
    return JournalRead(tuple(records), tail.decode(errors="replace"))


class Journal:
    """Appends one record per event to a JSONL file (module docstring: which are fsynced).

    Args:
        path: the journal file (created if missing).
        clock: wall-clock seconds for the ``ts`` field (injectable for tests).
        fsync: fsync the records of ``append`` (False: none is fsynced, for tests).
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 fsync: bool = True) -> None:
        self.path = Path(path)
        self._clock = clock
        self._fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()

    def _repair_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            with open(self.path.with_name(self.path.name + ".torn"), "ab") as torn:
                torn.write(data[cut:] + b"\n")
                torn.flush()
                os.fsync(torn.fileno())
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, event: str, *, durable: bool = True, **fields: Any) -> dict[str, Any]:
        """Write ``{"event": event, "ts": now, **fields}`` as one line and fsync it (and so
        every unsynced record before it); returns the record. ``durable=False`` skips the
        fsync: the record is durable with the next durable one."""
        return self._write(event, fields, self._fsync and durable)

    def _write(self, event: str, fields: dict[str, Any], fsync: bool) -> dict[str, Any]:
        rec: dict[str, Any] = {"format": JOURNAL_FORMAT, "event": event, "ts": self._clock(), **fields}
        line = (_ENCODER.encode(rec) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return rec

    def read(self) -> JournalRead:
        return read_journal(self.path)


def _jsonable(obj: object) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


# json.dumps with options builds an encoder per call; a record is written several times per job.
_ENCODER = json.JSONEncoder(sort_keys=True, default=_jsonable)
