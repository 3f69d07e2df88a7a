"""Export a trained SB3 policy into a self-contained folder the lab can run without torch.

The folder holds ``policy.onnx`` (raw observation in, deterministic action out, with the
VecNormalize observation statistics and SB3's action post-processing folded into the
graph), ``manifest.json`` (what the policy was trained on and for, and the sha256 of
every file) and, behind a flag, ``policy.pt`` (TorchScript of the same computation).
:mod:`pulsecal.agents.runner` loads such a folder with numpy + onnxruntime only.

The graph is built by tracing a small wrapper module around ``policy._predict`` with
torch's legacy TorchScript-based ONNX exporter (``dynamo=False``): the policies are MLPs
or a single-step LSTM, which that exporter handles exactly, and it needs no package
beyond torch + onnx (the dynamo exporter would add ``onnxscript``). Every export is
checked against SB3's own ``predict`` before its manifest is written, so a silent
exporter regression cannot produce a folder.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import io
import json
import math
import platform
import re
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecNormalize

from pulsecal.agents.runner import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    MANIFEST_SCHEMA_VERSION,
    ONNX_NAME,
    manifest_digest,
)

__all__ = [
    "DEFAULT_OPSET",
    "TORCHSCRIPT_NAME",
    "ExportCheck",
    "ExportMetadata",
    "ObservationNormalisation",
    "export_policy",
    "export_run",
    "metadata_from_env",
    "read_normalisation",
    "reference_actions",
    "sample_observations",
]

TORCHSCRIPT_NAME = "policy.pt"
# Opset 17 is read by every onnxruntime since 1.13 and covers LSTM, Clip with tensor
# bounds and Cast; a higher opset would buy the lab nothing.
DEFAULT_OPSET = 17
# Packages whose versions decide whether the exported numbers are reproducible.
_VERSIONED_PACKAGES = (
    "pulsecal",
    "numpy",
    "torch",
    "stable-baselines3",
    "sb3-contrib",
    "gymnasium",
    "onnx",
    "onnxruntime",
)
# Names an environment may expose (on ``env.unwrapped``) to describe its spaces and
# physics; every one is optional and copied into the manifest when present.
_ENV_LAYOUT_ATTRS = {
    "observation_labels": "observation_labels",
    "observation_units": "observation_units",
    "action_labels": "action_labels",
    "action_units": "action_units",
}
_ENV_DESCRIPTION_ATTRS = (
    "action_physical",
    "action_scaling",
    "pulse_parametrisation",
    "pulse",
    "device_preset",
    "device_ranges",
    "safety_limits",
)
# Env settings that bound what the policy could do in training (copied into "safety").
_SAFETY_KEYS = ("shot_budget", "shots_per_probe", "max_step", "window", "max_amplitude", "amplitude_limit")


@dataclass(frozen=True)
class ObservationNormalisation:
    """VecNormalize's observation transform: ``clip((obs - mean) / sqrt(var + epsilon), ±clip_obs)``.

    ``mean`` and ``var`` have the observation's shape and are kept in float64, as
    VecNormalize computes in float64 before casting to float32.
    """

    mean: NDArray[np.float64]
    var: NDArray[np.float64]
    epsilon: float
    clip_obs: float

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        var = np.asarray(self.var, dtype=np.float64)
        if mean.shape != var.shape:
            raise ValueError(f"ObservationNormalisation.var shape {var.shape}: allowed the mean's shape {mean.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)):
            raise ValueError("ObservationNormalisation mean/var: allowed finite values with var >= 0")
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"ObservationNormalisation.epsilon={self.epsilon!r}: allowed a finite value > 0")
        if not (self.clip_obs > 0):
            raise ValueError(f"ObservationNormalisation.clip_obs={self.clip_obs!r}: allowed a value > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "var", var)

    @classmethod
    def from_vec_normalize(cls, vec_normalize: VecNormalize) -> ObservationNormalisation | None:
        """The observation part of a VecNormalize wrapper; None when it does not normalise observations."""
        if not vec_normalize.norm_obs:
            return None
        if isinstance(vec_normalize.obs_rms, dict):
            raise ValueError("VecNormalize with Dict observations: allowed Box observations only")
        rms = vec_normalize.obs_rms
        return cls(mean=rms.mean, var=rms.var, epsilon=float(vec_normalize.epsilon), clip_obs=float(vec_normalize.clip_obs))

    def apply(self, obs: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """The transform exactly as VecNormalize.normalize_obs does it (float64 then float32)."""
        return np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip_obs, self.clip_obs).astype(
            np.float32
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "vecnormalize",
            "formula": "clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)",
            "mean": self.mean.tolist(),
            "var": self.var.tolist(),
            "epsilon": self.epsilon,
            "clip_obs": self.clip_obs,
        }


@dataclass(frozen=True)
class ExportMetadata:
    """Everything the manifest says beyond the network itself; every field is optional.

    Mappings are copied into the manifest as JSON (numpy values become lists; non-finite
    floats become the strings ``"inf"``, ``"-inf"``, ``"nan"``).
    """

    env_id: str | None = None
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    observation_labels: Sequence[str] | None = None
    observation_units: Sequence[str] | None = None
    action_labels: Sequence[str] | None = None
    action_units: Sequence[str] | None = None
    # Free-form descriptions: how [-1, 1] maps to physical pulse parameters, the device
    # preset and the parameter ranges training drew devices from, the safety envelope.
    env_description: Mapping[str, Any] = field(default_factory=dict)
    pulse: Mapping[str, Any] | None = None
    device: Mapping[str, Any] | None = None
    safety: Mapping[str, Any] | None = None
    training_config: Mapping[str, Any] | None = None
    seed: int | None = None
    training_versions: Mapping[str, Any] | None = None
    git_revision: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportCheck:
    """How closely the exported graph reproduced SB3's ``predict`` at export time."""

    samples: int
    max_abs_diff: float
    tolerance: float


