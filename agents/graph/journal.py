"""The graph run's journal: every node start and result, appended and fsynced, read back on resume.

``journal.jsonl`` in the run folder holds one JSON record per line, each written whole
and fsynced before the run goes on, so after a kill the file is every record up to the
last finished write (a torn last line, from a kill inside the write, is ignored on
reading). Records (``event``):

- ``run_start``: a process began or resumed the run (``epoch`` counts them).
- ``node_start``: a node began, with its group and the run clock.
- ``op``: one experiment run of a node (``op``: check_data / calibrate, of the node itself
  or of a dependency it diagnosed), its result whole.
- ``node_end``: a node's outcome (``calibrated``, ``skipped``, ``failed``, ``blocked``,
  ``not_run``), shots, device time, the run clock at its end. A node with a ``node_end``
  is finished: a resumed run never runs it again.
- ``group_end``: a parallel group finished, with the run clock after it.
- ``run_end``: the run finished.

The run folder is held by ``hardware.session_lock`` while a process runs it, so there is
one writer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .experiment import ExperimentResult

JOURNAL_NAME = "journal.jsonl"
JOURNAL_FORMAT = "pulsecal.graph-journal/1"


def result_to_dict(r: ExperimentResult) -> dict[str, Any]:
    return {"experiment": r.experiment, "target": r.target if isinstance(r.target, str) else list(r.target),
            "status": r.status, "values": dict(r.values), "quality": dict(r.quality), "shots": r.shots,
            "device_time_s": r.device_time_s, "data": _jsonable(r.data), "message": r.message}


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # numpy arrays and scalars
        return x.tolist()
    return x


class GraphJournal:
    """Append-only JSON-lines journal of a graph run (module docstring).

    Args:
        folder: the run folder; the journal is ``folder/journal.jsonl``.
        fsync: fsync after every record.
    """

    def __init__(self, folder: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(folder) / JOURNAL_NAME
        self._fsync = fsync

    def records(self) -> list[dict[str, Any]]:
        return list(self._read())

    def _read(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path) as f:
            for line in f:
                if not line.endswith("\n"):
                    return  # torn by a kill inside the write: never acted on
                try:
                    rec = json.loads(line)
                except ValueError:
                    return
                if isinstance(rec, dict):
                    yield rec

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        rec = {"event": event, **_jsonable(fields)}
        line = json.dumps(rec, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A torn last line (a kill inside an earlier write) would glue onto this record.
        self._heal()
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())
        return rec

    def _heal(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            f.truncate(data.rfind(b"\n") + 1)


@dataclass
class GraphJournalState:
    """What a run's journal says so far."""

    epochs: int = 0
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> its node_end record
    clock_s: float = 0.0
    shots: int = 0
    device_clock_s: float = 0.0
    ended: bool = False
    config: dict[str, Any] | None = None
    groups: list[list[str]] = field(default_factory=list)


def read_state(journal: GraphJournal) -> GraphJournalState:
    """Fold the journal into what a resumed run needs: finished nodes, the run clock (every
    finished group, plus the longest finished node of a group a kill interrupted), the shots
    every journaled experiment run spent, the device's own clock."""
    s = GraphJournalState()
    open_group: float = 0.0
    for rec in journal.records():
        ev = rec.get("event")
        if ev == "run_start":
            s.epochs += 1
            if s.epochs == 1:  # the run clock's start (later starts resume it)
                s.clock_s = float(rec.get("clock_s", 0.0))
                if isinstance(rec.get("config"), dict):
                    s.config = rec["config"]
            s.ended = False
        elif ev == "op":
            s.shots += int(rec.get("result", {}).get("shots", 0))
            s.device_clock_s = max(s.device_clock_s, float(rec.get("device_clock_s", 0.0)))
        elif ev == "node_end":
            s.finished[str(rec["node"])] = rec
            open_group = max(open_group, float(rec.get("device_time_s", 0.0)))
        elif ev == "group_end":
            s.clock_s = float(rec["clock_s"])
            s.groups.append([str(n) for n in rec.get("nodes", [])])
            open_group = 0.0
        elif ev == "run_end":
            s.ended = True
    s.clock_s += open_group
    return s


__all__ = ["JOURNAL_FORMAT", "JOURNAL_NAME", "GraphJournal", "GraphJournalState", "read_state", "result_to_dict"]
