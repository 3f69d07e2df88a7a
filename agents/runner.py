"""Run an exported pulsecal policy in the lab with numpy and onnxruntime only.

A policy folder (written by :mod:`pulsecal.agents.export`) is trusted only after its
manifest passes the schema check and every file it lists matches its recorded size and
sha256; the bytes that were hashed are the bytes handed to onnxruntime, so nothing can
change between the check and the use. :class:`ExportedPolicy` then refuses observations of the
wrong shape or dtype and non-finite values, and refuses to return an action that is
non-finite or outside the action box: it never silently acts.

This module deliberately imports nothing but the standard library, numpy and
onnxruntime (no torch, no stable-baselines3, no pickle, no YAML): it is what runs next
to the instruments. Keep it that way; ``tests/agents/test_runner.py`` checks it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA",
    "MANIFEST_SCHEMA_VERSION",
    "ONNX_NAME",
    "ActionError",
    "EnvLike",
    "ExportedPolicy",
    "ObservationError",
    "ObservationOutOfBoundsWarning",
    "PolicyLoadError",
    "PolicyMismatchError",
    "PolicyState",
    "RunnerStep",
    "SessionResult",
    "load_policy",
    "manifest_digest",
    "session",
]

MANIFEST_NAME = "manifest.json"
ONNX_NAME = "policy.onnx"
MANIFEST_SCHEMA = "pulsecal/policy-export"
MANIFEST_SCHEMA_VERSION = 1
# A manifest holds labels and normalisation statistics: kilobytes. Anything near this
# size is not one of ours and is not worth parsing.
_MAX_MANIFEST_BYTES = 16 * 2**20
# Protobuf cannot hold a single ONNX model above 2 GiB.
_MAX_FILE_BYTES = 2 * 2**30
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ACCEPTED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

OutOfBounds = Literal["allow", "warn", "refuse"]


class PolicyLoadError(ValueError):
    """The policy folder cannot be trusted; ``file`` names the file at fault."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


class ObservationError(ValueError):
    """An observation the policy refuses to act on (shape, dtype, non-finite, out of bounds)."""


class ObservationOutOfBoundsWarning(UserWarning):
    """An observation left the box the policy was trained on; the policy still acted."""


class ActionError(RuntimeError):
    """The graph produced an action that is non-finite or outside the action box."""


