"""The graph's parameter store: one version per accepted calibration, with its provenance.

A ``ParameterStore`` is a JSON file (``store.json`` in a run folder, or one shared across
runs) holding a list of versions. Each version is what one node's accepted calibration
wrote: the values (flat names ``"<target>.<name>"``), and where they came from (node,
experiment, experiment id, fit quality, verdict, shots, device time, the run's device
clock, the run id, wall time). ``current()`` folds the versions into the flat mapping
later nodes read, each name at its newest value; ``history(name)`` lists its versions.
Starting values (priors, an imported qibolab ``parameters.json``) are versions too, with
node ``"prior"`` or ``"import"``, so every value in the store has a provenance.

Every change is written to a temporary file, fsynced and renamed over the store, so the
file on disk is always a whole store (as ``hardware.ledger`` does).

qibolab interop (``to_qibolab`` / ``from_qibolab``) maps the names below onto a qibolab 0.2
platform's ``parameters.json`` (qubit ``"q3"`` is qibolab's ``"3"``; durations in ns):

=============================  ===============================================================
store name                     qibolab ``parameters.json``
=============================  ===============================================================
``qN.frequency_hz``            ``configs["N/drive"].frequency`` (absolute drive frequency, Hz)
``qN.readout_frequency_hz``    ``configs["N/probe"].frequency``
``qN.readout_threshold``       ``configs["N/acquisition"].threshold``
``qN.readout_angle``           ``configs["N/acquisition"].iq_angle`` (rad)
``qN.flux_offset_phi0``        ``configs["N/flux"].offset``
``qN.pi_amplitude``            ``native_gates.single_qubit.N.RX``: the drive pulse's amplitude
``qN.pi_half_amplitude``       ``... .RX90``: the drive pulse's amplitude
``qN.pi_duration_s``           ``... .RX``: the drive pulse's duration
``qN.drag_beta_s``             ``... .RX``: envelope ``drag`` with ``beta = β_s / dt_s``
``qA-qB.cz_amplitude_phi0``    ``native_gates.two_qubit["A-B"].CZ``: the flux pulse's amplitude
``qA-qB.cz_duration_s``        ``... .CZ``: the flux pulse's duration
``qA-qB.cz_phase_qA``          ``... .CZ``: the virtual Z on ``A/drive`` (rad)
=============================  ===============================================================

Anything else (T1, T2*, gate errors, assignment matrices, a DRAG β in other units) has no
place in ``parameters.json``: the export lists it as not mapped, never drops it silently.
A native gate the base platform does not define is not invented (its pulse shape would be
a guess): its names are listed as not mapped too.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STORE_FORMAT = "pulsecal.graph-store/1"


@dataclass(frozen=True)
class Version:
    """One accepted calibration (or starting values) in the store."""

    version: int
    node: str
    values: Mapping[str, float]
    experiment: str = ""
    experiment_id: str = ""
    target: str = ""
    verdict: str = "in_spec"
    quality: Mapping[str, float] = field(default_factory=dict)
    shots: int = 0
    device_time_s: float = 0.0
    clock_s: float = 0.0
    run_id: str = ""
    recorded_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "node": self.node, "experiment": self.experiment,
                "experiment_id": self.experiment_id, "target": self.target, "verdict": self.verdict,
                "values": dict(self.values), "quality": dict(self.quality), "shots": self.shots,
                "device_time_s": self.device_time_s, "clock_s": self.clock_s, "run_id": self.run_id,
                "recorded_at": self.recorded_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Version:
        return cls(version=int(d["version"]), node=str(d["node"]),
                   values={str(k): float(v) for k, v in d.get("values", {}).items()},
                   experiment=str(d.get("experiment", "")), experiment_id=str(d.get("experiment_id", "")),
                   target=str(d.get("target", "")), verdict=str(d.get("verdict", "in_spec")),
                   quality={str(k): float(v) for k, v in d.get("quality", {}).items()},
                   shots=int(d.get("shots", 0)), device_time_s=float(d.get("device_time_s", 0.0)),
                   clock_s=float(d.get("clock_s", 0.0)), run_id=str(d.get("run_id", "")),
                   recorded_at=str(d.get("recorded_at", "")))


class ParameterStore:
    """Versioned calibrated parameters with provenance, persisted as JSON (module docstring).

    Args:
        path: the JSON file (loaded if it exists); None keeps the store in memory.
        fsync: fsync every write.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, fsync: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self._fsync = fsync
        self._versions: list[Version] = []
        if self.path is not None and self.path.exists():
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
                raise ValueError(f"{self.path}: format {data.get('format') if isinstance(data, dict) else None!r}: "
                                 f"allowed a parameter store {STORE_FORMAT!r}")
            self._versions = [Version.from_dict(v) for v in data.get("versions", [])]

    @property
    def versions(self) -> tuple[Version, ...]:
        return tuple(self._versions)

    def record(self, node: str, values: Mapping[str, float], **provenance: Any) -> Version:
        """Append one version (``provenance``: the other ``Version`` fields) and save."""
        clean: dict[str, float] = {}
        for k, v in values.items():
            if not isinstance(k, str) or "." not in k:
                raise ValueError(f"ParameterStore.record({node}): name {k!r}: allowed '<target>.<name>'")
            x = float(v)
            if not math.isfinite(x):
                raise ValueError(f"ParameterStore.record({node}): {k}={v!r}: allowed a finite number")
            clean[k] = x
        new = Version(version=len(self._versions) + 1, node=node, values=clean,
                    recorded_at=datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **provenance)
        self._versions.append(new)
        self._save()
        return new

    def current(self) -> dict[str, float]:
        """Every name at its newest value: the flat mapping nodes read."""
        out: dict[str, float] = {}
        for v in self._versions:
            # "<name>_stderr" is the uncertainty of the "<name>" written with it: a newer
            # value written without one (a prior, an import) leaves none, not a stale one.
            for k in v.values:
                if f"{k}_stderr" not in v.values:
                    out.pop(f"{k}_stderr", None)
            out.update(v.values)
        return out

    def history(self, name: str) -> list[tuple[Version, float]]:
        """Every version that wrote ``name``, oldest first, with the value it wrote."""
        return [(v, v.values[name]) for v in self._versions if name in v.values]

    def latest(self, node: str) -> Version | None:
        """The newest version recorded by ``node``."""
        for v in reversed(self._versions):
            if v.node == node:
                return v
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"format": STORE_FORMAT, "versions": [v.to_dict() for v in self._versions]}

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".store.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=1, sort_keys=True)
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# -- qibolab parameters.json -------------------------------------------------------------------

