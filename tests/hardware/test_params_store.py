"""The parameter store: versions with timestamps and provenance in plain YAML, idempotent
per session, no lost update under parallel writers; a hand-edited mistake is one line
naming the file, the line, the qubit and the field, and fails only that qubit."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import yaml
from hw_helpers import FakeClock

from pulsecal.hardware.params_store import (
    STORE_FORMAT,
    ParamsStore,
    ParamsStoreError,
    QubitCalibration,
)

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


def _three_qubits(tmp_path: Path) -> tuple[ParamsStore, list[str]]:
    store = ParamsStore(tmp_path / "store.yaml", fsync=False)
    for q in (0, 1, 2):
        store.record(q, P1, provenance={"session_id": f"a-q{q}", "journal": f"/x/q{q}/journal.jsonl"})
    return store, store.path.read_text().splitlines()


def _edit(store: ParamsStore, lines: list[str], qubit: int, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in ``qubit``'s entry; returns the 1-based line edited."""
    start = lines.index(f"  {qubit}:")
    n = next(i for i in range(start, len(lines)) if old in lines[i])
    edited = [*lines[:n], lines[n].replace(old, new), *lines[n + 1:]]
    store.path.write_text("\n".join(edited) + "\n")
    return n + 1


def _one_line_error(store: ParamsStore, qubit: int) -> str:
    with pytest.raises(ParamsStoreError) as e:
        store.latest(qubit)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{store.path}:{e.value.line}: ")
    return msg


def test_a_string_where_a_number_belongs_names_file_line_qubit_and_field(tmp_path: Path) -> None:
    store, lines = _three_qubits(tmp_path)
    line = _edit(store, lines, 1, "amplitude: 0.49", "amplitude: '0.49'")
    msg = _one_line_error(store, 1)
    assert msg.startswith(f"{store.path}:{line}: qubit 1: versions[0]: params.amplitude='0.49': allowed a finite "
                          "number (YAML reads a quoted number"), msg
    # The other qubits' entries are not looked at: they still read.
    assert store.latest(0) is not None and store.latest(2) is not None
    assert store.latest(0).params == P1  # type: ignore[union-attr]
    # Recording on top of the broken entry is refused, and the file is left as it was.
    before = store.path.read_text()
    with pytest.raises(ParamsStoreError, match=rf":{line}: qubit 1: "):
        store.record(1, P2, provenance={"session_id": "b-q1", "journal": "j"})
    assert store.path.read_text() == before
    # YAML reads 3e-10 (no dot) as a string: said so, not read as some other number.
    store, lines = _three_qubits(tmp_path / "b")
    line = _edit(store, lines, 2, "beta_s: 3.0e-10", "beta_s: 3e-10")
    assert f":{line}: qubit 2: versions[0]: params.beta_s='3e-10': allowed a finite number" in _one_line_error(store, 2)
    line = _edit(store, lines, 2, "amplitude: 0.49", "amplitude: abc")
    assert _one_line_error(store, 2).endswith(f":{line}: qubit 2: versions[0]: params.amplitude='abc': allowed "
                                              "a finite number")


@pytest.mark.parametrize(("qubit", "old", "new", "problem"), [
    (0, "amplitude: 0.49", "amplitude: .nan", "versions[0]: params.amplitude=nan: allowed a finite number"),
    (0, "amplitude: 0.49", "amplitude: 1.5", "versions[0]: params.amplitude=1.5: allowed |amplitude| <= 1"),
    (0, "amplitude: 0.49", "amplitude: true", "versions[0]: params.amplitude=True: allowed a finite number"),
    (1, "params: {amplitude: 0.49, ", "params: {", "versions[0]: params keys=['beta_s', 'detuning_hz', 'phase']: "
     "allowed exactly ['amplitude', 'beta_s', 'detuning_hz', 'phase']"),
    (1, "- version: 1", "- version: '1'", "versions[0]: version='1': allowed an integer >= 1"),
    (1, "current: 1", "current: 4", "current=4: allowed one of its versions [1]"),
    (2, "metrics: {}", "metrics: [1, 2]", "versions[0]: metrics=[1, 2]: allowed a mapping"),
])
def test_each_bad_field_is_one_line_at_its_line(tmp_path: Path, qubit: int, old: str, new: str,
                                                problem: str) -> None:
    store, lines = _three_qubits(tmp_path)
    line = _edit(store, lines, qubit, old, new)
    assert _one_line_error(store, qubit) == f"{store.path}:{line}: qubit {qubit}: {problem}"
    assert store.latest((qubit + 1) % 3) is not None  # another qubit still reads


def test_a_missing_key_names_its_version_entry(tmp_path: Path) -> None:
    store, lines = _three_qubits(tmp_path)
    line = _edit(store, lines, 2, "calibrated_at:", "calibrated:")
    # The key is missing, so the line is its version entry's (the one above).
    assert _one_line_error(store, 2) == (f"{store.path}:{line - 1}: qubit 2: versions[0]: calibrated_at: missing "
                                         "(a version entry holds version, calibrated_at, params)")


def test_a_yaml_syntax_error_is_one_line_with_its_line(tmp_path: Path) -> None:
    store, lines = _three_qubits(tmp_path)
    line = _edit(store, lines, 1, "current: 1", "current: 1: 2")
    for q in (0, 1):  # the file does not parse: no qubit can be read
        assert _one_line_error(store, q) == f"{store.path}:{line}: YAML syntax error: mapping values are not allowed here"
    with pytest.raises(ParamsStoreError, match=rf"^{store.path}:{line}: YAML syntax error"):
        store.record(0, P2, provenance={"session_id": "b-q0", "journal": "j"})
    (tmp_path / "keys.yaml").write_text(f"format: {STORE_FORMAT}\nrevision: 1\nqubits:\n  q0: {{}}\n")
    with pytest.raises(ParamsStoreError, match=r"keys.yaml:4: qubits key 'q0': allowed a qubit index"):
        ParamsStore(tmp_path / "keys.yaml").latest(0)


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
