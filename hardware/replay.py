"""Replay: a closed-loop calibration session of a policy on any backend, resumable after a kill.

The session is the ``GateCalibration`` environment with a ``BackendDevice`` behind it: the
policy acts on the env's observation, the env turns the action into DRAG parameters and
probe sequences, and every sequence becomes one job through the safety envelope, the shot
ledger and the exactly-once retries of ``BackendDevice``. Everything lands in one session
folder::

    session.json     the settings the session started with (a resume must match them)
    journal.jsonl    append-only audit log: BackendDevice's job events (program hash, job
                     key, job id, counts, retries, ...) plus this module's session events
    ledger.json      shots per job key against the budget
    report.json, report.md, *.png    the calibration report (``pulsecal.hardware.report``)

The session calibrates one qubit of the backend (``ReplaySettings.qubit``): the programs
play on its drive frame (``Capabilities.drive_frame``) and acquire it, and the default
envelope allows that frame only. Sessions of one device may share its day ledger
(``device_ledger``, a ``ledger.DeviceDayLedger`` file): each job is charged there before
it is submitted, so the envelope's per-day shot limit bounds all of them together; on
resume the session's entries in it are synced to the session ledger.

Journal events written here (besides BackendDevice's): ``session_started``,
``session_resumed``, ``action`` (env step, the action and the parameters it was applied
to: the audit of every applied action), ``run`` / ``run_done`` (one device call: its
program hashes and, once all its jobs are back, their counts), ``observation`` (what the
env computed from the counts), ``advance``, ``orphaned``, ``released``, ``reconciled``,
``session_finished``. ``BackendDevice``'s records and the session and accounting records
(``session_*``, ``inflight_at_resume``, ``orphaned``, ``released``, ``reconciled``) carry
``process``: a number naming the process that wrote them (the session's first process is 0,
each resume takes the next number no record uses).

Resume. A killed session is restarted with the same folder and settings. The env and the
policy are deterministic given the seed and the counts, so the session runs again from
step 0 and the device answers every call it already finished from the journal (the
``run_done`` counts) instead of running jobs; the policy re-derives the same actions, which
are checked against the journaled ones (a different policy, env or code raises
``ReplayDivergence`` instead of silently mixing two sessions). The first device call
without ``run_done`` — the one in flight at the kill — goes to the live ``BackendDevice``
with the same step number, so its job keys are the same: jobs the backend still knows are
recovered by ``find`` (a vendor queue, a lab server), never submitted twice. Jobs whose
execution died with the killed process (the simulated backend and qibolab run jobs in
process) are run again under the same key.

Shot accounting across kills. Invariant: the ledger never under-counts shots that
physically ran, and after any kill and resume ``ledger.used_shots`` = the shots of the
uninterrupted session + the ``shots`` of this session's ``orphaned`` records, with exactly
one ``orphaned`` record per extra ledger entry. It holds at every crash point because every
write that may leave the ledger and the journal apart is ordered write-ahead and
reconciled on resume:

* ``BackendDevice`` reserves a job's shots, then journals ``submitting`` (fields: step,
  index, job_key, shots, attempt, process), then calls ``Backend.submit``. A job may have
  run in a process only if that process journaled ``submitting`` for its key.
* Before a resumed process submits a key again (``find`` did not recover it), it charges
  the executions that may have died with earlier processes: the key's own ledger entry
  covers one, and ``<key>:orphan:<n>`` covers each further one, n = 1, 2, ... up to the
  number of distinct earlier processes with a ``submitting`` record for the key (a process
  whose ``failed`` record proved the job never ran does not count). Each charge is
  journaled first — ``orphaned`` (step, index, job_key, shots, ledger_key, day, charged,
  process) — and then written to the ledger with ``ShotLedger.charge`` (one write, no limit:
  the shots ran). A kill between the two leaves a record without its ledger entry.
* On resume, before anything else, ``reconciled``: every ``orphaned`` record whose
  ``ledger_key`` the ledger does not count is charged (``reconciled``, action
  ``charged``); every ``<key>:orphan:<n>`` ledger entry without an ``orphaned`` record
  (written by older versions, which charged before journaling) gets one (``orphaned`` with
  ``reconciled: true``); every reservation with no ``submitting`` record provably never
  reached the backend and is released (``released``, journaled before the ledger write; the
  re-run reserves it again). The session folder's ledger holds this session's jobs only.

Sessions started before ``submitting`` existed (no ``write_ahead`` in ``session_started``)
are resumed with the old conservative rule: one earlier execution per key the ledger
already counted, and no reservation is released.

The simulated backend's device state. A ``SimulatedDevice`` keeps its shot-noise and drift
generators and its clock in the process, so after a kill the backend is rebuilt from the
same seed at clock 0. Its state is a deterministic function of the ordered list of
executions (one ``device.run`` per job, in step and index order; fault injection has its
own generator and never touches counts) and ``advance`` calls. So while the journal answers
finished calls, each of their jobs is re-simulated on the rebuilt device exactly as
``SimulatedBackend.submit`` ran it (``compile`` → payload → ``device.run``, no submit, no
job, no shots counted) and the counts are checked against the journal bit for bit; then
the in-flight call re-runs its jobs in the same order and gets the same counts the killed
process got. A resumed session therefore ends with the same parameters as an
uninterrupted one with the same seed. Real hardware needs none of this: its state is
physical, and the time that passed is simply time that passed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.calibration import PARAMETER_NAMES, DragParams, Probe, analyse, default_probes
from pulsecal.envs.protocol import PulseSequence

from .backend import Backend, BackendError
from .device import BackendDevice, RetryPolicy
from .ir import Program, from_sequence
from .journal import Journal, read_journal
from .ledger import RELEASED, RESERVED, DeviceDayLedger, ShotLedger, utc_day
from .safety import SafetyLimits

SESSION_FORMAT = "pulsecal.replay/1"
WRITE_AHEAD = 1  # ``session_started.write_ahead``: the journal has ``submitting`` records


class ReplayDivergence(RuntimeError):
    """The resumed session does not retrace the journal (other settings, policy or code)."""


# -- policies -------------------------------------------------------------------------------------


@runtime_checkable
class Policy(Protocol):
    """What drives a session: an action in the env's action box for an observation.

    Optional hooks, called by the session when present: ``reset()`` at the start of the
    episode (recurrent state), ``bind(env)`` once before it (policies that need the env's
    static description, such as the probe set of a scripted controller), ``describe()``
    for the journal.
    """

    def act(self, observation: NDArray[Any]) -> NDArray[Any]: ...


class ScriptedPolicy:
    """The textbook calibration as a fixed-gain controller on the env's observation.

    Reads the probe populations of the observation with ``calibration.analyse`` into the
    per-gate error angle of each family and steps each calibrated parameter against it:
    amplitude × (1 − ε_amp/π) (SX·X^n), detuning − angle/(2π·T_gate) (Ramsey), and β by a
    secant on the DRAG-family angle (its slope is device-dependent, so it is measured from
    the controller's own successive steps; the first step explores by ``explore`` × max
    step). ``gain`` < 1 damps shot noise. A baseline before trained agents land, and the
    reference the agents are compared against on hardware.

    Args:
        gain: fraction of the estimated correction applied per step, in (0, 1].
        explore: first β step, in units of the env's β max step, in (0, 1].
    """

    def __init__(self, *, gain: float = 0.8, explore: float = 0.3) -> None:
        if not (isinstance(gain, int | float) and 0 < gain <= 1):
            raise ValueError(f"ScriptedPolicy.gain={gain!r}: allowed (0, 1]")
        if not (isinstance(explore, int | float) and 0 < explore <= 1):
            raise ValueError(f"ScriptedPolicy.explore={explore!r}: allowed (0, 1]")
        self.gain = float(gain)
        self.explore = float(explore)
        self._core: Any = None
        self._prev: tuple[float, float] | None = None
        self._slope: float | None = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted", "gain": self.gain, "explore": self.explore}

    def bind(self, env: Any) -> None:
        core = getattr(getattr(env, "unwrapped", env), "core", None)
        if core is None or not hasattr(core, "cfg") or not hasattr(core, "params"):
            raise TypeError(f"ScriptedPolicy.bind: env {type(env).__name__} is not a GateCalibration env")
        self._core = core

    def reset(self) -> None:
        self._prev = None
        self._slope = None

    def act(self, observation: NDArray[Any]) -> NDArray[np.float32]:
        if self._core is None:
            raise RuntimeError("ScriptedPolicy.act before bind(env): the probe set is unknown")
        core = self._core
        probes: tuple[Probe, ...] = core.cfg.probes
        obs = np.asarray(observation, dtype=np.float64)
        p1 = obs[: len(probes)]
        ang = analyse(p1[None], probes, core.gate.duration_s).family_angle[0]
        p = np.asarray(core.params[0], dtype=np.float64)
        scale = np.asarray(core.step_scale(0), dtype=np.float64)
        delta = np.zeros(4)
        delta[0] = -p[0] * ang[0] / math.pi
        delta[2] = -ang[2] / (2.0 * math.pi * core.gate.duration_s)
        beta, a_drag = float(p[1]), float(ang[1])
        if self._prev is not None:
            db, da = beta - self._prev[0], a_drag - self._prev[1]
            if abs(db) > 1e-3 * scale[1] and da != 0 and math.isfinite(da / db):
                self._slope = da / db
        if self._slope is None:
            delta[1] = -self.explore * scale[1] * (math.copysign(1.0, a_drag) if a_drag else 1.0)
        else:
            delta[1] = -a_drag / self._slope
        self._prev = (beta, a_drag)
        idx = np.asarray(core.param_index)
        act = self.gain * delta[idx] / scale[idx]
        return np.clip(act, -1.0, 1.0).astype(np.float32)


class SB3Policy:
    """A policy from a training run directory (``pulsecal.agents.training`` layout):
    ``config.yaml`` (its ``agent.name`` picks the SB3 class), ``model.zip`` and the
    pickle-free normalisation statistics ``vecnormalize.npz`` + ``.json``.

    Observations are normalised exactly as ``VecNormalize`` does at evaluation
    (clip((obs − mean)/sqrt(var + ε), ±clip_obs)); actions are deterministic. SB3's zip is
    the one pickle-bearing format accepted, and only for runs this project wrote.

    Args:
        run_dir: the run directory.
        model: the model file inside it (a checkpoint's zip works too).
        normalization: the statistics file (None: the model saw raw observations).
        algo: SB3 algorithm name; default from ``config.yaml``.
    """

    def __init__(self, run_dir: str | Path, *, model: str = "model.zip",
                 normalization: str | None = "vecnormalize.npz", algo: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ValueError(f"SB3Policy.run_dir={str(run_dir)!r}: allowed a training run directory")
        if algo is None:
            algo = _algo_from_config(self.run_dir / "config.yaml")
        from pulsecal.agents.factory import ALGORITHMS, load_algorithm  # lazy: torch

        if algo not in ALGORITHMS:
            raise ValueError(f"SB3Policy.algo={algo!r}: allowed {sorted(ALGORITHMS)}")
        self.algo = algo
        self.model_path = self.run_dir / model
        self.model = load_algorithm(algo, self.model_path, None, device="cpu")
        self._norm: dict[str, Any] | None = None
        if normalization is not None and (self.run_dir / normalization).exists():
            self._norm = _load_obs_normalization(self.run_dir / normalization)
        self._state: Any = None
        self._start = True

    def describe(self) -> dict[str, Any]:
        return {"kind": "sb3", "run_dir": str(self.run_dir), "algo": self.algo,
                "model_sha256": _sha256(self.model_path), "normalized": self._norm is not None}

    def reset(self) -> None:
        self._state, self._start = None, True

    def normalize(self, observation: NDArray[Any]) -> NDArray[np.float32]:
        obs = np.asarray(observation, dtype=np.float64)
        n = self._norm
        if n is None:
            return obs.astype(np.float32)
        z = (obs - n["mean"]) / np.sqrt(n["var"] + n["epsilon"])
        return np.clip(z, -n["clip_obs"], n["clip_obs"]).astype(np.float32)

    def act(self, observation: NDArray[Any]) -> NDArray[np.float32]:
        action, self._state = self.model.predict(self.normalize(observation), state=self._state,
                                                 episode_start=np.array([self._start]),
                                                 deterministic=True)
        self._start = False
        return np.asarray(action, dtype=np.float32).reshape(-1)


class OnnxPolicy:
    """An exported policy folder (ONNX + manifest) through the torch-free lab runner
    ``pulsecal.agents.runner``; recurrent policies carry their state between steps."""

    def __init__(self, folder: str | Path, *, out_of_bounds: str = "warn") -> None:
        from pulsecal.agents.runner import load_policy  # lazy: onnxruntime

        self.folder = Path(folder)
        self.policy = load_policy(self.folder, out_of_bounds=out_of_bounds)  # type: ignore[arg-type]
        self._state: Any = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "onnx", "folder": str(self.folder), "env_id": self.policy.env_id,
                "manifest_sha256": _sha256(self.folder / "manifest.json")}

    def reset(self) -> None:
        self._state = self.policy.initial_state() if self.policy.recurrent else None

    def act(self, observation: NDArray[Any]) -> NDArray[np.float32]:
        obs = np.asarray(observation, dtype=np.float32)
        if self.policy.recurrent:
            if self._state is None:
                self._state = self.policy.initial_state()
            action, self._state = self.policy.act_with_state(obs, self._state)
            return action
        return self.policy.act(obs)


def _algo_from_config(path: Path) -> str:
    import yaml

    if not path.exists():
        raise ValueError(f"{path}: missing; pass algo= or point run_dir at a pulsecal training run")
    cfg = yaml.safe_load(path.read_text())
    name = (cfg or {}).get("agent", {}).get("name") if isinstance(cfg, dict) else None
    if not isinstance(name, str):
        raise ValueError(f"{path}: agent.name={name!r}: allowed an SB3 algorithm name")
    return name


def _load_obs_normalization(path: Path) -> dict[str, Any] | None:
    settings = json.loads(path.with_suffix(".json").read_text())
    if settings.get("format") != "pulsecal-vecnormalize-1":
        raise ValueError(f"{path.with_suffix('.json')}: format={settings.get('format')!r}: "
                         "allowed 'pulsecal-vecnormalize-1'")
    if not settings.get("norm_obs", False):
        return None
    with np.load(path, allow_pickle=False) as data:
        return {"mean": np.asarray(data["obs_mean"], dtype=np.float64),
                "var": np.asarray(data["obs_var"], dtype=np.float64),
                "epsilon": float(settings["epsilon"]), "clip_obs": float(settings["clip_obs"])}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


# -- settings ------------------------------------------------------------------------------------

_ENV_FAMILY = "pulsecal/GateCalibration"
DEFAULT_ENV_ID = _ENV_FAMILY + "-v0"


def session_env_class(env_id: str) -> Any:
    """The env class registered under ``env_id`` (built directly: the session loop, not a
    ``TimeLimit``, bounds the steps)."""
    import gymnasium as gym

    import pulsecal.envs  # noqa: F401  (registers the ids)

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"env_id={env_id!r} is not registered: {exc}") from None
    entry = spec.entry_point
    if not isinstance(entry, str):
        return entry
    module, _, name = entry.partition(":")
    import importlib

    return getattr(importlib.import_module(module), name)


def last_measurement(core: Any) -> tuple[list[str], list[float]]:
    """Names and values of what the env's last step measured, for the journal and report:
    v0 keeps one excited fraction per probe; later versions keep one signal per probe family."""
    if hasattr(core, "signal") and hasattr(core, "v1_config"):
        return ["amplitude", "drag", "ramsey"], [float(x) for x in np.asarray(core.signal[0])]
    k = len(core.cfg.probes)
    return [p.name for p in core.cfg.probes], [float(x) for x in np.asarray(core.last_p1[0])[:k]]


@dataclass(frozen=True)
class ReplaySettings:
    """What a session does; stored in ``session.json`` and checked again on resume.

    Attributes:
        session_id: names the session in job keys (the same id resumes it).
        seed: the env's seed (and, for a simulated backend, its device's).
        initial_params: the DRAG parameters the session starts from (amplitude, beta_s,
            detuning_hz, phase), e.g. the lab's current calibration.
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
    """

    session_id: str
    seed: int
    initial_params: tuple[float, float, float, float]
    max_steps: int = 10
    budget_shots: int | None = None
    env: Mapping[str, Any] = field(default_factory=dict)
    env_id: str = DEFAULT_ENV_ID
    qubit: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, str) or not self.session_id or "/" in self.session_id:
            raise ValueError(f"ReplaySettings.session_id={self.session_id!r}: allowed a non-empty "
                             "string without '/'")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"ReplaySettings.seed={self.seed!r}: allowed an integer >= 0")
        ip = tuple(float(x) for x in self.initial_params)
        if len(ip) != 4 or not all(math.isfinite(x) for x in ip) or abs(ip[0]) > 1:
            raise ValueError(f"ReplaySettings.initial_params={self.initial_params!r}: allowed 4 finite "
                             "values (amplitude in [-1, 1], beta_s, detuning_hz, phase)")
        object.__setattr__(self, "initial_params", ip)
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"ReplaySettings.max_steps={self.max_steps!r}: allowed an integer >= 1")
        if self.budget_shots is not None and (isinstance(self.budget_shots, bool)
                                              or not isinstance(self.budget_shots, int)
                                              or self.budget_shots < 1):
            raise ValueError(f"ReplaySettings.budget_shots={self.budget_shots!r}: allowed an integer >= 1 or None")
        if not isinstance(self.env_id, str) or not self.env_id.startswith(_ENV_FAMILY + "-v"):
            raise ValueError(f"ReplaySettings.env_id={self.env_id!r}: allowed a registered "
                             f"'{_ENV_FAMILY}-v<N>' id")
        if isinstance(self.qubit, bool) or not isinstance(self.qubit, int) or self.qubit < 0:
            raise ValueError(f"ReplaySettings.qubit={self.qubit!r}: allowed an integer >= 0")
        env = dict(self.env)
        if env.get("report_truth"):
            raise ValueError("ReplaySettings.env['report_truth']=True: allowed False (no truth on a backend)")
        object.__setattr__(self, "env", env)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["env"] = _env_to_json(self.env)
        d["initial_params"] = list(self.initial_params)
        if self.qubit == 0:
            # Session folders written before per-qubit sessions resume unchanged.
            del d["qubit"]
        return d

    def env_kwargs(self) -> dict[str, Any]:
        return {**self.env, "report_truth": False}


def _env_to_json(env: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in env.items():
        if k == "probes":
            out[k] = [{"kind": p.kind, "depth": p.depth, "delay_s": p.delay_s} for p in v]
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = v
    return out


def probes_from_json(items: Sequence[Mapping[str, Any]] | None) -> tuple[Probe, ...]:
    """Probes from plain records ``{kind, depth, delay_s}`` (config and journal form)."""
    if items is None:
        return default_probes()
    return tuple(Probe(str(p["kind"]), int(p.get("depth", 0)), float(p.get("delay_s", 0.0)))  # type: ignore[arg-type]
                 for p in items)


# -- the env a policy was trained in ------------------------------------------------------------
#
# A session runs in the env settings its policy was trained under (gate length, shot budget,
# rounds, ladders, estimator constants, ...): an exported policy's manifest records the
# env's whole resolved config (``env.description.config``; older manifests only the
# constructor kwargs, ``env.kwargs``), a training run directory its resolved Hydra
# ``config.yaml``. Precedence when the session's env is built: explicit settings of the
# replay config > the policy's training settings > the replay's defaults (those of the
# replay config and of the backend). An explicit setting that would change the policy's
# observation or action layout is refused.

# Training settings a session never takes from the policy: the device preset (its sample
# time must be the backend's), the simulated device population and its drift, open-system
# simulation, and the truth and reward a backend has no way to give.
SESSION_ENV_KEYS = frozenset({"device", "randomize_device", "sampler", "drift", "open_system", "report_truth",
                              "reward", "reward_floor"})


@dataclass(frozen=True)
class TrainedEnv:
    """The env a policy was trained in, as far as a session takes it over.

    Attributes:
        env_id: the registered env id of training (None: not recorded).
        settings: env keyword arguments in JSON form (probes as ``{kind, depth, delay_s}``
            records, sequences as lists), without ``SESSION_ENV_KEYS``.
        source: the file they were read from.
    """

    env_id: str | None
    settings: Mapping[str, Any]
    source: str


def env_to_kwargs(env: Mapping[str, Any]) -> dict[str, Any]:
    """Env keyword arguments from their JSON form (config, manifest, ``session.json``)."""
    out = {k: v for k, v in env.items() if v is not None}
    if "probes" in out:
        out["probes"] = probes_from_json(out["probes"])
    for k in ("parameters", "miscalibration", "max_step"):
        if k in out:
            out[k] = tuple(out[k])
    return out


def _json_form(value: Any) -> Any:
    if isinstance(value, Probe):
        return {"kind": value.kind, "depth": value.depth, "delay_s": value.delay_s}
    if isinstance(value, Mapping):
        return {str(k): _json_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_form(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _norm(key: Any, value: Any) -> Any:
    """``value`` in JSON form; probes as full records (a config may leave out depth or delay)."""
    if key == "probes" and isinstance(value, list | tuple):
        value = probes_from_json(value) if value and isinstance(value[0], Mapping) else value
    return _json_form(value)


def _session_part(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _norm(k, v) for k, v in settings.items() if k not in SESSION_ENV_KEYS and v is not None}


def _env_config(env_id: str, kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The env of ``env_id`` built with ``kwargs`` and its resolved settings (JSON form)."""
    env = session_env_class(env_id)(**env_to_kwargs(kwargs))
    core = getattr(getattr(env, "unwrapped", env), "core", None)
    cfg = getattr(core, "cfg", None)
    if cfg is None or not hasattr(cfg, "__dataclass_fields__"):
        return env, dict(kwargs)
    resolved = {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}
    gate = getattr(core, "gate", None)
    if resolved.get("gate_duration_s") is None and gate is not None:
        resolved["gate_duration_s"] = float(gate.duration_s)  # the preset's
    return env, {k: _json_form(v) for k, v in resolved.items()}