_QUBIT = re.compile(r"^q(\d+)$")
_PAIR = re.compile(r"^q(\d+)-q(\d+)$")
_CONFIG_FIELDS = {
    "frequency_hz": ("drive", "frequency"),
    "readout_frequency_hz": ("probe", "frequency"),
    "readout_threshold": ("acquisition", "threshold"),
    "readout_angle": ("acquisition", "iq_angle"),
    "flux_offset_phi0": ("flux", "offset"),
}
_NS = 1e9


def _pulse_on(native: Any, channel: str, kind: str = "pulse") -> dict[str, Any] | None:
    """The first ``kind`` entry of a native's ``[[channel, pulse], ...]`` list on ``channel``."""
    if not isinstance(native, list):
        return None
    for entry in native:
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == channel and isinstance(entry[1], dict) \
                and entry[1].get("kind") == kind:
            return entry[1]
    return None


def _flux_pulse(native: Any, a: str, b: str) -> dict[str, Any] | None:
    for ch in (f"{a}/flux", f"{b}/flux"):
        p = _pulse_on(native, ch)
        if p is not None:
            return p
    return None


def to_qibolab(params: Mapping[str, float], base: Mapping[str, Any], *,
               dt_s: float = 1e-9) -> tuple[dict[str, Any], list[str]]:
    """``base`` (a qibolab ``parameters.json`` as a mapping) with ``params`` written in; and
    the names that did not map (sorted). ``base`` is not changed. ``dt_s``: the platform's
    sample time, for DRAG's β in samples."""
    out = copy.deepcopy(dict(base))
    configs = out.setdefault("configs", {})
    natives = out.setdefault("native_gates", {})
    singles = natives.get("single_qubit") or {}
    pairs = natives.get("two_qubit") or {}
    unmapped: list[str] = []
    for name, value in params.items():
        prefix, _, field_ = name.partition(".")
        mq, mp = _QUBIT.match(prefix), _PAIR.match(prefix)
        done = False
        if mq:
            q = mq.group(1)
            if field_ in _CONFIG_FIELDS:
                channel, key = _CONFIG_FIELDS[field_]
                cfg = configs.get(f"{q}/{channel}")
                if cfg is None and channel in ("drive", "probe"):
                    cfg = configs.setdefault(f"{q}/{channel}", {"kind": "iq"})
                if isinstance(cfg, dict):
                    cfg[key] = float(value)
                    done = True
            elif field_ in ("pi_amplitude", "pi_duration_s", "drag_beta_s", "pi_half_amplitude"):
                gate = "RX90" if field_ == "pi_half_amplitude" else "RX"
                pulse = _pulse_on((singles.get(q) or {}).get(gate), f"{q}/drive")
                if pulse is not None:
                    if field_ in ("pi_amplitude", "pi_half_amplitude"):
                        pulse["amplitude"] = float(value)
                    elif field_ == "pi_duration_s":
                        pulse["duration"] = float(value) * _NS
                    else:
                        env = pulse.get("envelope") or {}
                        rel_sigma = float(env.get("rel_sigma", 0.25))
                        pulse["envelope"] = {"kind": "drag", "rel_sigma": rel_sigma, "beta": float(value) / dt_s}
                    done = True
        elif mp:
            a, b = mp.group(1), mp.group(2)
            native = (pairs.get(f"{a}-{b}") or pairs.get(f"{b}-{a}") or {}).get("CZ")
            if field_ in ("cz_amplitude_phi0", "cz_duration_s"):
                pulse = _flux_pulse(native, a, b)
                if pulse is not None:
                    if field_ == "cz_amplitude_phi0":
                        pulse["amplitude"] = float(value)
                    else:
                        pulse["duration"] = float(value) * _NS
                    done = True
            else:
                m = re.fullmatch(r"cz_phase_q(\d+)", field_)
                if m and m.group(1) in (a, b):
                    vz = _pulse_on(native, f"{m.group(1)}/drive", kind="virtualz")
                    if vz is not None:
                        vz["phase"] = float(value)
                        done = True
        if not done:
            unmapped.append(name)
    return out, sorted(unmapped)