def metadata_from_env(env: Any, **overrides: Any) -> ExportMetadata:
    """Read what an environment says about itself (id, labels, units, physics description).

    Looks at ``env.spec`` and at optional attributes of ``env.unwrapped``
    (``observation_labels``, ``observation_units``, ``action_labels``, ``action_units``,
    ``pulse_parametrisation``, ``device_preset``, ``device_ranges``, ``safety_limits``, ...),
    and, for pulsecal's core-backed envs, at ``core.cfg`` (the env's frozen settings:
    pulse parameters, step sizes, shot budget), ``core.preset`` (the device preset) and
    ``core.sampler`` (the device ranges of randomised training). ``overrides`` replace
    fields of the result.
    """
    unwrapped = getattr(env, "unwrapped", env)
    values: dict[str, Any] = {}
    spec = getattr(env, "spec", None) or getattr(unwrapped, "spec", None)
    if spec is not None:
        values["env_id"] = spec.id
        values["env_kwargs"] = dict(spec.kwargs or {})
    for attr, name in _ENV_LAYOUT_ATTRS.items():
        value = getattr(unwrapped, attr, None)
        if value is not None:
            values[name] = [str(v) for v in value]
    description = {a: _jsonable(getattr(unwrapped, a)) for a in _ENV_DESCRIPTION_ATTRS if getattr(unwrapped, a, None) is not None}
    core = getattr(unwrapped, "core", None)
    cfg = getattr(core, "cfg", None)
    if cfg is not None and dataclasses.is_dataclass(cfg):
        description["config"] = _jsonable(cfg)
        safety = {k: description["config"][k] for k in _SAFETY_KEYS if k in description["config"]}
        if safety:
            values["safety"] = {"trained_under": safety}
    gate = getattr(core, "gate", None)
    if gate is not None:
        # Which pulse the actions calibrate; how a unit action maps to a parameter change
        # is in the env config (``parameters``, ``max_step``) copied above.
        values["pulse"] = {
            "gate": type(gate).__name__,
            "gate_settings": _jsonable(gate),
            "calibrated_parameters": _jsonable(getattr(cfg, "parameters", None)),
            "max_step_per_unit_action": _jsonable(getattr(cfg, "max_step", None)),
        }
    preset = getattr(core, "preset", None)
    if preset is not None:
        values["device"] = {
            "preset": getattr(preset, "name", None),
            "preset_parameters": _jsonable(preset),
            "training_ranges": _jsonable(getattr(core, "sampler", None)),
        }
    if description:
        values["env_description"] = description
    values.update(overrides)
    return ExportMetadata(**values)