def trained_env_of_export(folder: str | Path) -> TrainedEnv:
    """The training env of an exported policy folder, from its ``manifest.json``."""
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"policy.folder={str(folder)!r}: {path.name} unreadable ({exc}): allowed an exported "
                         "policy folder (pulsecal-export)") from None
    env = manifest.get("env") if isinstance(manifest, dict) else None
    env = env if isinstance(env, dict) else {}
    config = (env.get("description") or {}).get("config") if isinstance(env.get("description"), dict) else None
    settings = dict(config) if isinstance(config, dict) else dict(env.get("kwargs") or {})
    if settings.get("gate_duration_s") is None:
        # The gate the policy played, also when training took the preset's default length.
        duration = ((manifest.get("pulse") or {}).get("gate_settings") or {}).get("duration_s")
        if duration is not None:
            settings["gate_duration_s"] = duration
    env_id = env.get("id")
    return TrainedEnv(str(env_id) if env_id else None, _session_part(settings), str(path))


def trained_env_of_run(run_dir: str | Path) -> TrainedEnv:
    """The training env of a ``pulsecal-train`` run directory, from its resolved
    ``config.yaml`` (``env.kwargs``, ``env.shots_per_probe``), completed with the env's
    defaults of this code (the run records only what its config set)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return TrainedEnv(None, {}, str(path))  # a bare model: nothing recorded
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    env = cfg.get("env") if isinstance(cfg, dict) else None
    if not isinstance(env, dict):
        return TrainedEnv(None, {}, str(path))
    kwargs = dict(env.get("kwargs") or {})
    if env.get("shots_per_probe") is not None:
        kwargs.setdefault("shots_per_probe", env["shots_per_probe"])
    env_id = str(env["id"]) if env.get("id") else None
    settings = _session_part(kwargs)
    if env_id is not None and env_id.startswith(_ENV_FAMILY + "-v"):
        try:
            settings = _session_part(_env_config(env_id, settings)[1])
        except (TypeError, ValueError):
            pass  # what the run recorded stands; building the session env reports the error
    return TrainedEnv(env_id, settings, str(path))


def trained_env(policy: Mapping[str, Any]) -> TrainedEnv | None:
    """The training env of a replay config's ``policy`` (None: a scripted policy)."""
    kind = policy.get("kind")
    if kind == "onnx":
        return trained_env_of_export(policy["folder"])
    if kind == "sb3":
        return trained_env_of_run(policy["run_dir"])
    return None


