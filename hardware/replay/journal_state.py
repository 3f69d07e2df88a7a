"""A session's journal, read back: what has happened, in the order the session did it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..journal import read_journal
from .settings import ReplayDivergence


@dataclass(frozen=True)
class JournalState:
    """What a session's journal says has happened (records of this session only)."""

    records: tuple[dict[str, Any], ...]
    started: dict[str, Any] | None
    runs_done: tuple[dict[str, Any], ...]
    actions: tuple[dict[str, Any], ...]
    observations: tuple[dict[str, Any], ...]
    advances: int
    finished: dict[str, Any] | None
    # The first terminal ``session_stopped`` record: the session ended there for good (a
    # lost job's stop is not terminal, its session resumes).
    stopped: dict[str, Any] | None = None

    @classmethod
    def read(cls, path: Path, session_id: str) -> JournalState:
        recs = tuple(r for r in read_journal(path) if r.get("session") == session_id)
        by: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            by.setdefault(str(r.get("event")), []).append(r)

        def ordered(name: str, key: str, first: int = 0) -> tuple[dict[str, Any], ...]:
            # A step can appear twice only if the process died between writing it and
            # moving on; the first record is the one the session continued from.
            seen: dict[int, dict[str, Any]] = {}
            for r in by.get(name, []):
                seen.setdefault(int(r[key]), r)
            steps = sorted(seen)
            if steps != list(range(first, first + len(steps))):
                raise ReplayDivergence(f"journal {path}: {name} records for steps {steps}: allowed "
                                       f"{first}..n without gaps")
            return tuple(seen[s] for s in steps)

        started = by.get("session_started", [None])[0]
        finished = by.get("session_finished", [None])[0]
        stopped = next((r for r in by.get("session_stopped", []) if r.get("terminal")), None)
        return cls(recs, started, ordered("run_done", "step"), ordered("action", "env_step", 1),
                   ordered("observation", "env_step"), len(by.get("advance", [])), finished, stopped)


