"""The parameter store: calibrated gate parameters per qubit, versioned, in one YAML file.

A sweep writes each qubit's result here when its session finishes, and the next sweep
starts each qubit from the latest version (``qiskit-experiments`` keeps the same split:
running, analysing and *updating the stored parameters* are separate steps). The file is
meant to be read by a person and diffed in review, so it is plain YAML (``safe_dump``,
read back with ``safe_load``) and keeps every version, never only the latest::

    format: pulsecal.params-store/1
    revision: 7                         # +1 on every write
    updated_at: '2026-11-03T10:12:55Z'
    qubits:
      0:
        current: 2                      # the version a sweep starts from
        versions:
        - version: 1
          calibrated_at: '2026-11-02T09:00:01Z'
          params: {amplitude: 0.4982, beta_s: 3.1e-10, detuning_hz: 120344.0, phase: 0.0}
          metrics: {estimated_infidelity: 2.1e-4, shots: 12000}
          provenance: {session_id: ..., journal: .../q0/journal.jsonl, policy: {...}, backend: {...}}
        - version: 2
          ...

Parallel sweep jobs (joblib processes, Ray workers, SLURM tasks on a shared file system)
write the same file, so every read-modify-write holds an exclusive ``fcntl`` lock on a
sibling ``.lock`` file and replaces the store atomically (temporary file, fsync, rename).
``fcntl`` locks are advisory and POSIX-only, and NFS honours them only with a lock
manager; the store is small, so one lock for the whole file is enough.

People edit the file, so reading it checks every value it uses and a mistake is one line
naming the file, the line, the qubit and the field (``ParamsStoreError``, a ValueError):
a YAML syntax error, a string where a number belongs (quoted, or ``3e-10``, which YAML
reads as a string without a dot), a missing key. An entry is checked when its qubit is
read, so one qubit's bad entry fails that qubit only; the line numbers come from the YAML
parser's marks (``yaml.compose``: nodes only, nothing constructed).
"""

from __future__ import annotations

import fcntl
import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pulsecal.envs.calibration import PARAMETER_NAMES

STORE_FORMAT = "pulsecal.params-store/1"
_VERSION_KEYS = ("version", "calibrated_at", "params")