def _same(a: Any, b: Any) -> bool:
    a, b = _json_form(a), _json_form(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return bool(a == b)


def _layout(env: Any) -> tuple[Any, ...]:
    o, a = env.observation_space, env.action_space
    return (o.shape, np.asarray(o.low).tolist(), np.asarray(o.high).tolist(),
            a.shape, np.asarray(a.low).tolist(), np.asarray(a.high).tolist())


def _layout_change(before: tuple[Any, ...], after: tuple[Any, ...]) -> str:
    if before[0] != after[0]:
        return f"observation shape {before[0]} -> {after[0]}"
    if before[3] != after[3]:
        return f"action shape {before[3]} -> {after[3]}"
    return "observation or action bounds"


@dataclass(frozen=True)
class SessionEnv:
    """A session's env settings (JSON form) and where they came from.

    Attributes:
        settings: the env keyword arguments (``env_to_kwargs`` turns them into objects).
        from_policy: the policy's training settings the session runs with, where they
            differ from what the replay defaults alone would give.
        same_as_defaults: how many further training settings equal the replay defaults.
        overridden: explicit settings that replace the policy's: key -> (session, trained).
        source: where the training settings were read (None: the policy records none).
    """

    settings: Mapping[str, Any]
    from_policy: Mapping[str, Any] = field(default_factory=dict)
    same_as_defaults: int = 0
    overridden: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    source: str | None = None

    def describe(self) -> list[str]:
        """Human-readable lines on what came from the policy (for the console)."""
        if self.source is None:
            return []
        def short(v: Any) -> str:  # a probe list on one console line is noise
            text = repr(v)
            return f"[{len(v)} items]" if isinstance(v, list) and len(text) > 80 else text

        taken = ", ".join(f"{k}={short(v)}" for k, v in sorted(self.from_policy.items())) or "none"
        lines = [f"env settings from the policy ({self.source}): {taken}"
                 + (f" (and {self.same_as_defaults} equal to the replay defaults)" if self.same_as_defaults else "")]
        if self.overridden:
            lines.append("env settings of the replay config over the policy's: "
                         + ", ".join(f"{k}={short(s)} (trained with {short(t)})"
                                     for k, (s, t) in sorted(self.overridden.items())))
        return lines


def merge_session_env(env_id: str, defaults: Mapping[str, Any], trained: TrainedEnv | None,
                      explicit: Mapping[str, Any]) -> SessionEnv:
    """The env settings of a session: ``explicit`` (the replay config's own ``env``) over
    the policy's training settings over ``defaults`` (the replay's and the backend's).

    Raises ``ValueError`` naming the key when an explicit setting would give the policy
    another observation or action layout (shape or bounds) than its training settings.
    """
    defaults = {str(k): _norm(k, v) for k, v in defaults.items() if v is not None}
    explicit = {str(k): _norm(k, v) for k, v in explicit.items() if v is not None}
    if trained is None or not trained.settings:
        return SessionEnv({**defaults, **explicit})
    base = {**defaults, **trained.settings}
    try:
        ref = _layout(_env_config(env_id, base)[0])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the policy's training env settings ({trained.source}) do not build {env_id}: "
                         f"{exc}") from None
    overridden: dict[str, tuple[Any, Any]] = {}
    for k, v in explicit.items():
        if k in trained.settings and _same(v, trained.settings[k]):
            continue
        try:
            layout = _layout(_env_config(env_id, {**base, k: v})[0])
        except (TypeError, ValueError):
            continue  # an invalid value: building the session env reports it with its field
        if layout != ref:
            raise ValueError(f"env.{k}={v!r}: changes the observation/action layout the policy was trained "
                             f"with ({_layout_change(ref, layout)}); allowed its training value "
                             f"{trained.settings.get(k)!r} ({trained.source}), or leave env.{k} unset")
        if k in trained.settings:
            overridden[k] = (v, trained.settings[k])
    try:
        plain = _env_config(env_id, defaults)[1]
    except (TypeError, ValueError):
        plain = dict(defaults)
    taken = {k: v for k, v in trained.settings.items() if k not in explicit}
    differ = {k: v for k, v in taken.items() if not (k in plain and _same(v, plain[k]))}
    return SessionEnv({**base, **explicit}, differ, len(taken) - len(differ), overridden, trained.source)


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


