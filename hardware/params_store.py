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
"""

from __future__ import annotations

import fcntl
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pulsecal.envs.calibration import PARAMETER_NAMES

STORE_FORMAT = "pulsecal.params-store/1"


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
            raise ValueError(f"QubitCalibration.version={self.version!r}: allowed an integer >= 1")
        if set(self.params) != set(PARAMETER_NAMES):
            raise ValueError(f"QubitCalibration.params keys={sorted(self.params)!r}: allowed exactly "
                             f"{list(PARAMETER_NAMES)}")
        clean = {k: float(self.params[k]) for k in PARAMETER_NAMES}
        if not all(math.isfinite(v) for v in clean.values()) or abs(clean["amplitude"]) > 1:
            raise ValueError(f"QubitCalibration.params={clean!r}: allowed finite values, |amplitude| <= 1")
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
        return cls(int(qubit), int(d["version"]), str(d["calibrated_at"]), dict(d["params"]),
                   dict(d.get("metrics") or {}), dict(d.get("provenance") or {}))


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

    # -- reading ------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": STORE_FORMAT, "revision": 0, "updated_at": None, "qubits": {}}
        data = yaml.safe_load(self.path.read_text()) or {}
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{self.path}: format={got!r}: allowed {STORE_FORMAT!r}")
        data.setdefault("qubits", {})
        return data

    @property
    def revision(self) -> int:
        """How many writes the store has seen (0: it does not exist yet)."""
        return int(self._load().get("revision", 0))

    def qubits(self) -> tuple[int, ...]:
        return tuple(sorted(int(q) for q in self._load()["qubits"]))

    def history(self, qubit: int) -> tuple[QubitCalibration, ...]:
        """Every version of ``qubit``, oldest first (empty if it was never calibrated)."""
        entry = self._load()["qubits"].get(int(qubit))
        if not entry:
            return ()
        return tuple(QubitCalibration.from_dict(qubit, v) for v in entry.get("versions", []))

    def latest(self, qubit: int) -> QubitCalibration | None:
        """The current version of ``qubit`` (the one the next sweep starts from), or None."""
        entry = self._load()["qubits"].get(int(qubit))
        if not entry:
            return None
        current = int(entry.get("current", len(entry.get("versions", []))))
        for v in entry.get("versions", []):
            if int(v["version"]) == current:
                return QubitCalibration.from_dict(qubit, v)
        raise ValueError(f"{self.path}: qubit {qubit} current={current}: allowed one of its versions")

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
            entry = data["qubits"].setdefault(int(qubit), {"current": 0, "versions": []})
            versions = entry["versions"]
            new = QubitCalibration(int(qubit), len(versions) + 1, utc_iso(self._clock()), dict(params),
                                   dict(metrics or {}), prov)
            if versions:
                cur = QubitCalibration.from_dict(qubit, versions[-1])
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


__all__ = ["STORE_FORMAT", "ParamsStore", "QubitCalibration", "file_lock", "utc_iso", "write_atomic"]