def from_qibolab(parameters: Mapping[str, Any], *, dt_s: float = 1e-9) -> dict[str, float]:
    """The store names a qibolab ``parameters.json`` (as a mapping) holds values for."""
    out: dict[str, float] = {}
    configs = parameters.get("configs") or {}
    for key, cfg in configs.items():
        q, _, channel = str(key).partition("/")
        if not q.isdigit() or not isinstance(cfg, dict):
            continue
        for field_, (ch, k) in _CONFIG_FIELDS.items():
            if ch == channel and isinstance(cfg.get(k), int | float) and not isinstance(cfg.get(k), bool):
                out[f"q{q}.{field_}"] = float(cfg[k])
    natives = parameters.get("native_gates") or {}
    for q, gates in (natives.get("single_qubit") or {}).items():
        if not isinstance(gates, dict):
            continue
        rx = _pulse_on(gates.get("RX"), f"{q}/drive")
        if rx is not None:
            out[f"q{q}.pi_amplitude"] = float(rx["amplitude"])
            out[f"q{q}.pi_duration_s"] = float(rx["duration"]) / _NS
            env = rx.get("envelope") or {}
            if env.get("kind") == "drag":
                out[f"q{q}.drag_beta_s"] = float(env["beta"]) * dt_s
        rx90 = _pulse_on(gates.get("RX90"), f"{q}/drive")
        if rx90 is not None:
            out[f"q{q}.pi_half_amplitude"] = float(rx90["amplitude"])
    for pair, gates in (natives.get("two_qubit") or {}).items():
        a, _, b = str(pair).partition("-")
        if not (a.isdigit() and b.isdigit()) or not isinstance(gates, dict):
            continue
        native = gates.get("CZ")
        pulse = _flux_pulse(native, a, b)
        if pulse is not None:
            out[f"q{a}-q{b}.cz_amplitude_phi0"] = float(pulse["amplitude"])
            out[f"q{a}-q{b}.cz_duration_s"] = float(pulse["duration"]) / _NS
        for x in (a, b):
            vz = _pulse_on(native, f"{x}/drive", kind="virtualz")
            if vz is not None:
                out[f"q{a}-q{b}.cz_phase_q{x}"] = float(vz["phase"])
    return out


def read_qibolab(path: str | os.PathLike[str], *, dt_s: float = 1e-9) -> dict[str, float]:
    """``from_qibolab`` of a ``parameters.json`` file (or a platform folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "parameters.json"
    return from_qibolab(json.loads(p.read_text()), dt_s=dt_s)


def write_qibolab(path: str | os.PathLike[str], params: Mapping[str, float], base: Mapping[str, Any], *,
                  dt_s: float = 1e-9) -> list[str]:
    """Write ``to_qibolab(params, base)`` to ``path``; returns the names not mapped."""
    data, unmapped = to_qibolab(params, base, dt_s=dt_s)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
    return unmapped


__all__ = ["STORE_FORMAT", "ParameterStore", "Version", "from_qibolab", "read_qibolab", "to_qibolab",
           "write_qibolab"]