# -- the journal, read back ---------------------------------------------------------------------


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
        return cls(recs, started, ordered("run_done", "step"), ordered("action", "env_step", 1),
                   ordered("observation", "env_step"), len(by.get("advance", [])), finished)


# -- the device behind the env ------------------------------------------------------------------


FastForward = Callable[[Sequence[Program], int], NDArray[np.int64]]


def simulated_fast_forward(backend: Any) -> FastForward | None:
    """For a ``SimulatedBackend``: re-simulate finished jobs on its device, in order, exactly
    as its ``submit`` runs them (compile → payload → ``device.run``), without a job or a
    shot in any count. None for other backends (their state is physical)."""
    from .adapters.simulated import SimulatedBackend

    if not isinstance(backend, SimulatedBackend):
        return None

    def ff(programs: Sequence[Program], shots: int) -> NDArray[np.int64]:
        out = np.zeros((len(programs), 2), dtype=np.int64)
        for i, p in enumerate(programs):
            art = backend.compile(p)
            out[i] = np.asarray(backend.device.run([art.payload], shots))[0]
        return out

    return ff


class ReplayDevice:
    """The ``Device`` the env talks to: finished calls from the journal, the rest live.

    Device calls are numbered like ``BackendDevice`` steps. Calls below ``len(done)`` are
    answered from the journal's ``run_done`` records after checking that the env asks for
    the same programs (hashes) and shots; ``fast_forward`` (simulated backends) re-simulates
    them so the device state matches. Later calls go to ``live`` (a ``BackendDevice`` that
    starts at step ``len(done)``), bracketed by ``run`` / ``run_done`` journal records.
    """

    def __init__(self, live: BackendDevice, journal: Journal, *, done: Sequence[Mapping[str, Any]] = (),
                 advances_done: int = 0, fast_forward: FastForward | None = None,
                 on_live_step: Callable[[int, int], None] | None = None) -> None:
        self.live = live
        self.journal = journal
        self._done = list(done)
        self._advances_done = int(advances_done)
        self._ff = fast_forward
        self._on_live_step = on_live_step
        self._step = 0
        self._advances = 0
        self.replayed_steps = 0

    @property
    def dt_s(self) -> float:
        return self.live.dt_s

    @property
    def clock_s(self) -> float:
        return self.live.clock_s

    def advance(self, duration_s: float) -> None:
        k = self._advances
        self._advances += 1
        if k < self._advances_done:
            # Already waited before the kill; a simulated device must still see it.
            if self._ff is not None:
                self.live.advance(duration_s)
            return
        self.live.advance(duration_s)
        self.journal.append("advance", session=self.live.session_id, index=k, duration_s=float(duration_s))

    def programs(self, sequences: Sequence[PulseSequence], shots: int) -> list[Program]:
        lv = self.live
        return [from_sequence(s, lv.frame, lv.dt_s, shots=shots, qubit=lv.qubit,
                              acquire_duration_s=lv.acquire_duration_s) for s in sequences]

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        step = self._step
        self._step += 1
        programs = self.programs(sequences, shots)
        hashes = [p.content_hash() for p in programs]
        sid = self.live.session_id
        if step < len(self._done):
            rec = self._done[step]
            if rec["program_hashes"] != hashes or int(rec["shots"]) != int(shots):
                raise ReplayDivergence(
                    f"device call {step}: the env asks for programs {[h[:12] for h in hashes]} × {shots} "
                    f"shots, the journal ran {[h[:12] for h in rec['program_hashes']]} × {rec['shots']}")
            counts = np.asarray(rec["counts"], dtype=np.int64).reshape(len(programs), 2)
            if self._ff is not None:
                again = self._ff(programs, shots)
                if not np.array_equal(again, counts):
                    raise ReplayDivergence(f"device call {step}: the rebuilt simulated device gives "
                                           f"{again.tolist()}, the journal {counts.tolist()}")
            self.replayed_steps += 1
            return counts
        self.journal.append("run", session=sid, step=step, shots=int(shots), program_hashes=hashes)
        counts = np.asarray(self.live.run(sequences, shots), dtype=np.int64)
        self.journal.append("run_done", session=sid, step=step, shots=int(shots), program_hashes=hashes,
                            counts=counts.tolist())
        if self._on_live_step is not None:
            self._on_live_step(step, int(shots))
        return counts


