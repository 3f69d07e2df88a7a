"""What a replay session does: its settings (``session.json``), its env and its envelope."""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pulsecal.envs.contract import probe_to_json
from pulsecal.envs.rb2q import RB2QSettings
from pulsecal.envs.two_qubit_session import REPLAY_ENV_IDS, replay_env_class
from pulsecal.envs.verification import StatedCoherence, VerificationSettings

from ..backend import Backend
from ..safety import SafetyLimits

SESSION_FORMAT = "pulsecal.replay/1"
WRITE_AHEAD = 1  # ``session_started.write_ahead``: the journal has ``submitting`` records


class ReplayDivergence(RuntimeError):
    """The resumed session does not retrace the journal (other settings, policy or code)."""


# The env family a session runs (the version is the policy's: ``ReplaySettings.env_id``).
ENV_FAMILY = "pulsecal/GateCalibration"
DEFAULT_ENV_ID = ENV_FAMILY + "-v0"


def is_two_qubit(env_id: str) -> bool:
    """Whether ``env_id`` is a two-qubit env a session replays in its session form
    (``pulsecal.envs.two_qubit_session``)."""
    return replay_env_class(env_id) is not None


def session_env_class(env_id: str) -> Any:
    """The env class registered under ``env_id`` (built directly: the session loop, not a
    ``TimeLimit``, bounds the steps); for a two-qubit env its session form, which takes
    the session's device at reset (``pulsecal.envs.two_qubit_session``)."""
    import gymnasium as gym

    import pulsecal.envs  # noqa: F401  (registers the ids)

    two_qubit = replay_env_class(env_id)
    if two_qubit is not None:
        return two_qubit

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"env_id={env_id!r} is not registered: {exc}") from None
    cls = _entry_class(spec.entry_point)
    if not callable(getattr(cls, "calibration_state", None)):
        # A session replays a calibration: it binds policies to the env's calibration state
        # and reports the calibrated gate, which only the calibration envs have.
        allowed = sorted({*REPLAY_ENV_IDS,
                          *(i for i, sp in gym.registry.items()
                            if i.startswith("pulsecal/")
                            and callable(getattr(_entry_class(sp.entry_point), "calibration_state", None)))})
        raise ValueError(f"env_id={env_id!r} is not a calibration env a session can replay: allowed {allowed}")
    return cls


