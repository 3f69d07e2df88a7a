"""The parameter store: versions with timestamps and provenance in plain YAML, idempotent
per session, no lost update under parallel writers."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import yaml
from hw_helpers import FakeClock

from pulsecal.hardware.params_store import STORE_FORMAT, ParamsStore, QubitCalibration

P1 = {"amplitude": 0.49, "beta_s": 3e-10, "detuning_hz": 1.2e5, "phase": 0.0}
P2 = {"amplitude": 0.48, "beta_s": 2.9e-10, "detuning_hz": 1.1e5, "phase": 0.0}


def test_versions_timestamps_provenance_and_plain_yaml(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    store = ParamsStore(tmp_path / "store.yaml", clock=clock, fsync=False)
    assert store.latest(0) is None and store.revision == 0
    v1 = store.record(0, P1, metrics={"estimated_infidelity": 2e-4, "shots": 100},
                      provenance={"session_id": "a-q0", "journal": "/x/q0/journal.jsonl", "policy": {"kind": "scripted"}})
    clock.now_s += 3600
    v2 = store.record(0, P2, provenance={"session_id": "b-q0", "journal": "/y/q0/journal.jsonl"})
    store.record(3, P1, provenance={"session_id": "a-q3", "journal": "/x/q3/journal.jsonl"})
    assert (v1.version, v2.version) == (1, 2)
    assert store.latest(0) == v2 and store.latest(0).as_tuple() == (0.48, 2.9e-10, 1.1e5, 0.0)  # type: ignore[union-attr]
    assert [c.version for c in store.history(0)] == [1, 2] and store.qubits() == (0, 3)
    assert v1.calibrated_at == "2027-01-15T08:00:00Z" and v2.calibrated_at == "2027-01-15T09:00:00Z"
    # A person (or any YAML reader) sees every version; the file is safe_load-able.
    data = yaml.safe_load((tmp_path / "store.yaml").read_text())
    assert data["format"] == STORE_FORMAT and data["revision"] == 3
    assert data["qubits"][0]["current"] == 2 and len(data["qubits"][0]["versions"]) == 2
    assert data["qubits"][0]["versions"][0]["provenance"]["policy"] == {"kind": "scripted"}
    assert data["qubits"][0]["versions"][0]["metrics"]["shots"] == 100


def test_recording_the_same_session_twice_adds_no_version(tmp_path: Path) -> None:
    store = ParamsStore(tmp_path / "s.yaml", fsync=False)
    prov = {"session_id": "a-q0", "journal": "/x/q0/journal.jsonl"}
    first = store.record(0, P1, provenance=prov)
    again = store.record(0, P1, provenance=prov)  # a job killed after recording, then re-run
    assert again == first and len(store.history(0)) == 1 and store.revision == 1


def test_validation_names_field_and_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"QubitCalibration.params keys=.*allowed exactly"):
        QubitCalibration(0, 1, "t", {"amplitude": 0.5})
    with pytest.raises(ValueError, match=r"QubitCalibration.params=.*\|amplitude\| <= 1"):
        QubitCalibration(0, 1, "t", {**P1, "amplitude": 1.5})
    with pytest.raises(ValueError, match=r"QubitCalibration.qubit=-1: allowed an integer >= 0"):
        QubitCalibration(-1, 1, "t", P1)
    (tmp_path / "other.yaml").write_text("format: something-else\n")
    with pytest.raises(ValueError, match=r"format='something-else': allowed 'pulsecal.params-store/1'"):
        ParamsStore(tmp_path / "other.yaml").latest(0)


def _writer(path: str, qubit: int, n: int, writer: int) -> None:
    store = ParamsStore(path, fsync=False)
    for i in range(n):
        store.record(qubit, {**P1, "detuning_hz": float(i)}, provenance={"session_id": f"w{writer}-s{i}", "journal": "j"})


def test_parallel_writers_lose_no_update(tmp_path: Path) -> None:
    path = str(tmp_path / "store.yaml")
    ctx = mp.get_context("fork")  # the test module is not importable by name in a spawned child
    procs = [ctx.Process(target=_writer, args=(path, q, 15, w)) for w, q in enumerate((0, 1, 0))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ParamsStore(path)
    assert len(store.history(0)) == 30 and len(store.history(1)) == 15 and store.revision == 45
    assert [c.version for c in store.history(0)] == list(range(1, 31))