# -- the session ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRecord:
    """One env step (step 0 is the initial measurement at reset; it has no action)."""

    env_step: int
    action: tuple[float, ...] | None
    params: tuple[float, float, float, float]
    p1: tuple[float, ...]
    infidelity_estimate: float
    reward: float
    shots_used: int


@dataclass(frozen=True)
class ReplayResult:
    """What a finished session produced (``report`` is the calibration report dict)."""

    folder: Path
    final_params: DragParams
    steps: tuple[StepRecord, ...]
    resumed: bool
    replayed_device_calls: int
    ledger_shots: int
    orphan_shots: int
    report: dict[str, Any]


def run_session(backend: Backend, policy: Policy, folder: str | Path, settings: ReplaySettings, *,
                limits: SafetyLimits | None = None, retry: RetryPolicy | None = None,
                clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                fsync: bool = True, truth: Callable[[DragParams], dict[str, float]] | None = None,
                plots: bool = True, backend_info: Mapping[str, Any] | None = None,
                device_ledger: DeviceDayLedger | None = None) -> ReplayResult:
    """Run (or resume) a calibration session of ``policy`` on ``backend`` in ``folder``.

    Args:
        backend: any ``Backend``; it is reached only through ``BackendDevice``.
        policy: a ``Policy`` (``ScriptedPolicy``, ``SB3Policy``, ``OnnxPolicy``, ...).
        folder: the session folder; an existing one with the same settings is resumed.
        settings: what to run (see ``ReplaySettings``).
        limits: the safety envelope (default ``default_limits(backend, settings.qubit)``);
            it must allow the session qubit's drive frame.
        retry: retry and backoff policy of ``BackendDevice``.
        clock, sleep: wall clock and wait (inject fakes in tests).
        fsync: fsync journal and ledger writes (off only in tests that write thousands).
        truth: for simulated backends, the true gate metrics of parameters (report only).
        plots: write the PNG plots of the report.
        backend_info: extra description of the backend for the journal and report.
        device_ledger: the device's day ledger shared with its other sessions (sweeps:
            parallel qubits), so ``limits.max_shots_per_day`` bounds all of them together;
            this session is named in it by its folder. None: the session's ledger only.

    Raises ``ReplayDivergence`` if the folder holds another session or the replay departs
    from the journal, and whatever the backend path raises (SafetyViolation, JobLost).
    """
    from .report import write_report

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    journal = Journal(folder / "journal.jsonl", clock=clock, fsync=fsync)
    _check_or_write_settings(folder, settings)
    state = JournalState.read(journal.path, settings.session_id)
    resumed = state.started is not None
    ledger = ShotLedger(folder / "ledger.json", budget_shots=settings.budget_shots, fsync=fsync)
    limits = limits if limits is not None else default_limits(backend, settings.qubit)
    frame = backend.capabilities().drive_frame(settings.qubit)
    if frame.name not in {f.name for f in limits.allowed_frames}:
        raise ValueError(f"limits.allowed_frames={[f.name for f in limits.allowed_frames]}: allowed a set "
                         f"holding qubit {settings.qubit}'s drive frame {frame.name!r}")
    sid = settings.session_id
    proc = _next_process(state)
    write_ahead = state.started is None or state.started.get("write_ahead") == WRITE_AHEAD
    scope = str(folder.resolve())
    orphans = _Orphans(journal, ledger, state, sid, proc, write_ahead, today=lambda: utc_day(clock()),
                       device_ledger=device_ledger, scope=scope)
    orphans.reconcile()
    if device_ledger is not None:
        device_ledger.sync(scope, ledger)
    live = BackendDevice(backend, limits=limits, ledger=ledger, journal=journal, session_id=sid,
                         frame=frame, qubit=settings.qubit,
                         retry=retry, clock=clock, sleep=sleep, start_step=len(state.runs_done),
                         process=proc, before_submit=orphans.before_submit,
                         device_ledger=device_ledger, scope=scope)
    _recover_from_journal(backend, journal, state, sid, proc)
    state = JournalState.read(journal.path, sid)

    device = ReplayDevice(live, journal, done=state.runs_done, advances_done=state.advances,
                          fast_forward=simulated_fast_forward(backend))
    env = session_env_class(settings.env_id)(**settings.env_kwargs())
    describe = getattr(policy, "describe", None)
    policy_info = describe() if callable(describe) else {"kind": type(policy).__name__}
    info_backend = {"name": getattr(backend, "name", type(backend).__name__), **(backend_info or {})}
    if resumed:
        journal.append("session_resumed", session=sid, device_calls_done=len(state.runs_done),
                       env_steps_done=len(state.observations), policy=policy_info, process=proc,
                       write_ahead=WRITE_AHEAD if write_ahead else None)
    else:
        journal.append("session_started", session=sid, settings=settings.to_json(), policy=policy_info,
                       backend=info_backend, limits=limits.to_dict() if hasattr(limits, "to_dict") else str(limits),
                       process=proc, write_ahead=WRITE_AHEAD)

    bind = getattr(policy, "bind", None)
    if callable(bind):
        bind(env)
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()
    start = DragParams.from_array(np.asarray(settings.initial_params))
    obs, info = env.reset(seed=settings.seed, options={"device": device, "initial_params": start})
    steps = [_observe(0, None, obs, 0.0, info, env)]
    _log_observation(journal, state, sid, steps[-1], obs)
    terminated = truncated = False
    t = 0
    while t < settings.max_steps and not (terminated or truncated):
        t += 1
        action = np.asarray(policy.act(obs), dtype=np.float32).reshape(env.action_space.shape)
        params_before = [float(x) for x in env.unwrapped.core.params[0]]
        if t - 1 < len(state.actions):
            old = state.actions[t - 1]
            if [float(x) for x in old["action"]] != [float(x) for x in action]:
                raise ReplayDivergence(f"env step {t}: the policy acts {action.tolist()}, the journal "
                                       f"applied {old['action']} (another policy or seed?)")
        else:
            journal.append("action", session=sid, env_step=t, action=[float(x) for x in action],
                           params_before=params_before, parameters=list(env.unwrapped.core.cfg.parameters))
        obs, reward, terminated, truncated, info = env.step(action)
        steps.append(_observe(t, action, obs, float(reward), info, env))
        _log_observation(journal, state, sid, steps[-1], obs)

    final = DragParams.from_array(np.asarray(steps[-1].params))
    orphan_shots = orphans.shots
    result_core = {
        "session_id": sid, "resumed": resumed, "replayed_device_calls": device.replayed_steps,
        "ledger_shots": ledger.used_shots, "orphan_shots": orphan_shots,
        "env_shots": int(steps[-1].shots_used), "terminated": bool(terminated),
    }
    truth_start = truth(start) if truth is not None else None
    truth_final = truth(final) if truth is not None else None
    report = write_report(folder, steps=steps, settings=settings, policy=policy_info, backend=info_backend,
                          probes=last_measurement(env.unwrapped.core)[0],
                          gate_duration_s=float(env.unwrapped.core.gate.duration_s),
                          truth_start=truth_start, truth_final=truth_final, extra=result_core, plots=plots)
    if state.finished is None:
        journal.append("session_finished", session=sid, final_params=list(final.as_array()),
                       infidelity_estimate=steps[-1].infidelity_estimate, ledger_shots=ledger.used_shots,
                       orphan_shots=orphan_shots, process=proc)
    return ReplayResult(folder, final, tuple(steps), resumed, device.replayed_steps, ledger.used_shots,
                        orphan_shots, report)