# --------------------------------------------------------------------------- graph


class _FeedForwardActor(th.nn.Module):
    """Raw float64 observation -> action in the Box, for PPO/A2C/SAC/TD3 policies."""

    def __init__(self, policy: BasePolicy, post: _Post) -> None:
        super().__init__()
        self.policy = policy
        self.post = post

    def forward(self, observation: th.Tensor) -> th.Tensor:
        x = self.post.normalise(observation)
        action = self.policy._predict(x, deterministic=True)
        return self.post.finish(action)


class _RecurrentActor(th.nn.Module):
    """Raw observation + LSTM (h, c) -> action in the Box + next (h, c), for RecurrentPPO.

    Episode starts are not a graph input: SB3 resets the state by multiplying it with
    ``1 - episode_start``, which is the same as passing zeros, so the runner starts each
    episode from ``initial_state()`` (zeros) instead.
    """

    def __init__(self, policy: BasePolicy, post: _Post) -> None:
        super().__init__()
        self.policy = policy
        self.post = post

    def forward(self, observation: th.Tensor, hidden: th.Tensor, cell: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        x = self.post.normalise(observation)
        # All zeros: no reset inside this one-step sequence, so SB3 takes its unrolled path.
        episode_starts = th.zeros_like(x.reshape(x.shape[0], -1)[:, 0])
        distribution, (h, c) = self.policy.get_distribution(x, (hidden, cell), episode_starts)  # type: ignore[operator]
        action = distribution.get_actions(deterministic=True)
        return self.post.finish(action), h, c


class _Post(th.nn.Module):
    """Observation normalisation before, and SB3's Box post-processing after, the network."""

    mean: th.Tensor
    std: th.Tensor
    low: th.Tensor
    high: th.Tensor

    def __init__(self, norm: ObservationNormalisation | None, action_space: spaces.Box, squash: bool) -> None:
        super().__init__()
        self.has_norm = norm is not None
        self.squash = squash
        self.action_shape = tuple(int(s) for s in action_space.shape)
        if norm is not None:
            self.register_buffer("mean", th.as_tensor(norm.mean, dtype=th.float64))
            # sqrt computed once in numpy, exactly as VecNormalize computes it.
            self.register_buffer("std", th.as_tensor(np.sqrt(norm.var + norm.epsilon), dtype=th.float64))
            self.clip_obs = float(norm.clip_obs)
        self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32))

    def normalise(self, observation: th.Tensor) -> th.Tensor:
        x = observation
        if self.has_norm:
            x = th.clamp((x - self.mean) / self.std, -self.clip_obs, self.clip_obs)
        return x.to(th.float32)

    def finish(self, action: th.Tensor) -> th.Tensor:
        a = action.reshape((-1, *self.action_shape))
        if self.squash:
            # BasePolicy.unscale_action: tanh output in [-1, 1] -> [low, high].
            a = self.low + 0.5 * (a + 1.0) * (self.high - self.low)
        # SB3 clips the unsquashed case; the squashed case is clipped too, which moves an
        # action by at most one rounding error but guarantees the Box to the lab.
        return th.maximum(th.minimum(a, self.high), self.low)