def utc_iso(timestamp_s: float) -> str:
    """A POSIX timestamp as an ISO-8601 UTC string with a ``Z`` (second resolution)."""
    return datetime.fromtimestamp(timestamp_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def write_atomic(path: Path, text: str, *, fsync: bool = True) -> None:
    """Replace ``path`` by ``text`` so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    tmp.replace(path)


class ParamsStoreError(ValueError):
    """The store file cannot be read: ``<file>:<line>: [qubit <q>: ]<what>`` on one line.

    Attributes:
        path: the store file.
        line: 1-based line of the offending entry (None: not known, e.g. an empty file).
        qubit: the qubit whose entry is wrong (None: the file as a whole).
    """

    def __init__(self, path: Path, line: int | None, message: str, qubit: int | None = None) -> None:
        self.path, self.line, self.qubit = path, line, qubit
        where = f"{path}:{line}" if line is not None else str(path)
        who = f"qubit {qubit}: " if qubit is not None else ""
        super().__init__(" ".join(f"{where}: {who}{message}".split()))


class _FieldError(ValueError):
    """A bad field of a stored calibration; ``field`` is its dotted path in the version
    entry (``params.amplitude``) and ``problem`` reads ``<field>=<value>: allowed ...``."""

    def __init__(self, message: str, field: str, problem: str) -> None:
        super().__init__(message)
        self.field, self.problem = field, problem


def _check_number(owner: str, field: str, value: Any) -> float:
    """``value`` as a float if it is a finite real number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        allowed = "a finite number"
        if isinstance(value, str):
            try:
                float(value)
                allowed += " (YAML reads a quoted number, or one like 3e-10 without a dot, as a string)"
            except ValueError:
                pass
        problem = f"{field}={value!r}: allowed {allowed}"
        raise _FieldError(f"{owner}.{problem}", field, problem)
    return float(value)


@dataclass(frozen=True)
class QubitCalibration:
    """One stored version of a qubit's calibration.

    Attributes:
        qubit: the qubit index, >= 0.
        version: 1, 2, ... per qubit.
        calibrated_at: ISO-8601 UTC time the version was recorded.
        params: the DRAG parameters by name (amplitude, beta_s, detuning_hz, phase), SI units.
        metrics: what the session measured (estimated infidelity, shots, ...).
        provenance: where it came from: session id, journal path, policy, backend, sweep.
    """

    qubit: int
    version: int
    calibrated_at: str
    params: Mapping[str, float]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.qubit, bool) or not isinstance(self.qubit, int) or self.qubit < 0:
            raise ValueError(f"QubitCalibration.qubit={self.qubit!r}: allowed an integer >= 0")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            problem = f"version={self.version!r}: allowed an integer >= 1"
            raise _FieldError(f"QubitCalibration.{problem}", "version", problem)
        if not isinstance(self.params, Mapping):
            problem = f"params={self.params!r}: allowed a mapping of {list(PARAMETER_NAMES)}"
            raise _FieldError(f"QubitCalibration.{problem}", "params", problem)
        if set(self.params) != set(PARAMETER_NAMES):
            problem = f"params keys={sorted(map(str, self.params))!r}: allowed exactly {list(PARAMETER_NAMES)}"
            raise _FieldError(f"QubitCalibration.{problem}", "params", problem)
        clean = {k: _check_number("QubitCalibration", f"params.{k}", self.params[k]) for k in PARAMETER_NAMES}
        if abs(clean["amplitude"]) > 1:
            problem = f"params.amplitude={clean['amplitude']!r}: allowed |amplitude| <= 1"
            raise _FieldError(f"QubitCalibration.params={clean!r}: allowed finite values, |amplitude| <= 1",
                              "params.amplitude", problem)
        for name in ("metrics", "provenance"):
            if not isinstance(getattr(self, name), Mapping):
                problem = f"{name}={getattr(self, name)!r}: allowed a mapping"
                raise _FieldError(f"QubitCalibration.{problem}", name, problem)
        object.__setattr__(self, "params", clean)
        object.__setattr__(self, "metrics", dict(self.metrics))
        object.__setattr__(self, "provenance", dict(self.provenance))

    def as_tuple(self) -> tuple[float, float, float, float]:
        """(amplitude, beta_s, detuning_hz, phase): the order of ``ReplaySettings.initial_params``."""
        p = self.params
        return (p["amplitude"], p["beta_s"], p["detuning_hz"], p["phase"])

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "calibrated_at": self.calibrated_at, "params": dict(self.params),
                "metrics": _plain(self.metrics), "provenance": _plain(self.provenance)}

    @classmethod
    def from_dict(cls, qubit: int, d: Mapping[str, Any]) -> QubitCalibration:
        """A stored version entry; a missing or mistyped field raises ValueError naming it."""
        if not isinstance(d, Mapping):
            problem = f"version entry={d!r}: allowed a mapping with {', '.join(_VERSION_KEYS)}"
            raise _FieldError(f"QubitCalibration {problem}", "", problem)
        for key in _VERSION_KEYS:
            if key not in d:
                problem = f"{key}: missing (a version entry holds {', '.join(_VERSION_KEYS)})"
                raise _FieldError(f"QubitCalibration.{problem}", "", problem)
        version = d["version"]
        if isinstance(version, bool) or not isinstance(version, int):
            problem = f"version={version!r}: allowed an integer >= 1"
            raise _FieldError(f"QubitCalibration.{problem}", "version", problem)
        return cls(int(qubit), version, str(d["calibrated_at"]), d["params"],
                   d.get("metrics") or {}, d.get("provenance") or {})