class PolicyMismatchError(ValueError):
    """The environment or backend does not match what the policy was exported for."""


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own ``manifest_sha256`` field.

    Canonical: sorted keys, no whitespace, ASCII, no NaN/Infinity. It catches an edited
    or corrupted manifest; it is not a signature against someone who rewrites both.
    """
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class PolicyState:
    """A policy's recurrent state, carried explicitly between steps.

    ``arrays`` are the LSTM hidden and cell states, each float32 of shape
    (n_layers, 1, hidden) as in SB3; empty for a feed-forward policy. Use
    :meth:`to_json` / :meth:`from_json` to journal it so an interrupted session resumes
    with the same memory.
    """

    arrays: tuple[NDArray[np.float32], ...] = ()

    def to_json(self) -> list[Any]:
        return [a.tolist() for a in self.arrays]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> PolicyState:
        return cls(tuple(np.asarray(a, dtype=np.float32) for a in value))


class ExportedPolicy:
    """A verified exported policy: deterministic action from a raw observation.

    Observations: a numpy array of exactly the manifest's observation shape (or
    ``(n, *shape)`` for :meth:`act_batch`), dtype float16/float32/float64 (cast to
    float64, which is lossless), all finite. Anything else raises
    :class:`ObservationError`; integers, lists and other dtypes are refused rather than
    guessed at. What happens to observations outside the training box is set by
    ``out_of_bounds`` ("warn" by default: the policy acts as SB3 would, and a
    :class:`ObservationOutOfBoundsWarning` names the element).

    Actions: float32 of the action shape, in the action box (normalised units; the
    environment maps them to pulse parameters).
    """

    def __init__(
        self, folder: Path, manifest: Mapping[str, Any], session: ort.InferenceSession, out_of_bounds: OutOfBounds
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self._session = session
        self._out_of_bounds = out_of_bounds
        obs, act = manifest["observation"], manifest["action"]
        self.observation_shape: tuple[int, ...] = tuple(obs["shape"])
        self.action_shape: tuple[int, ...] = tuple(act["shape"])
        self.observation_low = _bounds_array(obs["low"], self.observation_shape, -np.inf)
        self.observation_high = _bounds_array(obs["high"], self.observation_shape, np.inf)
        self.action_low = _bounds_array(act["low"], self.action_shape, -np.inf).astype(np.float32)
        self.action_high = _bounds_array(act["high"], self.action_shape, np.inf).astype(np.float32)
        self.observation_labels: tuple[str, ...] = tuple(obs["labels"])
        self.action_labels: tuple[str, ...] = tuple(act["labels"])
        rs = manifest.get("recurrent_state")
        self.recurrent = rs is not None
        self._state_shape: tuple[int, ...] = tuple(rs["shape"]) if rs else ()
        self._state_inputs: tuple[str, ...] = tuple(rs["inputs"]) if rs else ()

    @property
    def env_id(self) -> str | None:
        return self.manifest["env"].get("id")

    def initial_state(self) -> PolicyState:
        """The state at the start of an episode (zeros, as SB3 resets on ``episode_start``)."""
        return PolicyState(tuple(np.zeros(self._state_shape, dtype=np.float32) for _ in self._state_inputs))

    def act(self, observation: NDArray[Any]) -> NDArray[np.float32]:
        """Deterministic action for one observation (feed-forward policies only)."""
        if self.recurrent:
            raise TypeError("this policy is recurrent: use act_with_state(observation, state)")
        (action,) = self._run(self._check_observation(observation, batched=False), ())
        return action[0]

    def act_batch(self, observations: NDArray[Any]) -> NDArray[np.float32]:
        """Deterministic actions, shape (n, *action_shape), for observations of shape (n, *observation_shape)."""
        if self.recurrent:
            raise TypeError("this policy is recurrent: use act_with_state(observation, state) step by step")
        (actions,) = self._run(self._check_observation(observations, batched=True), ())
        return actions

    def act_with_state(self, observation: NDArray[Any], state: PolicyState) -> tuple[NDArray[np.float32], PolicyState]:
        """Action and next state for one observation; works for every policy (the state of a
        feed-forward policy is empty and passes through)."""
        obs = self._check_observation(observation, batched=False)
        arrays = self._check_state(state)
        action, *next_state = self._run(obs, arrays)
        return action[0], PolicyState(tuple(next_state))

    def initial_batch_state(self, n: int) -> PolicyState:
        """Zero state for ``n`` parallel episodes (arrays of shape (n_layers, n, hidden))."""
        shape = (self._state_shape[0], n, self._state_shape[2]) if self._state_shape else ()
        return PolicyState(tuple(np.zeros(shape, dtype=np.float32) for _ in self._state_inputs))

    def act_batch_with_state(
        self, observations: NDArray[Any], state: PolicyState
    ) -> tuple[NDArray[np.float32], PolicyState]:
        """Actions and next states for ``n`` parallel episodes (e.g. several qubits).

        ``state`` arrays have shape (n_layers, n, hidden); to start episode ``i`` afresh,
        zero column ``i`` (SB3's ``episode_start``).
        """
        obs = self._check_observation(observations, batched=True)
        arrays = self._check_state(state, batch=obs.shape[0])
        actions, *next_state = self._run(obs, arrays)
        return actions, PolicyState(tuple(next_state))

    # ------------------------------------------------------------------ checks

    def _check_observation(self, observation: Any, *, batched: bool) -> NDArray[np.float64]:
        if not isinstance(observation, np.ndarray):
            raise ObservationError(
                f"observation is a {type(observation).__name__}: allowed a numpy array of shape {self.observation_shape}"
            )
        if observation.dtype not in _ACCEPTED_DTYPES:
            raise ObservationError(
                f"observation dtype {observation.dtype}: allowed float16, float32 or float64 (cast losslessly to float64)"
            )
        expected = self.observation_shape
        if batched:
            if observation.ndim != len(expected) + 1 or observation.shape[1:] != expected or observation.shape[0] < 1:
                raise ObservationError(f"observations shape {observation.shape}: allowed (n >= 1, *{expected})")
        elif observation.shape != expected:
            raise ObservationError(f"observation shape {observation.shape}: allowed {expected}")
        obs = observation.astype(np.float64).reshape((-1, *expected))
        finite = np.isfinite(obs)
        if not finite.all():
            raise ObservationError(f"observation has NaN/inf at {self._where(~finite)}: allowed finite values")
        if self._out_of_bounds != "allow":
            outside = (obs < self.observation_low) | (obs > self.observation_high)
            if outside.any():
                message = (
                    f"observation outside the training box at {self._where(outside)}: "
                    f"allowed [{self._first(self.observation_low, outside)}, {self._first(self.observation_high, outside)}]"
                )
                if self._out_of_bounds == "refuse":
                    raise ObservationError(message)
                warnings.warn(message, ObservationOutOfBoundsWarning, stacklevel=3)
        return obs

    def _where(self, mask: NDArray[np.bool_]) -> str:
        """Name the first offending element by batch row and label."""
        row, *index = np.argwhere(mask)[0]
        flat = int(np.ravel_multi_index(tuple(index), self.observation_shape)) if index else 0
        label = self.observation_labels[flat] if flat < len(self.observation_labels) else str(flat)
        prefix = f"row {row}, " if mask.shape[0] > 1 else ""
        return f"{prefix}{label!r}"

    def _first(self, bound: NDArray[np.float64], mask: NDArray[np.bool_]) -> float:
        _, *index = np.argwhere(mask)[0]
        return float(bound[tuple(index)])

    def _check_state(self, state: PolicyState, batch: int = 1) -> tuple[NDArray[np.float32], ...]:
        if not isinstance(state, PolicyState):
            raise TypeError(f"state is a {type(state).__name__}: allowed a PolicyState (see initial_state())")
        if len(state.arrays) != len(self._state_inputs):
            raise ValueError(f"state has {len(state.arrays)} arrays: allowed {len(self._state_inputs)}")
        shape = (self._state_shape[0], batch, self._state_shape[2]) if self._state_shape else ()
        for name, array in zip(self._state_inputs, state.arrays, strict=True):
            if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.shape != shape:
                raise ValueError(f"state {name}: allowed a float32 array of shape {shape}")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"state {name} has NaN/inf: allowed finite values")
        return state.arrays

    def _run(self, obs: NDArray[np.float64], state: tuple[NDArray[np.float32], ...]) -> list[NDArray[np.float32]]:
        feeds: dict[str, NDArray[Any]] = {"observation": obs}
        feeds.update(zip(self._state_inputs, state, strict=True))
        outputs = [np.asarray(o) for o in self._session.run(None, feeds)]
        action = outputs[0]
        if action.dtype != np.float32 or action.shape != (obs.shape[0], *self.action_shape):
            raise ActionError(f"graph returned action {action.dtype}{action.shape}: allowed float32{self.action_shape}")
        if not np.all(np.isfinite(action)):
            raise ActionError("graph returned a NaN/inf action; refusing to act")
        if np.any(action < self.action_low) or np.any(action > self.action_high):
            raise ActionError("graph returned an action outside the action box; refusing to act")
        for o in outputs[1:]:
            if not np.all(np.isfinite(o)):
                raise ActionError("graph returned a NaN/inf recurrent state; refusing to act")
        return outputs


# ---------------------------------------------------------------------- loading


def load_policy(folder: str | Path, *, out_of_bounds: OutOfBounds = "warn", threads: int = 1) -> ExportedPolicy:
    """Verify a policy folder and load it for inference.

    Checks, in order, and refuses with :class:`PolicyLoadError` naming the file: the
    manifest parses as strict JSON (no NaN/Infinity, no duplicate keys) and has this
    runner's schema and version; its self-digest matches; every listed file exists as a
    regular file with the recorded size and sha256; the ONNX graph's inputs and outputs
    match the manifest's layout.

    Args:
        folder: the exported folder (``manifest.json``, ``policy.onnx``, ...).
        out_of_bounds: what :class:`ExportedPolicy` does with observations outside the training
            box: "allow", "warn" (default) or "refuse".
        threads: onnxruntime intra-op threads (1 keeps results reproducible and leaves
            the control machine's other cores to the instruments).
    """
    if out_of_bounds not in ("allow", "warn", "refuse"):
        raise ValueError(f"out_of_bounds={out_of_bounds!r}: allowed 'allow', 'warn' or 'refuse'")
    root = Path(folder)
    if not root.is_dir():
        raise PolicyLoadError(str(root), "not a folder")
    manifest = _read_manifest(root)
    blobs = {name: _read_verified(root, name, entry) for name, entry in manifest["files"].items()}
    session = _make_session(blobs[ONNX_NAME], threads=threads)
    _check_graph_io(session, manifest)
    return ExportedPolicy(root, manifest, session, out_of_bounds)


def _make_session(data: bytes, *, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session over model bytes (the exporter checks parity with the same settings)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def _reject_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if path.is_symlink() or not path.is_file():
        raise PolicyLoadError(MANIFEST_NAME, "missing (or not a regular file)")
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise PolicyLoadError(MANIFEST_NAME, f"larger than {_MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(
            path.read_bytes().decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise PolicyLoadError(MANIFEST_NAME, f"not valid JSON ({exc})") from exc
    _validate_manifest(manifest)
    if manifest["manifest_sha256"] != manifest_digest(manifest):
        raise PolicyLoadError(MANIFEST_NAME, "content does not match its manifest_sha256 (edited or corrupted)")
    return manifest


def _require(ok: bool, reason: str) -> None:
    if not ok:
        raise PolicyLoadError(MANIFEST_NAME, reason)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) and v >= 1 for v in value)


def _validate_manifest(m: Any) -> None:
    """The parts of the schema the runner relies on; the rest is documentation for people."""
    _require(isinstance(m, dict), "top level is not an object")
    _require(m.get("schema") == MANIFEST_SCHEMA, f"schema {m.get('schema')!r}: allowed {MANIFEST_SCHEMA!r}")
    version = m.get("schema_version")
    _require(
        _is_int(version) and version == MANIFEST_SCHEMA_VERSION,
        f"schema_version {version!r}: this runner reads version {MANIFEST_SCHEMA_VERSION}",
    )
    for key in ("env", "algorithm", "observation", "action", "graph", "files"):
        _require(isinstance(m.get(key), dict), f"section {key!r} missing or not an object")
    _require(isinstance(m.get("manifest_sha256"), str), "manifest_sha256 missing")
    _require(m["env"].get("id") is None or isinstance(m["env"]["id"], str), "env.id is not a string")
    for section in ("observation", "action"):
        s = m[section]
        _require(_is_shape(s.get("shape")), f"{section}.shape is not a list of positive integers")
        size = math.prod(s["shape"])
        for key in ("labels", "units"):
            _require(
                isinstance(s.get(key), list) and len(s[key]) == size and all(isinstance(v, str) for v in s[key]),
                f"{section}.{key} is not {size} strings",
            )
        for key in ("low", "high"):
            _require(_bounds_ok(s.get(key), s["shape"]), f"{section}.{key} is not numbers/null of shape {s['shape']}")
    act = m["action"]
    low = _bounds_array(act["low"], tuple(act["shape"]), -np.inf)
    high = _bounds_array(act["high"], tuple(act["shape"]), np.inf)
    _require(bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low <= high)),
             "action.low/high must be finite with low <= high")
    _require(m["graph"].get("file") == ONNX_NAME, f"graph.file {m['graph'].get('file')!r}: allowed {ONNX_NAME!r}")
    rs = m.get("recurrent_state")
    _require(isinstance(m["algorithm"].get("recurrent"), bool), "algorithm.recurrent is not a boolean")
    _require((rs is not None) == m["algorithm"]["recurrent"], "recurrent_state disagrees with algorithm.recurrent")
    if rs is not None:
        _require(isinstance(rs, dict) and _is_shape(rs.get("shape")) and len(rs["shape"]) == 3 and rs["shape"][1] == 1,
                 "recurrent_state.shape is not [n_layers, 1, hidden]")
        _require(rs.get("inputs") == ["lstm_h", "lstm_c"] and rs.get("outputs") == ["lstm_h_out", "lstm_c_out"],
                 "recurrent_state inputs/outputs are not lstm_h, lstm_c -> lstm_h_out, lstm_c_out")
    files = m["files"]
    _require(ONNX_NAME in files, f"files does not list {ONNX_NAME}")
    for name, entry in files.items():
        _require(bool(_FILE_NAME.match(name)) and name != MANIFEST_NAME, f"files entry {name!r} is not a plain file name")
        _require(isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and bool(_SHA256.match(entry["sha256"]))
                 and _is_int(entry.get("bytes")) and 0 <= entry["bytes"] <= _MAX_FILE_BYTES,
                 f"files[{name!r}] needs a lowercase hex sha256 and a byte count")


def _bounds_ok(value: Any, shape: list[int]) -> bool:
    if not shape:
        return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))
    return isinstance(value, list) and len(value) == shape[0] and all(_bounds_ok(v, shape[1:]) for v in value)


def _bounds_array(value: Any, shape: tuple[int, ...], missing: float) -> NDArray[np.float64]:
    """Manifest bounds (null = unbounded) as a float64 array with ±inf."""
    flat = np.array(value, dtype=object).reshape(shape) if shape else np.array(value, dtype=object)
    return np.where(flat == None, missing, flat).astype(np.float64)  # noqa: E711 (elementwise on object array)


def _read_verified(root: Path, name: str, entry: Mapping[str, Any]) -> bytes:
    path = root / name
    if path.is_symlink() or not path.is_file():
        raise PolicyLoadError(name, "listed in the manifest but missing (or not a regular file)")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise PolicyLoadError(name, f"{size} bytes on disk, manifest says {entry['bytes']} (truncated or replaced)")
    data = path.read_bytes()
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise PolicyLoadError(name, "sha256 does not match the manifest (modified or corrupted)")
    return data


_ORT_TYPES = {"float64": "tensor(double)", "float32": "tensor(float)"}


def _check_graph_io(session: ort.InferenceSession, manifest: Mapping[str, Any]) -> None:
    """The graph must take and return exactly what the manifest describes."""
    graph = manifest["graph"]
    for kind, actual in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        declared = graph.get(kind)
        if not isinstance(declared, dict):
            raise PolicyLoadError(MANIFEST_NAME, f"graph.{kind} missing")
        got = {a.name: a for a in actual}
        if list(got) != list(declared):
            raise PolicyLoadError(ONNX_NAME, f"graph {kind} {list(got)}: manifest says {list(declared)}")
        for name, spec in declared.items():
            arg = got[name]
            want_shape = [d if _is_int(d) else None for d in spec["shape"]]
            got_shape = [d if _is_int(d) else None for d in arg.shape]
            if arg.type != _ORT_TYPES.get(spec["dtype"]) or got_shape != want_shape:
                raise PolicyLoadError(
                    ONNX_NAME, f"graph {name} is {arg.type}{arg.shape}: manifest says {spec['dtype']}{spec['shape']}"
                )
    obs_shape, act_shape = manifest["observation"]["shape"], manifest["action"]["shape"]
    if graph["inputs"]["observation"]["shape"][1:] != obs_shape or graph["outputs"]["action"]["shape"][1:] != act_shape:
        raise PolicyLoadError(MANIFEST_NAME, "graph shapes disagree with observation/action shapes")


# ---------------------------------------------------------------------- session


class EnvLike(Protocol):
    """What :func:`session` drives: the Gymnasium ``reset``/``step`` API.

    A pulsecal environment over a simulated device, or the same environment over
    ``pulsecal.hardware``'s backend device (safety envelope, shot ledger, journal).
    """

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]: ...

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]: ...


@dataclass(frozen=True)
class RunnerStep:
    """One applied action: the observation it was chosen from, and what came back."""

    index: int
    observation: NDArray[np.float64]
    action: NDArray[np.float32]
    reward: float
    terminated: bool
    truncated: bool
    info: Mapping[str, Any]
    state: PolicyState


@dataclass(frozen=True)
class SessionResult:
    """How a calibration session ended and every step it took."""

    steps: tuple[RunnerStep, ...]
    total_reward: float
    terminated: bool
    truncated: bool
    stopped: bool
    final_observation: NDArray[np.float64]
    final_state: PolicyState
    final_info: Mapping[str, Any] = field(default_factory=dict)


def session(
    backend: EnvLike,
    policy: ExportedPolicy,
    *,
    max_steps: int,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    start: tuple[NDArray[Any], PolicyState] | None = None,
    on_step: Callable[[RunnerStep], bool | None] | None = None,
    check_env: bool = True,
) -> SessionResult:
    """Run one closed-loop calibration session of ``policy`` on ``backend``.

    Resets ``backend`` (unless ``start`` gives the observation and policy state to resume
    from), then alternates ``policy.act_with_state`` and ``backend.step`` until the
    episode terminates or is truncated, ``max_steps`` actions were applied, or
    ``on_step`` returns False (an operator stop, a shot budget). ``on_step`` sees every
    applied action after the backend returned, which is where a journal appends it.
    Exceptions from the backend propagate: retrying without double-submitting is the
    replay layer's job, not this loop's.

    With ``check_env``, a backend exposing ``spec.id``, ``observation_space`` or
    ``action_space`` must match the manifest, or :class:`PolicyMismatchError` is raised
    before anything runs.
    """
    if max_steps < 0:
        raise ValueError(f"max_steps={max_steps}: allowed >= 0")
    if check_env:
        _check_env(backend, policy)
    if start is None:
        observation, info = backend.reset(seed=seed, options=options)
        state = policy.initial_state()
    else:
        observation, state = start
        info = {}
    observation = np.asarray(observation)
    steps: list[RunnerStep] = []
    total = 0.0
    terminated = truncated = stopped = False
    for index in range(max_steps):
        action, next_state = policy.act_with_state(observation, state)
        next_obs, reward, term, trunc, info = backend.step(action)
        record = RunnerStep(
            index=index,
            observation=np.asarray(observation, dtype=np.float64),
            action=action,
            reward=float(reward),
            terminated=bool(term),
            truncated=bool(trunc),
            info=info,
            state=next_state,
        )
        steps.append(record)
        total += record.reward
        observation, state = np.asarray(next_obs), next_state
        terminated, truncated = record.terminated, record.truncated
        if on_step is not None and on_step(record) is False:
            stopped = True
            break
        if terminated or truncated:
            break
    return SessionResult(
        steps=tuple(steps),
        total_reward=total,
        terminated=terminated,
        truncated=truncated,
        stopped=stopped,
        final_observation=np.asarray(observation, dtype=np.float64),
        final_state=state,
        final_info=info,
    )


def _check_env(backend: Any, policy: ExportedPolicy) -> None:
    spec = getattr(backend, "spec", None)
    env_id = getattr(spec, "id", None)
    if env_id is not None and policy.env_id is not None and env_id != policy.env_id:
        raise PolicyMismatchError(f"backend runs {env_id!r}: policy was exported for {policy.env_id!r}")
    for name, shape, low, high in (
        ("observation_space", policy.observation_shape, policy.observation_low, policy.observation_high),
        ("action_space", policy.action_shape, policy.action_low, policy.action_high),
    ):
        space = getattr(backend, name, None)
        if space is None or not hasattr(space, "shape"):
            continue
        if tuple(space.shape) != shape:
            raise PolicyMismatchError(f"backend {name} shape {tuple(space.shape)}: policy expects {shape}")
        if hasattr(space, "low") and hasattr(space, "high"):
            same = np.array_equal(np.asarray(space.low, dtype=np.float64), low.astype(np.float64)) and np.array_equal(
                np.asarray(space.high, dtype=np.float64), high.astype(np.float64)
            )
            if not same:
                raise PolicyMismatchError(f"backend {name} bounds differ from the policy's manifest")