def _is_recurrent(policy: BasePolicy) -> bool:
    return hasattr(policy, "lstm_actor") and hasattr(policy, "lstm_hidden_state_shape")


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Trace without torch.distributions' argument checks (data-dependent Python branches the
    tracer can only freeze, warning each time) and without the legacy-exporter notice."""
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=th.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            # Said of LSTMs whose h0/c0 are not graph inputs; ours are.
            warnings.filterwarnings("ignore", message=".*batch_size other than 1.*LSTM.*")
            yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def _build_actor(model: BaseAlgorithm, norm: ObservationNormalisation | None) -> tuple[th.nn.Module, bool]:
    policy = model.policy
    if not isinstance(policy.observation_space, spaces.Box):
        raise ValueError(f"observation space {policy.observation_space}: allowed a Box")
    if not isinstance(policy.action_space, spaces.Box):
        raise ValueError(f"action space {policy.action_space}: allowed a Box (pulsecal actions are Box(-1, 1))")
    if norm is not None and norm.mean.shape != policy.observation_space.shape:
        raise ValueError(
            f"normalisation shape {norm.mean.shape}: allowed the observation shape {policy.observation_space.shape}"
        )
    action_space = policy.action_space
    policy = policy.to("cpu")
    policy.set_training_mode(False)
    post = _Post(norm, action_space, bool(policy.squash_output))
    recurrent = _is_recurrent(policy)
    actor: th.nn.Module = _RecurrentActor(policy, post) if recurrent else _FeedForwardActor(policy, post)
    return actor.eval(), recurrent


def _example_inputs(model: BaseAlgorithm, recurrent: bool) -> tuple[th.Tensor, ...]:
    obs_shape = tuple(model.policy.observation_space.shape or ())
    obs = th.zeros((2, *obs_shape), dtype=th.float64)
    if not recurrent:
        return (obs,)
    n_layers, _, hidden = model.policy.lstm_hidden_state_shape  # type: ignore[misc]
    h = th.zeros((n_layers, 2, hidden), dtype=th.float32)
    return (obs, h, h.clone())


def _onnx_bytes(actor: th.nn.Module, inputs: tuple[th.Tensor, ...], recurrent: bool, opset: int) -> bytes:
    input_names = ["observation", "lstm_h", "lstm_c"] if recurrent else ["observation"]
    output_names = ["action", "lstm_h_out", "lstm_c_out"] if recurrent else ["action"]
    dynamic_axes: dict[str, dict[int, str]] = {"observation": {0: "batch"}, "action": {0: "batch"}}
    if recurrent:
        for name in ("lstm_h", "lstm_c", "lstm_h_out", "lstm_c_out"):
            dynamic_axes[name] = {1: "batch"}
    with tempfile.TemporaryDirectory() as tmp, _quiet_tracing(), th.no_grad():
        path = Path(tmp) / ONNX_NAME
        th.onnx.export(
            actor,
            inputs,
            path,
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
        data = path.read_bytes()
    import onnx  # only the exporter needs the checker; the runner never imports onnx

    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    return data


def _torchscript_bytes(actor: th.nn.Module, inputs: tuple[th.Tensor, ...]) -> bytes:
    buffer = io.BytesIO()
    with _quiet_tracing(), th.no_grad():
        traced = th.jit.trace(actor, inputs, check_trace=False)
        th.jit.save(traced, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- parity


def sample_observations(space: spaces.Box, n: int, rng: np.random.Generator, *, beyond: float = 0.5) -> NDArray[np.float64]:
    """``n`` observations (float64, shape (n, *space.shape)) in and beyond ``space``.

    Bounded coordinates are drawn uniformly from the box widened by ``beyond`` of its width
    on each side, so about half the samples leave it; unbounded ones from N(0, 10²).
    """
    shape = tuple(space.shape or ())
    low = np.broadcast_to(np.asarray(space.low, dtype=np.float64), shape)
    high = np.broadcast_to(np.asarray(space.high, dtype=np.float64), shape)
    bounded = np.isfinite(low) & np.isfinite(high)
    width = np.where(bounded, high - low, 0.0)
    lo = np.where(bounded, low - beyond * width, 0.0)
    hi = np.where(bounded, high + beyond * width, 0.0)
    uniform = rng.uniform(size=(n, *shape)) * (hi - lo) + lo
    normal = rng.normal(scale=10.0, size=(n, *shape))
    return np.where(bounded, uniform, normal)


def reference_actions(
    model: BaseAlgorithm, vec_normalize: VecNormalize | ObservationNormalisation | None, observations: NDArray[Any]
) -> NDArray[np.float32]:
    """SB3's deterministic actions for a batch of raw observations (feed-forward policies).

    This is the ground truth the export is checked against: ``model.predict`` on the
    observation as VecNormalize would hand it to the policy.
    """
    obs = _normalised(vec_normalize, observations)
    actions, _ = model.predict(obs, deterministic=True)
    return np.asarray(actions, dtype=np.float32)


def _normalised(vec_normalize: VecNormalize | ObservationNormalisation | None, observations: NDArray[Any]) -> NDArray[Any]:
    if vec_normalize is None:
        return observations
    if isinstance(vec_normalize, ObservationNormalisation):
        return vec_normalize.apply(observations)
    return np.asarray(vec_normalize.normalize_obs(observations))


def _check_graph(
    data: bytes,
    model: BaseAlgorithm,
    norm: ObservationNormalisation | None,
    recurrent: bool,
    samples: int,
    tolerance: float,
    seed: int,
) -> ExportCheck:
    """Run the serialised graph in onnxruntime against SB3 on random observations."""
    from pulsecal.agents.runner import _make_session

    # The very session settings the lab runner uses, so the check covers what the lab runs.
    session = _make_session(data)
    rng = np.random.default_rng(seed)
    space = model.policy.observation_space
    assert isinstance(space, spaces.Box)
    obs = sample_observations(space, samples, rng)
    if recurrent:
        n_layers, _, hidden = model.policy.lstm_hidden_state_shape  # type: ignore[misc]
        h = rng.normal(size=(n_layers, samples, hidden)).astype(np.float32)
        c = rng.normal(size=(n_layers, samples, hidden)).astype(np.float32)
        expected, next_state = model.predict(
            _normalised(norm, obs), state=(h, c), episode_start=np.zeros(samples, dtype=bool), deterministic=True
        )
        assert next_state is not None
        eh, ec = next_state
        got, gh, gc = session.run(None, {"observation": obs, "lstm_h": h, "lstm_c": c})
        diff = max(_max_abs(got, expected), _max_abs(gh, eh), _max_abs(gc, ec))
    else:
        expected = reference_actions(model, norm, obs)
        (got,) = session.run(None, {"observation": obs})
        diff = _max_abs(got, expected)
    if not diff <= tolerance:
        raise RuntimeError(
            f"exported graph differs from SB3 predict by {diff:.3g} on {samples} observations: "
            f"allowed <= {tolerance:g}; nothing was written"
        )
    return ExportCheck(samples=samples, max_abs_diff=diff, tolerance=tolerance)


def _max_abs(a: Any, b: Any) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(a.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


# --------------------------------------------------------------------------- manifest


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy -> lists/scalars, dataclasses -> dicts, non-finite -> strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _bounds_list(flat: NDArray[np.float64]) -> Any:
    """Box bounds as nested JSON lists: an infinite bound is ``null`` (JSON has no infinity)."""
    if flat.ndim == 0:
        return None if not math.isfinite(float(flat)) else float(flat)  # type: ignore[return-value]
    return [_bounds_list(v) for v in flat]


def _layout(
    shape: tuple[int, ...], labels: Sequence[str] | None, units: Sequence[str] | None, prefix: str
) -> tuple[list[str], list[str]]:
    size = int(np.prod(shape)) if shape else 1
    names = list(labels) if labels is not None else [f"{prefix}[{i}]" for i in range(size)]
    unit_list = list(units) if units is not None else ["" for _ in range(size)]
    for what, seq in ((f"{prefix} labels", names), (f"{prefix} units", unit_list)):
        if len(seq) != size:
            raise ValueError(f"{what} has {len(seq)} entries: allowed {size} (one per element of shape {shape})")
    return names, unit_list


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def _git_revision() -> str | None:
    """The source tree's commit at export time (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None


