"""The env a policy was trained in, and the env settings of a session that replays it.

A session runs in the env settings its policy was trained under (gate length, shot budget,
rounds, ladders, estimator constants, ...): an exported policy's manifest records the
env's whole resolved config (``env.description.config``, or where a manifest has none
only the constructor kwargs, ``env.kwargs``), a training run directory its resolved Hydra
``config.yaml``. Precedence when the session's env is built: explicit settings of the
replay config > the policy's training settings > the replay's defaults (those of the
replay config and of the backend). An explicit setting that would change the policy's
observation or action layout is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.envs.contract import json_form, probes_from_json

from ..package_data import resolve_path
from .settings import ENV_FAMILY, session_env_class

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
        device_preset: the device preset training ran on (its device class; None: not
            recorded). A manifest's ``device.run_config.preset`` (the run's own device
            config) wins over its ``device.preset`` (the env's), which exports written
            before the two agreed took from the default env.
    """

    env_id: str | None
    settings: Mapping[str, Any]
    source: str
    device_preset: str | None = None


def env_to_kwargs(env: Mapping[str, Any]) -> dict[str, Any]:
    """Env keyword arguments from their JSON form (config, manifest, ``session.json``)."""
    out = {k: v for k, v in env.items() if v is not None}
    if "probes" in out:
        out["probes"] = probes_from_json(out["probes"])
    for k in ("parameters", "miscalibration", "max_step"):
        if k in out:
            out[k] = tuple(out[k])
    return out


def _norm(key: Any, value: Any) -> Any:
    """``value`` in JSON form; probes as full records (a config may leave out depth or delay)."""
    if key == "probes" and isinstance(value, list | tuple):
        value = probes_from_json(value) if value and isinstance(value[0], Mapping) else value
    return json_form(value)


def _session_part(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _norm(k, v) for k, v in settings.items() if k not in SESSION_ENV_KEYS and v is not None}


def _env_config(env_id: str, kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The env of ``env_id`` built with ``kwargs`` and its resolved settings (JSON form,
    from the env's calibration state)."""
    env = session_env_class(env_id)(**env_to_kwargs(kwargs))
    return env, dict(env.unwrapped.calibration_state().settings)


def trained_env_of_export(folder: str | Path) -> TrainedEnv:
    """The training env of an exported policy folder, from its ``manifest.json``."""
    path = resolve_path(folder) / "manifest.json"
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
    return TrainedEnv(str(env_id) if env_id else None, _session_part(settings), str(path),
                      _manifest_preset(manifest))


def _manifest_preset(manifest: Mapping[str, Any]) -> str | None:
    device = manifest.get("device")
    if not isinstance(device, Mapping):
        return None
    run = device.get("run_config")
    preset = run.get("preset") if isinstance(run, Mapping) else None
    preset = preset if preset is not None else device.get("preset")
    return str(preset) if preset else None


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
    device = cfg.get("device")
    preset = device.get("preset") if isinstance(device, dict) else None
    kwargs = dict(env.get("kwargs") or {})
    if env.get("shots_per_probe") is not None:
        kwargs.setdefault("shots_per_probe", env["shots_per_probe"])
    env_id = str(env["id"]) if env.get("id") else None
    settings = _session_part(kwargs)
    if env_id is not None and env_id.startswith(ENV_FAMILY + "-v"):
        try:
            settings = _session_part(_env_config(env_id, settings)[1])
        except (TypeError, ValueError):
            pass  # what the run recorded stands; building the session env reports the error
    return TrainedEnv(env_id, settings, str(path), str(preset) if preset else None)


def trained_env(policy: Mapping[str, Any]) -> TrainedEnv | None:
    """The training env of a replay config's ``policy`` (None: a scripted policy)."""
    kind = policy.get("kind")
    if kind == "onnx":
        return trained_env_of_export(policy["folder"])
    if kind == "sb3":
        return trained_env_of_run(policy["run_dir"])
    return None


def _same(a: Any, b: Any) -> bool:
    a, b = json_form(a), json_form(b)
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




def check_device_class(trained: TrainedEnv | None, session: Mapping[str, Any], *,
                       allow_mismatch: bool = False) -> list[str]:
    """Refuse a session whose device class is not the one the policy was trained on.

    A device class is a device preset (``pulsecal.envs.presets``): its sample time, drive
    strength, anharmonicity and default gate length are what the policy's actions and
    observations mean. ``session`` maps the replay config keys that name the session's
    device (``env.device``, ``backend.preset``, ...) to their values (None: not set).

    Returns the console lines of a mismatch that ``allow_mismatch`` lets through (empty
    when everything matches); raises ``ValueError`` naming every mismatching key, the
    policy's preset and where it was read, and how to override.
    """
    want = None if trained is None else trained.device_preset
    if want is None:
        return []
    wrong = {k: v for k, v in session.items() if v is not None and str(v) != want}
    if not wrong:
        return []
    named = ", ".join(f"{k}={v!r}" for k, v in wrong.items())
    assert trained is not None
    if allow_mismatch:
        return [f"warning: {named}: the policy was trained on device {want!r} ({trained.source}); "
                "running it anyway (policy.allow_device_mismatch=true)"]
    # The session env's device is set by env.device whichever key it came from (the
    # explicit setting wins over backend.env and env_defaults).
    fix = " ".join(dict.fromkeys(f"{'env.device' if k.endswith('device') else k}={want}" for k in wrong))
    raise ValueError(f"{named}: the policy was trained on device {want!r} ({trained.source}): allowed "
                     f"{want!r} ({fix}), or policy.allow_device_mismatch=true to run it on another device")