def _observe(t: int, action: NDArray[Any] | None, obs: NDArray[Any], reward: float,
             info: Mapping[str, Any], env: Any) -> StepRecord:
    p = info.get("params", env.unwrapped.core.params[0])
    return StepRecord(t, None if action is None else tuple(float(x) for x in action),
                      tuple(float(x) for x in p),  # type: ignore[arg-type]
                      tuple(last_measurement(env.unwrapped.core)[1]),
                      float(info.get("infidelity_estimate", math.nan)), reward,
                      int(info.get("shots_used", 0)))


def _log_observation(journal: Journal, state: JournalState, sid: str, s: StepRecord, obs: NDArray[Any]) -> None:
    if s.env_step < len(state.observations):
        old = state.observations[s.env_step]
        if [float(x) for x in old["params"]] != list(s.params) or list(old["p1"]) != list(s.p1):
            raise ReplayDivergence(f"env step {s.env_step}: replay reached params {list(s.params)}, the "
                                   f"journal {old['params']}")
        return
    journal.append("observation", session=sid, env_step=s.env_step, observation=[float(x) for x in obs],
                   p1=list(s.p1), params=list(s.params), reward=s.reward,
                   infidelity_estimate=s.infidelity_estimate, shots_used=s.shots_used,
                   parameter_names=list(PARAMETER_NAMES))