def _entry_class(entry: Any) -> Any:
    if not isinstance(entry, str):
        return entry
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ReplaySettings:
    """What a session does; stored in ``session.json`` and checked again on resume.

    Attributes:
        session_id: names the session in job keys (the same id resumes it).
        seed: the env's seed (and, for a simulated backend, its device's).
        initial_params: the DRAG parameters the session starts from (amplitude, beta_s,
            detuning_hz, phase), e.g. the lab's current calibration; for a two-qubit env
            its four gate parameters (CZ: amplitude_phi0, length_s, phase_q0_rad,
            phase_q1_rad).
        max_steps: policy steps after the initial measurement, >= 1.
        budget_shots: the ledger's shot budget (None: the env's own budget only).
        env: keyword arguments of the env (device preset, probes, shots per probe, shot
            budget, calibrated parameters, max step, gate duration, ...).
            ``report_truth`` is forced off: the env talks to a backend, not a simulator.
        env_id: which registered GateCalibration version the session runs (the one the
            policy was trained on; an exported policy's manifest names it).
        qubit: the backend qubit the session calibrates (an index of the backend's
            ``Capabilities.qubits``): its drive frame carries the pulses, its readout the
            counts, and the default safety envelope allows that frame only.
        verification: ``VerificationSettings`` fields as a mapping ({} = the defaults, the
            trusted checks: up to 3 stages of 1,664 shots and a 512-shot RB cross-check):
            after its last step the session verifies the final gate on the backend
            (docs/verification.md) and its report carries the verdict. None: no verdict.
            A two-qubit session takes ``rb2q.RB2QSettings`` fields (interleaved 2Q RB; its
            T1/T2 are ``RB2QSettings.stated`` or the preset's spec sheet, not
            ``stated_coherence``).
        stated_coherence: (t1_s, t2_s), the qubit's T1 and T2 as the lab states them: the
            verdict's coherence limit. Required with ``verification``.
    """

    session_id: str
    seed: int
    initial_params: tuple[float, float, float, float]
    max_steps: int = 10
    budget_shots: int | None = None
    env: Mapping[str, Any] = field(default_factory=dict)
    env_id: str = DEFAULT_ENV_ID
    qubit: int = 0
    verification: Mapping[str, Any] | None = None
    stated_coherence: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if (not isinstance(self.session_id, str) or self.session_id in ("", ".", "..")
                or "/" in self.session_id or "\\" in self.session_id):
            raise ValueError(f"ReplaySettings.session_id={self.session_id!r}: allowed a non-empty "
                             "string without '/' or '\\', not '.' or '..'")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"ReplaySettings.seed={self.seed!r}: allowed an integer >= 0")
        ip = tuple(float(x) for x in self.initial_params)
        # The amplitude is at the env's configured gate and may exceed full scale there (a
        # weakly driven qubit's textbook start): the env then calibrates at a longer gate.
        if len(ip) != 4 or not all(math.isfinite(x) for x in ip):
            raise ValueError(f"ReplaySettings.initial_params={self.initial_params!r}: allowed 4 finite "
                             "values (amplitude at the configured gate, beta_s, detuning_hz, phase)")
        object.__setattr__(self, "initial_params", ip)
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"ReplaySettings.max_steps={self.max_steps!r}: allowed an integer >= 1")
        if self.budget_shots is not None and (isinstance(self.budget_shots, bool)
                                              or not isinstance(self.budget_shots, int)
                                              or self.budget_shots < 1):
            raise ValueError(f"ReplaySettings.budget_shots={self.budget_shots!r}: allowed an integer >= 1 or None")
        if not isinstance(self.env_id, str) or not (self.env_id.startswith(ENV_FAMILY + "-v")
                                                    or self.env_id in REPLAY_ENV_IDS):
            raise ValueError(f"ReplaySettings.env_id={self.env_id!r}: allowed a registered "
                             f"'{ENV_FAMILY}-v<N>' id or a two-qubit one of {list(REPLAY_ENV_IDS)}")
        if isinstance(self.qubit, bool) or not isinstance(self.qubit, int) or self.qubit < 0:
            raise ValueError(f"ReplaySettings.qubit={self.qubit!r}: allowed an integer >= 0")
        env = dict(self.env)
        if env.get("report_truth"):
            raise ValueError("ReplaySettings.env['report_truth']=True: allowed False (no truth on a backend)")
        object.__setattr__(self, "env", env)
        if self.verification is not None:
            if not isinstance(self.verification, Mapping):
                raise ValueError(f"ReplaySettings.verification={self.verification!r}: allowed None or a "
                                 "mapping of VerificationSettings fields")
            object.__setattr__(self, "verification", dict(self.verification))
            if self.env_id in REPLAY_ENV_IDS:
                # A two-qubit session's verdict is interleaved two-qubit RB (its own stated T1/T2).
                RB2QSettings.from_mapping(self.verification)  # raises naming the field
            else:
                self.verification_settings()  # raises naming the field
            if self.stated_coherence is None and self.env_id not in REPLAY_ENV_IDS:
                raise ValueError("ReplaySettings.stated_coherence=None: allowed (t1_s, t2_s) in s, the "
                                 "qubit's T1/T2 the verdict's coherence limit comes from (required with "
                                 "verification)")
        if self.stated_coherence is not None:
            sc = tuple(float(x) for x in self.stated_coherence)
            if len(sc) != 2:
                raise ValueError(f"ReplaySettings.stated_coherence={self.stated_coherence!r}: allowed "
                                 "(t1_s, t2_s)")
            StatedCoherence(*sc)  # raises naming t1_s / t2_s and the allowed range
            object.__setattr__(self, "stated_coherence", sc)

    def verification_settings(self) -> VerificationSettings | None:
        """The session's ``VerificationSettings`` (None: the session runs no verification)."""
        return None if self.verification is None else VerificationSettings.from_mapping(self.verification)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["env"] = _env_to_json(self.env)
        d["initial_params"] = list(self.initial_params)
        if self.qubit == 0:
            # Qubit 0 is left out, so session.json of a one-qubit session names no qubit
            # and such folders resume under settings that do not mention one.
            del d["qubit"]
        # Left out unset, so session.json of a session without a verdict is as before.
        for key in ("verification", "stated_coherence"):
            if d[key] is None:
                del d[key]
            else:
                d[key] = _env_to_json(d[key]) if key == "verification" else list(d[key])
        return d

    def env_kwargs(self) -> dict[str, Any]:
        return {**self.env, "report_truth": False}