def _env_version(env_id: str | None) -> int | None:
    match = re.search(r"-v(\d+)$", env_id or "")
    return int(match.group(1)) if match else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_policy(
    model: BaseAlgorithm,
    out_dir: str | Path,
    *,
    vec_normalize: VecNormalize | ObservationNormalisation | None = None,
    metadata: ExportMetadata | None = None,
    torchscript: bool = False,
    opset: int = DEFAULT_OPSET,
    check_samples: int = 2000,
    tolerance: float = 1e-5,
    overwrite: bool = False,
) -> Path:
    """Write ``policy.onnx`` + ``manifest.json`` (+ ``policy.pt``) for ``model`` into ``out_dir``.

    Args:
        model: a trained SB3 / sb3-contrib algorithm with Box observation and action spaces
            (PPO, A2C, SAC, TD3, DDPG, RecurrentPPO).
        out_dir: the folder to create; it must not exist or be empty unless ``overwrite``.
        vec_normalize: the VecNormalize the model was trained behind (its observation
            statistics are folded into the graph), or its statistics, or None.
        metadata: env id, layout names/units, pulse/device/safety description, training
            config, seed, provenance; see :func:`metadata_from_env`.
        torchscript: also write ``policy.pt``, a TorchScript trace of the same computation.
        opset: ONNX opset of the graph.
        check_samples: random observations (in and beyond the observation box) on which the
            graph must reproduce ``model.predict`` before anything is written.
        tolerance: largest allowed absolute action difference in that check.
        overwrite: replace the files of an existing export in ``out_dir``.

    Returns:
        The folder, ready for :func:`pulsecal.agents.runner.load_policy`.
    """
    meta = metadata or ExportMetadata()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: allowed a new or empty folder (or overwrite=True)")
    norm = (
        ObservationNormalisation.from_vec_normalize(vec_normalize)
        if isinstance(vec_normalize, VecNormalize)
        else vec_normalize
    )
    actor, recurrent = _build_actor(model, norm)
    inputs = _example_inputs(model, recurrent)
    onnx_data = _onnx_bytes(actor, inputs, recurrent, opset)
    check = _check_graph(onnx_data, model, norm, recurrent, check_samples, tolerance, seed=0)

    files: dict[str, bytes] = {ONNX_NAME: onnx_data}
    if torchscript:
        files[TORCHSCRIPT_NAME] = _torchscript_bytes(actor, inputs)

    manifest = _manifest(model, norm, meta, recurrent, opset, check, files)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    # The folder must load with the lab runner exactly as it will in the lab.
    from pulsecal.agents.runner import load_policy

    load_policy(out)
    return out


