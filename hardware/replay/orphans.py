"""Shot accounting across kills: executions that died with earlier processes, in-flight
jobs at a resume, and the reconciliation of ledger and journal (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backend import Backend, BackendError
from ..journal import Journal
from ..ledger import RELEASED, RESERVED, DeviceDayLedger, ShotLedger
from .journal_state import JournalState


def recover_from_journal(backend: Backend, journal: Journal, state: JournalState, sid: str,
                          proc: int) -> None:
    """Audit what was in flight at the kill: jobs journaled as submitted (job id known) but
    not completed, and whether the backend still knows them (``find``). The live step
    recovers those it knows and re-runs the others under the same key."""
    completed = {r["job_key"] for r in state.records if r.get("event") == "completed"}
    pending: dict[str, str] = {}
    for r in state.records:
        if r.get("event") in ("submitted", "recovered") and r.get("job_id") and r["job_key"] not in completed:
            pending[str(r["job_key"])] = str(r["job_id"])
    jobs = []
    for key, job_id in pending.items():
        try:
            known: bool | str = backend.find(key) is not None
        except BackendError as e:
            known = f"find failed: {e}"
        jobs.append({"job_key": key, "job_id": job_id, "backend_knows": known})
    if jobs:
        journal.append("inflight_at_resume", session=sid, jobs=jobs, process=proc)


def next_process(state: JournalState) -> int:
    """The first process number no record of the session uses yet."""
    used = [r["process"] for r in state.records if isinstance(r.get("process"), int)]
    return max(used) + 1 if used else 0


_ORPHAN = ":orphan:"


class OrphanAccounting:
    """The write-ahead charge of executions that died with earlier processes, and the
    reconciliation of ledger and journal on resume (see the module docstring). The session
    folder's ledger holds this session's jobs only (``session.json`` pins the folder to it)."""

    def __init__(self, journal: Journal, ledger: ShotLedger, state: JournalState, sid: str, proc: int,
                 write_ahead: bool, *, today: Callable[[], str], device_ledger: DeviceDayLedger | None = None,
                 scope: str = "") -> None:
        self.journal, self.ledger, self.sid, self.proc = journal, ledger, sid, proc
        self.device_ledger, self.scope = device_ledger, scope
        self.write_ahead = write_ahead
        self.today = today
        self.records = list(state.records)
        # job key -> distinct earlier processes that may have run it, and its shots
        self.ran_in: dict[str, set[Any]] = {}
        self.shots_of: dict[str, int] = {}
        for r in self.records:
            ev, key = r.get("event"), r.get("job_key")
            if ev == "submitting" and key:
                self.ran_in.setdefault(str(key), set()).add(r.get("process"))
                self.shots_of[str(key)] = int(r["shots"])
            elif ev == "failed" and key:  # find proved it never reached the backend
                self.ran_in.get(str(key), set()).discard(r.get("process"))
        self.orphans: dict[str, set[str]] = {}  # job key -> its orphan ledger keys
        self.shots = 0
        for r in self.records:
            if r.get("event") == "orphaned":
                self.orphans.setdefault(str(r["job_key"]), set()).add(str(r["ledger_key"]))
                self.shots += int(r["shots"])
        self.handled: set[str] = set()

    def _counted(self, key: str) -> bool:
        e = self.ledger.entry(key)
        return e is not None and e.state != RELEASED

    def reconcile(self) -> None:
        """Bring ledger and journal back in step after a kill (idempotent)."""
        recorded = {str(r["ledger_key"]) for r in self.records if r.get("event") == "orphaned"}
        for r in self.records:
            okey = str(r.get("ledger_key", ""))
            if r.get("event") == "orphaned" and r.get("charged", True) and not self._counted(okey):
                # Journaled, then killed before the ledger write.
                self.ledger.charge(okey, int(r["shots"]), str(r.get("day") or self.today()), "orphan")
                self.journal.append("reconciled", session=self.sid, action="charged", job_key=r["job_key"],
                                    ledger_key=okey, shots=int(r["shots"]), process=self.proc)
        for okey, e in self.ledger.entries.items():
            key, sep, n = okey.rpartition(_ORPHAN)
            if sep and n.isdigit() and okey not in recorded and e.state != RELEASED:
                # Charged in the ledger first and killed before journaling (the order of
                # sessions without write-ahead records): the journal gets its record now.
                self.journal.append("orphaned", session=self.sid, job_key=key, shots=e.shots,
                                    ledger_key=okey, day=e.day, charged=True, reconciled=True,
                                    process=self.proc)
                self.orphans.setdefault(key, set()).add(okey)
                self.shots += e.shots
        if not self.write_ahead:
            # A journal without submitting records cannot tell which keys reached the
            # backend: every key counted may have run in an earlier process.
            for key, e in self.ledger.entries.items():
                if e.state != RELEASED and _ORPHAN not in key:
                    self.ran_in.setdefault(key, set()).add("before-write-ahead")
                    self.shots_of.setdefault(key, e.shots)
            return
        for key, e in self.ledger.entries.items():
            if e.state == RESERVED and _ORPHAN not in key and key not in self.ran_in:
                # Reserved, then killed before ``submitting``: it never reached the backend.
                self.journal.append("released", session=self.sid, job_key=key, shots=e.shots,
                                    reason="reserved but never submitted (no submitting record)",
                                    process=self.proc)
                self.ledger.release(key)

    def before_submit(self, key: str, shots: int, step: int, index: int) -> None:
        """Before this process first submits ``key``: charge the executions earlier
        processes may have run, journal first (``orphaned``), then the ledger."""
        if key in self.handled:
            return
        self.handled.add(key)
        earlier = len(self.ran_in.get(key, ()))
        have = self.orphans.setdefault(key, set())
        n = int(self.shots_of.get(key, shots))
        i = 0
        while len(have) < earlier:
            i += 1
            okey = f"{key}{_ORPHAN}{i}"
            if okey in have:
                continue
            day = self.today()
            self.journal.append("orphaned", session=self.sid, step=step, index=index, job_key=key, shots=n,
                                ledger_key=okey, day=day, charged=True, process=self.proc)
            self.ledger.charge(okey, n, day, "orphan")
            if self.device_ledger is not None:  # a kill before this write: sync on resume
                self.device_ledger.charge(self.scope, okey, n, day)
            have.add(okey)
            self.shots += n