def _env_to_json(env: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in env.items():
        if k == "probes":
            out[k] = [probe_to_json(p) for p in v]
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = v
    return out


def default_limits(backend: Backend, qubit: int | None = None, **changes: Any) -> SafetyLimits:
    """A conservative envelope for a calibration session on ``backend``: only ``qubit``'s
    drive frame is allowed (None: every frame of the backend); callers and configs
    override any field."""
    caps = backend.capabilities()
    frames = caps.frames if qubit is None else (caps.drive_frame(qubit),)
    args: dict[str, Any] = {"allowed_frames": frames, "max_amplitude": 1.0,
                            "max_pulse_duration_s": 1e-6, "max_program_duration_s": 20e-6,
                            "max_drive_energy_s": 2e-6, "max_shots_per_job": 10_000,
                            "max_shots_per_day": 10_000_000}
    args.update(changes)
    return SafetyLimits(**args)


class SettingsMismatch(ReplayDivergence):
    """The session folder holds a session started with other settings; ``differences``
    maps each differing key (as the replay config names it) to (recorded, requested)."""

    def __init__(self, folder: Path, differences: Mapping[str, tuple[Any, Any]]) -> None:
        self.folder = folder
        self.differences = dict(differences)
        changed = ", ".join(f"{k} {_show(old)} → {_show(new)}" for k, (old, new) in self.differences.items())
        keep = " ".join(f"{k}={_show(old)}" for k, (old, _new) in self.differences.items())
        super().__init__(f"{folder} holds another session, started with other settings: {changed}\n"
                         f"  continue it: rerun with the recorded values ({keep})\n"
                         "  or start fresh: another session_id (or folder)")


_UNSET = object()  # a key one of the two settings does not have


def _show(v: Any) -> str:
    return "unset" if v is _UNSET else json.dumps(v, separators=(",", ":"))


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "env" and not prefix and isinstance(v, Mapping):
            out.update(_flat(v, "env."))
        else:
            out[prefix + str(k)] = v
    return out


def settings_differences(recorded: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys whose values differ between two ``ReplaySettings.to_json()`` dicts, as the
    replay config names them (``max_steps``, ``env.shot_budget``, ...)."""
    a, b = _flat(recorded), _flat(requested)
    return {k: (a.get(k, _UNSET), b.get(k, _UNSET)) for k in sorted(set(a) | set(b))
            if a.get(k, _UNSET) != b.get(k, _UNSET)}


def check_settings(folder: Path, settings: ReplaySettings) -> bool:
    """Whether ``folder`` already holds this session (True) or none (False); raise
    ``SettingsMismatch`` naming the differing keys if it holds one with other settings.
    Writes nothing, so a refused command leaves the folder as it was."""
    path = folder / "session.json"
    if not path.exists():
        return False
    want = json.loads(json.dumps({"format": SESSION_FORMAT, "settings": settings.to_json()}))
    have = json.loads(path.read_text())
    if have == want:
        return True
    if have.get("format") != SESSION_FORMAT:
        raise ReplayDivergence(f"{path}: format={have.get('format')!r}: allowed {SESSION_FORMAT!r}")
    raise SettingsMismatch(folder, settings_differences(dict(have.get("settings") or {}), want["settings"]))


def write_settings(folder: Path, settings: ReplaySettings) -> None:
    """Pin ``folder`` to ``settings``: write ``session.json`` atomically."""
    path = folder / "session.json"
    want = {"format": SESSION_FORMAT, "settings": settings.to_json()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(want, indent=2, sort_keys=True) + "\n")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)
