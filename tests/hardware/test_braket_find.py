"""Braket exactly-once across processes: a task is created tagged (and idempotency-keyed)
with its job key, and a *new* ``BraketBackend`` — the process restarted after a kill while
the task was queued — finds it by that tag through ``search_quantum_tasks`` and never
creates it again. AWS is never called: the session is a fake that keeps the "cloud" side."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("braket.pulse")

from pulsecal.hardware import ir
from pulsecal.hardware.adapters.openpulse import JOB_KEY_TAG, BraketBackend
from pulsecal.hardware.backend import BackendError, TransientBackendError
from pulsecal.hardware.device import BackendDevice
from pulsecal.hardware.guard import GuardedBackend
from pulsecal.hardware.journal import Journal, read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.replay import default_limits

from .hw_helpers import FakeClock

ARN = "arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-3"


class FakeCloud:
    """What Braket's service keeps: tasks with tags; creates are idempotent on clientToken
    as the service's are; search pages through ``page_size`` tasks at a time."""

    def __init__(self, page_size: int = 2) -> None:
        self.tasks: list[dict[str, Any]] = []
        self.creates: list[dict[str, Any]] = []
        self.searches: list[dict[str, Any]] = []
        self.page_size = page_size
        self.fail_search: Exception | None = None
        self._ids = itertools.count()

    def create_quantum_task(self, **kw: Any) -> str:
        self.creates.append(kw)
        for t in self.tasks:
            if t["clientToken"] == kw["clientToken"]:
                return str(t["quantumTaskArn"])
        arn = f"arn:aws:braket:us-west-1:000000000000:quantum-task/t{next(self._ids)}"
        self.tasks.append({"quantumTaskArn": arn, "deviceArn": kw["deviceArn"], "status": "QUEUED",
                           "shots": kw["shots"], "tags": dict(kw.get("tags") or {}),
                           "createdAt": f"2026-11-21T10:00:{len(self.tasks):02d}Z", "clientToken": kw["clientToken"]})
        return arn

    def search_quantum_tasks(self, *, filters: list[dict[str, Any]], maxResults: int = 100,
                             nextToken: str | None = None) -> dict[str, Any]:
        self.searches.append({"filters": filters, "nextToken": nextToken})
        if self.fail_search is not None:
            raise self.fail_search
        device = next(f["values"][0] for f in filters if f["name"] == "deviceArn")
        mine = [{k: v for k, v in t.items() if k != "clientToken"} for t in self.tasks if t["deviceArn"] == device]
        start = int(nextToken or 0)
        page = mine[start:start + self.page_size]
        out: dict[str, Any] = {"quantumTasks": page}
        if start + self.page_size < len(mine):
            out["nextToken"] = str(start + self.page_size)
        return out


class FakeSession:
    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.braket_client = cloud

    def create_quantum_task(self, **kw: Any) -> str:
        return self.cloud.create_quantum_task(**kw)


def _program(backend: BraketBackend, qubit: int = 0) -> ir.Program:
    f = backend.capabilities().drive_frame(qubit)
    return ir.Program((ir.FramePlay(f.name, ir.Gaussian(40e-9, 10e-9, 0.3)), ir.Acquire(qubit)), (f,), 100, (qubit,))


def _backend(cloud: FakeCloud) -> BraketBackend:
    return BraketBackend(aws_session=FakeSession(cloud), s3_destination_folder=("bucket", "prefix"))


def test_a_restarted_process_finds_the_task_by_its_tag_and_creates_none(tmp_path: Path) -> None:
    cloud = FakeCloud()
    first = _backend(cloud)
    ledger = ShotLedger(tmp_path / "ledger.json", fsync=False)
    guard = GuardedBackend(first, default_limits(first), ledger)  # both qubits' frames
    # Other tasks on the device, before and after ours: the search must page past them.
    for k in range(3):
        guard.submit(_program(first), 100, f"other-{k}")
    h = guard.submit(_program(first, 1), 100, "the-key")
    guard.submit(_program(first), 100, "later")
    assert len(cloud.creates) == 5
    sent = cloud.creates[3]
    assert sent["tags"] == {JOB_KEY_TAG: "the-key"} and sent["clientToken"] == "the-key"
    assert sent["deviceArn"] == ARN and sent["shots"] == 100 and (sent["outputS3Bucket"], sent["outputS3KeyPrefix"]) == ("bucket", "prefix")
    assert "q1_rf_frame" in sent["action"] and "q1_ro_rx_frame" in sent["action"]

    # The process dies with the task queued; a new one starts with nothing in memory.
    restarted = _backend(cloud)
    found = restarted.find("the-key")
    assert found == h and len(cloud.creates) == 5
    assert len(cloud.searches) == 3  # five tasks, two per page
    assert {f["name"] for f in cloud.searches[0]["filters"]} == {"deviceArn", "createdAt"}
    assert restarted.find("never-submitted") is None

    # The resumed session's device asks before it submits a key its ledger counts: recovered,
    # not created again.
    clock = FakeClock()
    dev = BackendDevice(restarted, limits=default_limits(restarted, 1), ledger=ShotLedger(tmp_path / "ledger.json",
                        fsync=False), journal=Journal(tmp_path / "j.jsonl"), session_id="s", qubit=1,
                        clock=clock, sleep=clock.sleep)
    assert dev.guard.find("the-key") == h
    again = dev._submit(_program(restarted, 1), "the-key", 100, 0, 0)
    assert again == h and len(cloud.creates) == 5
    assert [r["event"] for r in read_journal(tmp_path / "j.jsonl")] == ["recovered"]


def test_a_create_retried_after_a_lost_response_is_one_task() -> None:
    cloud = FakeCloud()
    a, b = _backend(cloud), _backend(cloud)
    ga = GuardedBackend(a, default_limits(a, 0), ShotLedger(None, fsync=False))
    gb = GuardedBackend(b, default_limits(b, 0), ShotLedger(None, fsync=False))
    ha = ga.submit(_program(a), 100, "k")
    hb = gb.submit(_program(b), 100, "k")  # the same key sent again from elsewhere
    assert ha == hb and len(cloud.tasks) == 1  # the service's clientToken deduplicates


def test_search_failures_are_backend_errors_transient_or_final() -> None:
    cloud = FakeCloud()
    b = _backend(cloud)

    class ThrottlingException(Exception):
        pass

    class AccessDeniedException(Exception):
        pass

    cloud.fail_search = ThrottlingException("slow down")
    with pytest.raises(TransientBackendError, match="ThrottlingException"):
        b.find("k")
    cloud.fail_search = AccessDeniedException("no")
    with pytest.raises(BackendError, match="Braket task search failed: AccessDeniedException"):
        b.find("k")
    with pytest.raises(ValueError, match=r"s3_destination_folder=\('b',\): allowed \(bucket, key prefix\)"):
        BraketBackend(s3_destination_folder=("b",))  # type: ignore[arg-type]