def _manifest(
    model: BaseAlgorithm,
    norm: ObservationNormalisation | None,
    meta: ExportMetadata,
    recurrent: bool,
    opset: int,
    check: ExportCheck,
    files: Mapping[str, bytes],
) -> dict[str, Any]:
    policy = model.policy
    obs_space, act_space = policy.observation_space, policy.action_space
    assert isinstance(obs_space, spaces.Box) and isinstance(act_space, spaces.Box)
    obs_shape = tuple(int(s) for s in obs_space.shape)
    act_shape = tuple(int(s) for s in act_space.shape)
    obs_labels, obs_units = _layout(obs_shape, meta.observation_labels, meta.observation_units, "observation")
    act_labels, act_units = _layout(act_shape, meta.action_labels, meta.action_units, "action")

    graph_inputs: dict[str, Any] = {"observation": {"dtype": "float64", "shape": ["batch", *obs_shape]}}
    graph_outputs: dict[str, Any] = {"action": {"dtype": "float32", "shape": ["batch", *act_shape]}}
    recurrent_state = None
    if recurrent:
        n_layers, _, hidden = policy.lstm_hidden_state_shape  # type: ignore[misc]
        state_shape = [int(n_layers), "batch", int(hidden)]
        for name in ("lstm_h", "lstm_c"):
            graph_inputs[name] = {"dtype": "float32", "shape": state_shape}
            graph_outputs[f"{name}_out"] = {"dtype": "float32", "shape": state_shape}
        recurrent_state = {
            "inputs": ["lstm_h", "lstm_c"],
            "outputs": ["lstm_h_out", "lstm_c_out"],
            "shape": [int(n_layers), 1, int(hidden)],
            "dtype": "float32",
            "initial": "zeros",
            "reset": "start every episode from the initial (zero) state, as SB3 does on episode_start",
        }

    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "env": {
            "id": meta.env_id,
            "version": _env_version(meta.env_id),
            "kwargs": _jsonable(meta.env_kwargs),
            "description": _jsonable(meta.env_description),
        },
        "algorithm": {
            "name": type(model).__name__,
            "policy_class": type(policy).__name__,
            "recurrent": recurrent,
            "deterministic": True,
        },
        "observation": {
            "shape": list(obs_shape),
            "space_dtype": str(obs_space.dtype),
            "low": _bounds_list(np.asarray(obs_space.low, dtype=np.float64)),
            "high": _bounds_list(np.asarray(obs_space.high, dtype=np.float64)),
            "labels": obs_labels,
            "units": obs_units,
            "accepted_dtypes": ["float16", "float32", "float64"],
            "normalisation": None if norm is None else {**norm.to_json(), "folded_into_graph": True},
        },
        "action": {
            "shape": list(act_shape),
            "dtype": "float32",
            "low": _bounds_list(np.asarray(act_space.low, dtype=np.float64)),
            "high": _bounds_list(np.asarray(act_space.high, dtype=np.float64)),
            "labels": act_labels,
            "units": act_units,
            "postprocess": {
                "kind": "unscale_tanh_then_clip" if policy.squash_output else "clip",
                "formula": (
                    "clip(low + 0.5 * (a + 1) * (high - low), low, high)" if policy.squash_output else "clip(a, low, high)"
                ),
                "folded_into_graph": True,
            },
        },
        "recurrent_state": recurrent_state,
        "graph": {
            "file": ONNX_NAME,
            "format": "onnx",
            "opset": opset,
            "exporter": f"torch.onnx.export(dynamo=False) torch {th.__version__}",
            "inputs": graph_inputs,
            "outputs": graph_outputs,
            "torchscript": TORCHSCRIPT_NAME if TORCHSCRIPT_NAME in files else None,
        },
        "pulse": _jsonable(meta.pulse),
        "device": _jsonable(meta.device),
        "safety": _jsonable(meta.safety),
        "training": {
            "config": _jsonable(meta.training_config),
            "seed": meta.seed,
            "num_timesteps": int(model.num_timesteps),
            "versions": _jsonable(meta.training_versions),
            "git_revision": meta.git_revision,
            "source": _jsonable(meta.source),
        },
        "provenance": {"export_git_revision": _git_revision(), "export_versions": _package_versions()},
        "export_check": dataclasses.asdict(check),
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in sorted(files.items())},
    }
    manifest["manifest_sha256"] = manifest_digest(manifest)
    return manifest


