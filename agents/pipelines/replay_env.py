"""A replay session's env: its id (from the config or the policy it runs), its settings
merged from the config, the policy's training and the backend, the env built from them
with a refused setting named ``env.<key>``, and the warning for a session shorter than
the policy's episode.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Mapping
from typing import Any

from pulsecal.configs.schema import ConfigError

from .replay_build import refused_setting

_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def resolve_env_id(c: dict[str, Any], policy: Any) -> str:
    """The env id of a session: ``env_id`` from the config, else the one the policy names
    (an exported policy's manifest, an SB3 run's config.yaml), else GateCalibration-v0; a
    config that contradicts the policy's own id is refused (its observation and action
    spaces would not match)."""
    from pulsecal.hardware import replay as rp

    own = getattr(policy, "env_id", None)
    if own is None and getattr(policy, "run_dir", None) is not None:
        own = rp.trained_env_of_run(policy.run_dir).env_id
    return _env_id(c.get("env_id"), own)


def _env_id(want: Any, own: Any) -> str:
    from pulsecal.hardware import replay as rp

    if want is not None and own is not None and str(want) != str(own):
        raise ValueError(f"env_id={want!r}: allowed the policy's own {own!r} (its manifest), or null")
    return str(want or own or rp.DEFAULT_ENV_ID)


def session_env_instance(env_id: str, env: Mapping[str, Any]) -> Any:
    """The session's env built from its settings; a setting the env refuses is a
    ``ConfigError`` named as the replay config names it (``env.<key>``)."""
    from pulsecal.hardware.replay import session_env_class

    cls = session_env_class(env_id)
    try:
        return cls(**env)
    except TypeError as err:
        # An option the env does not take: name it as the config does, with the env's options.
        m = _UNEXPECTED.search(str(err))
        if m and m.group(1) in env:
            config = getattr(getattr(cls, "core_class", None), "config_class", None)
            fields = inspect.signature(config).parameters if config is not None else {}
            params = sorted({*fields, *inspect.signature(cls).parameters} - {"self", "kwargs"})
            raise ConfigError(f"env.{m.group(1)}", f"is not an option of {env_id}: allowed {params}") from None
        raise
    except ValueError as err:
        refused = refused_setting(str(err))
        if refused and refused[0] in env:
            raise ConfigError(f"env.{refused[0]}", refused[1]) from err
        if "device" in env and str(err).startswith("device preset "):
            raise ConfigError("env.device", str(err)) from err
        raise


def warn_if_cut_short(env_id: str, env: Mapping[str, Any], max_steps: int) -> None:
    """A policy whose episode ends with a step that measures nothing (its shot plan's
    ``measuring_steps`` < ``steps_per_episode``: GateCalibration-v1's last round places
    the final gate) is cut short by a session of fewer steps, before it sets that gate.
    Allowed (a lab may want a short session), so only said on stderr, naming the setting
    to change."""
    plan = session_env_instance(env_id, env).calibration_state().shot_plan
    episode, measuring = plan.steps_per_episode, plan.measuring_steps
    if episode is not None and measuring is not None and measuring < episode and max_steps < episode:
        print(f"warning: max_steps={max_steps} < the policy's episode of {episode} steps ({env_id} sets "
              f"its final gate in the last one); set max_steps={episode} to run it whole", file=sys.stderr)


def session_env(c: dict[str, Any], *, log: bool = True) -> tuple[dict[str, Any], float]:
    """The env keyword arguments of a session and its gate duration in seconds.

    Precedence: the config's explicit ``env`` (null values unset) > the settings the policy
    was trained under (``policy``: an exported folder's manifest, an SB3 run directory's
    config.yaml) > ``backend.env`` > ``env_defaults``. Session-side settings (the device
    preset, whose sample time is the backend's; truth and reward) never come from the
    policy, and an explicit setting that would change the policy's observation/action
    layout is refused naming the key. ``log`` prints which settings came from the policy.
    """
    from pulsecal.hardware import replay as rp

    defaults = {**dict(c.get("env_defaults") or {}), **dict(c["backend"].get("env") or {})}
    trained = rp.trained_env(dict(c.get("policy") or {}))
    env_id = _env_id(c.get("env_id"), trained.env_id if trained is not None else None)
    merged = rp.merge_session_env(env_id, defaults, trained, dict(c.get("env") or {}))
    mismatch = rp.check_device_class(trained, _session_devices(c, merged.settings.get("device")),
                                     allow_mismatch=bool((c.get("policy") or {}).get("allow_device_mismatch")))
    if log:
        for line in [*merged.describe(), *mismatch]:
            print(line, flush=True)
    env = rp.env_to_kwargs(merged.settings)
    try:
        gate_s = float(env.get("gate_duration_s") or _preset_gate(env.get("device", "transmon_20ns")))
    except ValueError as err:
        raise ConfigError("env.device", str(err)) from err
    return env, gate_s


def _session_devices(c: Mapping[str, Any], device: Any) -> dict[str, Any]:
    """The config keys that name the session's device preset, each with its value: the
    session env's ``device`` under the key it came from, and a simulated backend's own
    ``preset`` (the device it really simulates)."""
    if (c.get("env") or {}).get("device") is not None:
        key = "env.device"
    elif (c["backend"].get("env") or {}).get("device") is not None:
        key = "backend.env.device"
    else:
        key = "env_defaults.device"
    return {key: device, "backend.preset": c["backend"].get("preset")}


def _preset_gate(name: str) -> float:
    from pulsecal.envs.presets import get_preset

    return float(get_preset(name).gate_duration_s)