def _check_or_write_settings(folder: Path, settings: ReplaySettings) -> None:
    path = folder / "session.json"
    want = {"format": SESSION_FORMAT, "settings": settings.to_json()}
    if path.exists():
        have = json.loads(path.read_text())
        if have != json.loads(json.dumps(want)):
            raise ReplayDivergence(f"{path} holds another session: {have.get('settings')}; allowed only the "
                                   f"same settings to resume it: {want['settings']}")
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(want, indent=2, sort_keys=True) + "\n")
    with open(tmp, "rb+") as fh:
        import os

        os.fsync(fh.fileno())
    tmp.replace(path)


def _recover_from_journal(backend: Backend, journal: Journal, state: JournalState, sid: str,
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


def _next_process(state: JournalState) -> int:
    """The first process number no record of the session uses yet."""
    used = [r["process"] for r in state.records if isinstance(r.get("process"), int)]
    return max(used) + 1 if used else 0


_ORPHAN = ":orphan:"


class _Orphans:
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
                # Charged by a version that wrote the ledger first, killed before journaling.
                self.journal.append("orphaned", session=self.sid, job_key=key, shots=e.shots,
                                    ledger_key=okey, day=e.day, charged=True, reconciled=True,
                                    process=self.proc)
                self.orphans.setdefault(key, set()).add(okey)
                self.shots += e.shots
        if not self.write_ahead:
            # No submitting records: every key counted may have run in an earlier process.
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


# -- building blocks for entry points and tests ---------------------------------------------------


def simulated_backend(*, preset: str = "transmon_20ns", seed: int = 0, fault_rate: float = 0.0,
                      open_system: bool = True, amplitude_scale: float = 1.0,
                      detuning_hz: float | None = None, idempotent_submit: bool = True) -> Any:
    """A ``SimulatedBackend`` over a preset device seeded by ``seed`` (the device's shot
    noise and drift) with every fault at ``fault_rate`` (faults draw from their own
    generator, so they never change counts). Rebuilding it with the same arguments gives
    the device a resumed session fast-forwards."""
    from pulsecal.envs.presets import get_preset

    from .adapters.simulated import FaultRates, SimulatedBackend

    p = get_preset(preset)
    params = p.params.replace(amplitude_scale=float(amplitude_scale))
    if detuning_hz is not None:
        params = params.replace(transmon=params.transmon.replace(detuning_hz=float(detuning_hz)))
    from pulsecal.envs.device import SimulatedDevice

    dev = SimulatedDevice(params, p.drift, rng=np.random.default_rng(seed), open_system=open_system)
    return SimulatedBackend(dev, rng=np.random.default_rng([seed, 1]), faults=FaultRates.uniform(fault_rate),
                            idempotent_submit=idempotent_submit)


def simulated_truth(backend: Any, gate_duration_s: float) -> Callable[[DragParams], dict[str, float]]:
    """True X-gate metrics of parameters on a simulated backend's hidden device, now."""
    from pulsecal.envs.calibration import DragGate, true_metrics_devices

    gate = DragGate(gate_duration_s)

    def truth(params: DragParams) -> dict[str, float]:
        w = gate.waveforms(params.as_array()[None], backend.device.dt_s)
        m = true_metrics_devices([backend.device], w, "X")
        return {} if m is None else {k: float(v[0]) for k, v in m.items()}

    return truth


def miscalibrated_start(transmon: Any, gate_duration_s: float, *, amplitude_rel: float = 0.0,
                        beta_rel: float = 0.0, detuning_hz: float = 0.0,
                        phase: float = 0.0) -> DragParams:
    """Textbook parameters of ``transmon`` (``calibration.nominal_params``) moved by the
    given miscalibration: the start a lab session begins from in tests and demos."""
    from pulsecal.envs.calibration import DragGate, nominal_params

    p = nominal_params(transmon, DragGate(gate_duration_s)).as_array()
    p[0] *= 1.0 + amplitude_rel
    p[1] *= 1.0 + beta_rel
    p[2] += detuning_hz
    p[3] += phase
    return DragParams.from_array(p)