# --------------------------------------------------------------------------- run dirs

_REVISION = re.compile(r"^(?P<stem>.+?)(?:-r(?P<k>\d+))?(?P<suffix>\.[a-z]+)$")


def _latest(run_dir: Path, name: str) -> Path | None:
    """``name`` or its newest ``-r<k>`` sibling (a resumed run never overwrites, it adds -r<k>)."""
    stem, suffix = name.rsplit(".", 1)
    best: tuple[int, Path] | None = None
    for path in run_dir.glob(f"{stem}*.{suffix}"):
        match = _REVISION.match(path.name)
        if match is None or match["stem"] != stem or match["suffix"] != f".{suffix}":
            continue
        k = int(match["k"] or 0)
        if best is None or k > best[0]:
            best = (k, path)
    return None if best is None else best[1]


def read_normalisation(npz_path: str | Path) -> ObservationNormalisation | None:
    """Observation statistics stored by ``pulsecal.agents.persistence.save_normalization``
    (``.npz`` read with ``allow_pickle=False`` + ``.json`` settings); None if not normalised."""
    path = Path(npz_path)
    settings = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    if settings.get("format") != "pulsecal-vecnormalize-1":
        raise ValueError(f"{path.with_suffix('.json')}: format {settings.get('format')!r}: allowed 'pulsecal-vecnormalize-1'")
    if not settings.get("norm_obs"):
        return None
    with np.load(path, allow_pickle=False) as data:
        mean, var = np.array(data["obs_mean"]), np.array(data["obs_var"])
    return ObservationNormalisation(
        mean=mean, var=var, epsilon=float(settings["epsilon"]), clip_obs=float(settings["clip_obs"])
    )


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    checkpoint: str | int | None = None,
    torchscript: bool = False,
    overwrite: bool = False,
) -> Path:
    """Export the policy of a ``pulsecal-train`` run directory.

    Reads the final model named by the newest ``metrics*.json`` (or, with ``checkpoint``
    ``"latest"`` or a step number, a checkpoint from ``checkpoints/``), its pickle-free
    normalisation statistics, the newest resolved ``config*.yaml`` (``yaml.safe_load``)
    and ``provenance*.json`` (seed, package versions, git revision, env id). The env is
    built once, with the run's env kwargs, only to read its labels and description; the
    labels are used only if its spaces equal the model's.

    Args:
        run_dir: the run directory.
        out_dir: where to write; default ``<run_dir>/export`` (``export-step_<N>`` for a checkpoint).
        checkpoint: None for the final model, ``"latest"`` or a step number.
        torchscript: also write ``policy.pt``.
        overwrite: replace an existing export.
    """
    import yaml

    from pulsecal.agents.factory import load_algorithm
    from pulsecal.agents.persistence import list_checkpoints

    run = Path(run_dir)
    config_path = _latest(run, "config.yaml")
    if config_path is None:
        raise FileNotFoundError(f"{run}: no config.yaml: allowed a pulsecal-train run directory")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    provenance_path = _latest(run, "provenance.json")
    provenance = json.loads(provenance_path.read_text(encoding="utf-8")) if provenance_path else {}

    step: int | None = None
    if checkpoint is None:
        metrics_path = _latest(run, "metrics.json")
        if metrics_path is None:
            raise FileNotFoundError(f"{run}: no metrics.json (the run did not finish): pass checkpoint='latest'")
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        model_path = run / str(metrics["model"])
        norm_path = None if metrics.get("normalization") is None else run / str(metrics["normalization"])
    else:
        found = list_checkpoints(run / "checkpoints")
        if checkpoint != "latest":
            found = [c for c in found if c.step == int(checkpoint)]
        if not found:
            raise FileNotFoundError(f"{run / 'checkpoints'}: no complete checkpoint {checkpoint!r}")
        chosen = found[-1]
        model_path, norm_path, step = chosen.model, chosen.normalization, chosen.step

    algo = str(provenance.get("algo") or config.get("agent", {}).get("name"))
    model = load_algorithm(algo, model_path)
    norm = None if norm_path is None else read_normalisation(norm_path)

    env_id = provenance.get("env_id") or config.get("env", {}).get("id")
    env_kwargs = provenance.get("env_kwargs", config.get("env", {}).get("kwargs") or {})
    meta = _metadata_for_run(model, env_id, env_kwargs)
    sources = {"model": model_path, **({"normalisation": norm_path} if norm_path else {})}
    device = dict(meta.device or {})
    # The run may override preset fields (t1_s, ...) through reset options the env built
    # here does not see; the run's own device config is authoritative.
    device["run_config"] = config.get("device")
    meta = dataclasses.replace(
        meta,
        device=device,
        env_id=env_id,
        env_kwargs=env_kwargs,
        training_config=config,
        seed=provenance.get("seed", config.get("seed")),
        training_versions=provenance.get("packages"),
        git_revision=provenance.get("git_revision"),
        source={
            "run_dir": str(run.resolve()),
            "checkpoint_step": step,
            "command": provenance.get("argv"),
            **{
                key: {"file": str(path.relative_to(run)), "sha256": _sha256(path.read_bytes())}
                for key, path in sources.items()
            },
        },
    )
    if out_dir is None:
        out_dir = run / ("export" if step is None else f"export-step_{step}")
    return export_policy(model, out_dir, vec_normalize=norm, metadata=meta, torchscript=torchscript, overwrite=overwrite)


def _metadata_for_run(model: BaseAlgorithm, env_id: str | None, env_kwargs: Mapping[str, Any]) -> ExportMetadata:
    """Labels and description from the run's env, if it can be built and its spaces are the model's."""
    if env_id is None:
        return ExportMetadata()
    import gymnasium as gym

    try:
        import pulsecal.envs  # noqa: F401  (registers pulsecal/<Name>-v<N>)
    except ImportError:
        pass
    try:
        env = gym.make(env_id, **dict(env_kwargs))
    except Exception as err:  # the env is only a source of labels; the export stands without it
        warnings.warn(f"could not build {env_id!r} to read its labels ({err}); using generic labels", stacklevel=3)
        return ExportMetadata(env_id=env_id)
    try:
        same = env.observation_space == model.observation_space and env.action_space == model.action_space
        if not same:
            warnings.warn(f"{env_id!r} built with the run's kwargs has other spaces than the model; generic labels", stacklevel=3)
            return ExportMetadata(env_id=env_id)
        return metadata_from_env(env)
    finally:
        env.close()
