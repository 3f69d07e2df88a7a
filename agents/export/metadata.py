"""What an export's manifest says beyond the network: the observation normalisation,
the env's description of itself, and the export check."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from stable_baselines3.common.vec_env import VecNormalize

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

    Looks at ``env.spec``, at optional attributes of ``env.unwrapped``
    (``observation_labels``, ``observation_units``, ``action_labels``, ``action_units``,
    ``pulse_parametrisation``, ``device_preset``, ``device_ranges``, ``safety_limits``, ...),
    and, for pulsecal's envs, at their public ``env_description()``
    (``pulsecal.envs.contract.EnvDescription``: the env's frozen settings, the pulse family
    the actions act on, the device preset and the device ranges of randomised training).
    ``overrides`` replace fields of the result.
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
    description = {a: jsonable(getattr(unwrapped, a)) for a in _ENV_DESCRIPTION_ATTRS if getattr(unwrapped, a, None) is not None}
    describe = getattr(unwrapped, "env_description", None)
    about = describe() if callable(describe) else None
    names = getattr(about, "observation_names", None)
    if names is not None:
        values["observation_labels"] = [str(n) for n in names]
    cfg = getattr(about, "config", None)
    if cfg is not None and dataclasses.is_dataclass(cfg):
        description["config"] = jsonable(cfg)
        safety = {k: description["config"][k] for k in _SAFETY_KEYS if k in description["config"]}
        if safety:
            values["safety"] = {"trained_under": safety}
    gate = getattr(about, "gate", None)
    if gate is not None:
        # Which pulse the actions calibrate; how a unit action maps to a parameter change
        # is in the env config (``parameters``, ``max_step``) copied above.
        values["pulse"] = {
            "gate": type(gate).__name__,
            "gate_settings": jsonable(gate),
            "calibrated_parameters": jsonable(getattr(cfg, "parameters", None)),
            "max_step_per_unit_action": jsonable(getattr(cfg, "max_step", None)),
        }
    preset = getattr(about, "preset", None)
    if preset is not None:
        values["device"] = {
            "preset": getattr(preset, "name", None),
            "preset_parameters": jsonable(preset),
            "training_ranges": jsonable(getattr(about, "sampler", None)),
        }
    if description:
        values["env_description"] = description
    values.update(overrides)
    return ExportMetadata(**values)




def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy -> lists/scalars, dataclasses -> dicts, non-finite -> strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