class ParamsStore:
    """Versioned per-qubit calibrations in one YAML file (see the module docstring).

    Args:
        path: the store file (created on the first ``record``); its lock is ``<path>.lock``.
        clock: wall-clock seconds for the timestamps (inject a fake in tests).
        fsync: fsync every write.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] | None = None,
                 fsync: bool = True) -> None:
        import time

        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._clock = clock if clock is not None else time.time
        self._fsync = fsync
        self._text = ""  # the file as last read, for the line numbers of errors

    # -- reading ------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": STORE_FORMAT, "revision": 0, "updated_at": None, "qubits": {}}
        text = self.path.read_text()
        self._text = text
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            what = " ".join(str(x) for x in (getattr(e, "problem", None), getattr(e, "context", None)) if x)
            raise ParamsStoreError(self.path, None if mark is None else mark.line + 1,
                                   f"YAML syntax error: {what or e}") from None
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ParamsStoreError(self.path, self._line(["format"]), f"format={got!r}: allowed {STORE_FORMAT!r}")
        data.setdefault("qubits", {})
        qubits = data["qubits"]
        if not isinstance(qubits, dict):
            raise ParamsStoreError(self.path, self._line(["qubits"]),
                                   f"qubits={qubits!r}: allowed a mapping of qubit index to its versions")
        for q in qubits:
            if isinstance(q, bool) or not isinstance(q, int) or q < 0:
                raise ParamsStoreError(self.path, self._line(["qubits", q]),
                                       f"qubits key {q!r}: allowed a qubit index, an integer >= 0")
        revision = data.get("revision", 0)
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ParamsStoreError(self.path, self._line(["revision"]), f"revision={revision!r}: allowed an integer >= 0")
        return data

    def _line(self, keys: Sequence[Any]) -> int | None:
        """1-based line of the node at ``keys`` in the file last read (its deepest existing
        ancestor if it has no such node), from the parser's marks."""
        try:
            node: yaml.Node | None = yaml.compose(self._text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            return None
        if node is None:
            return None
        for key in keys:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
                child = node.value[key]
            if child is None:
                break
            node = child
        return int(node.start_mark.line) + 1

    def _entry_error(self, qubit: int, keys: Sequence[Any], problem: str) -> ParamsStoreError:
        return ParamsStoreError(self.path, self._line(["qubits", qubit, *keys]), problem, qubit=qubit)

    def _versions(self, data: Mapping[str, Any], qubit: int) -> tuple[tuple[QubitCalibration, ...], int]:
        """Every stored version of ``qubit``, checked, and the number of its current one
        (0 and () if it has none); a bad entry raises ``ParamsStoreError`` at its line."""
        q = int(qubit)
        entry = data["qubits"].get(q)
        if not entry:
            return (), 0
        if not isinstance(entry, Mapping):
            raise self._entry_error(q, [], f"entry={entry!r}: allowed a mapping with current and versions")
        if not isinstance(entry.get("versions", []), list):
            raise self._entry_error(q, ["versions"], f"versions={entry['versions']!r}: allowed a list of versions")
        out: list[QubitCalibration] = []
        for i, v in enumerate(entry.get("versions", [])):
            try:
                cal = QubitCalibration.from_dict(q, v)
            except _FieldError as e:
                keys = ["versions", i, *(e.field.split(".") if e.field else [])]
                raise self._entry_error(q, keys, f"versions[{i}]: {e.problem}") from None
            if any(c.version == cal.version for c in out):
                raise self._entry_error(q, ["versions", i, "version"],
                                        f"versions[{i}]: version={cal.version}: allowed a number no other "
                                        "version of the qubit has")
            out.append(cal)
        if not out:
            return (), 0
        numbers_ = [c.version for c in out]
        current = entry.get("current", max(numbers_))
        if isinstance(current, bool) or current not in numbers_:
            raise self._entry_error(q, ["current"], f"current={current!r}: allowed one of its versions {numbers_}")
        return tuple(out), int(current)

    @property
    def revision(self) -> int:
        """How many writes the store has seen (0: it does not exist yet)."""
        return int(self._load().get("revision", 0))

    def qubits(self) -> tuple[int, ...]:
        return tuple(sorted(int(q) for q in self._load()["qubits"]))

    def history(self, qubit: int) -> tuple[QubitCalibration, ...]:
        """Every version of ``qubit``, oldest first (empty if it was never calibrated)."""
        return self._versions(self._load(), qubit)[0]

    def latest(self, qubit: int) -> QubitCalibration | None:
        """The current version of ``qubit`` (the one the next sweep starts from), or None.

        Raises ``ParamsStoreError`` (file, line, qubit, field) if the file or this qubit's
        entry is malformed; other qubits' entries are not looked at."""
        versions, current = self._versions(self._load(), qubit)
        return next((c for c in versions if c.version == current), None)

    # -- writing ------------------------------------------------------------------------

    def record(self, qubit: int, params: Mapping[str, float], *, metrics: Mapping[str, Any] | None = None,
               provenance: Mapping[str, Any] | None = None) -> QubitCalibration:
        """Add a new version of ``qubit`` and make it current; returns it.

        Idempotent for one session: if the current version has the same provenance
        (session id and journal) and the same parameters, nothing is written and that
        version is returned (a job killed after recording and re-run does not add a copy).
        """
        prov = _plain(dict(provenance or {}))
        with file_lock(self.lock_path):
            data = self._load()
            # Checked first: a version is never added on top of an entry a person broke.
            old, _ = self._versions(data, qubit)
            entry = data["qubits"].setdefault(int(qubit), {"current": 0, "versions": []})
            versions = entry["versions"]
            new = QubitCalibration(int(qubit), max((c.version for c in old), default=0) + 1,
                                   utc_iso(self._clock()), dict(params),
                                   dict(metrics or {}), prov)
            if old:
                cur = old[-1]
                same_source = all(cur.provenance.get(k) == prov.get(k) for k in ("session_id", "journal"))
                if same_source and cur.params == new.params:
                    return cur
            versions.append(new.to_dict())
            entry["current"] = new.version
            data["revision"] = int(data.get("revision", 0)) + 1
            data["updated_at"] = new.calibrated_at
            data["qubits"] = {k: data["qubits"][k] for k in sorted(data["qubits"])}
            write_atomic(self.path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None),
                         fsync=self._fsync)
            return new


def _plain(obj: Any) -> Any:
    """Only YAML-safe plain types (safe_dump refuses tuples and numpy scalars)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return _plain(item())
    return str(obj)


__all__ = ["STORE_FORMAT", "ParamsStore", "ParamsStoreError", "QubitCalibration", "file_lock", "utc_iso", "write_atomic"]
