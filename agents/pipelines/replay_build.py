"""A resolved replay config -> the objects of a session: the backend and the policy (built
with ``hydra.utils.instantiate`` from their ``_target_``), the retry policy, the safety
limit overrides, the start's miscalibration, the verification fields and the
``ReplaySettings``.

A value a library refuses is reported as a ``ConfigError`` named as the config names it
(``backend.<key>``, ``policy.<key>``, ``budget_shots``), so the console line points at
the key to change.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pulsecal.configs.schema import ConfigError

# ``Class.field=value: problem`` or ``field=value ...``: a library's refusal of one setting.
_FIELD = re.compile(r"^(?:\w+\.)?(\w+)=(.*)$", re.S)

# Keys of a backend or policy config that describe the session around the object, not
# arguments of its ``_target_`` (the calibration graph's backend sections share them).
SESSION_KEYS = frozenset({"kind", "limits", "env", "retry", "sampler", "allow_device_mismatch"})


def refused_setting(message: str) -> tuple[str, str] | None:
    """(field, problem) of a refusal written ``[Class.]field=value...``, else None."""
    m = _FIELD.match(message)
    return (m.group(1), m.group(2)) if m else None


def resolved_dict(cfg: Any) -> dict[str, Any]:
    """A composed config (or a plain mapping) as a dict with its interpolations resolved."""
    out = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def check_schema_keys(cfg: DictConfig, section: str) -> None:
    """Refuse keys of ``cfg.<section>`` that its schema does not declare.

    Composition already refuses them in config files and plain overrides; an explicit
    ``+backend.<key>=...`` is added past the schema by design, so it is caught here,
    before anything is built, with the key's name.
    """
    node = cfg.get(section)
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    if schema is None or not dataclasses.is_dataclass(schema):
        return
    allowed = [f.name for f in dataclasses.fields(schema)]
    for key in node:
        if key not in allowed:
            raise ValueError(f"{section}.{key}: not a key of {schema.__name__} (allowed {', '.join(allowed)})")


def build_backend(b: Mapping[str, Any]) -> Any:
    """The backend a resolved ``backend`` config names (its ``_target_``); an argument its
    factory refuses is a ``ConfigError`` naming ``backend.<key>``."""
    return _built("backend", b)


def build_policy(p: Mapping[str, Any]) -> Any:
    """The policy a resolved ``policy`` config names (its ``_target_``); an argument it
    refuses is a ``ConfigError`` naming ``policy.<key>``."""
    return _built("policy", p)


def _built(section: str, conf: Mapping[str, Any]) -> Any:
    from hydra.errors import InstantiationException

    for k, v in conf.items():
        if v == "???":  # MISSING, left as is by to_container
            raise ConfigError(f"{section}.{k}", f"missing: give it on the command line ({section}.{k}=...)")
    try:
        return instantiate({k: v for k, v in conf.items() if k not in SESSION_KEYS}, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__
        if not isinstance(cause, ValueError):
            raise
        refused = refused_setting(" ".join(str(cause).split()))
        if refused and refused[0] in conf:
            raise ConfigError(f"{section}.{refused[0]}", refused[1]) from cause
        for k, v in conf.items():  # a refusal that starts with the value it refused, e.g. a path
            if isinstance(v, str) and v and k != "_target_" and str(cause).startswith(v):
                raise ConfigError(f"{section}.{k}", " ".join(str(cause).split())) from cause
        raise ConfigError(section, " ".join(str(cause).split())) from cause


def backend_info(b: Mapping[str, Any]) -> dict[str, Any]:
    """What the journal and report record of a backend config (its own settings)."""
    return {k: v for k, v in b.items() if k not in ("_target_", "limits", "env", "retry")}


def retry_policy(b: Mapping[str, Any]) -> Any:
    """The ``RetryPolicy`` of a backend config: its ``retry`` fields over the defaults."""
    from pulsecal.hardware.device import RetryPolicy

    return RetryPolicy(**dict(b.get("retry") or {}))


def limit_overrides(d: Mapping[str, Any]) -> dict[str, Any]:
    """``backend.limits`` as ``SafetyLimits`` keyword arguments (YAML lists become the
    tuples its range fields hold)."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}


def checked_miscalibration(c: Mapping[str, Any]) -> dict[str, float]:
    """``miscalibration`` of a resolved config, each entry a finite number (else a
    ``ConfigError`` naming ``miscalibration.<key>``)."""
    m = dict(c["miscalibration"])
    for k, v in m.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"miscalibration.{k}", f"{v!r} is out of range: allowed a finite number")
    return m


def qubit_model(backend: Any, qubit: int) -> Any:
    """The transmon model of ``backend``'s qubit ``qubit`` for the textbook start, or None
    (a real device: the lab gives ``initial_params``): what the backend's optional
    ``transmon_model(qubit)`` says."""
    model_of = getattr(backend, "transmon_model", None)
    return model_of(qubit) if callable(model_of) else None


def verification_fields(c: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """``ReplaySettings``' verification fields from the config: ``stated_coherence``
    defaults to the backend's device model (a simulated backend states its own T1/T2)."""
    if not c.get("verify"):
        return {}
    stated = c.get("stated_coherence")
    if stated is None and model is not None:
        stated = (float(model.t1_s), float(min(model.t2_s, 2 * model.t1_s)))
    if stated is None:
        raise ConfigError("stated_coherence", "required with verification on a backend without a device "
                          "model: give the qubit's [t1_s, t2_s]")
    return {"verification": dict(c.get("verification") or {}),
            "stated_coherence": tuple(float(x) for x in stated)}


def replay_settings(c: Mapping[str, Any], start: tuple[float, ...], env: dict[str, Any], env_id: str,
                    **verification: Any) -> Any:
    """The session's ``ReplaySettings`` from a resolved config; a field it refuses is a
    ``ConfigError`` named as the config names it (``budget_shots``, not
    ``ReplaySettings.budget_shots``)."""
    from pulsecal.hardware import replay as rp

    try:
        return rp.ReplaySettings(str(c["session_id"]), int(c["seed"]), start,  # type: ignore[arg-type]
                                 max_steps=int(c["max_steps"]), budget_shots=c.get("budget_shots"), env=env,
                                 env_id=env_id, **verification)
    except ValueError as err:
        refused = refused_setting(str(err))
        if refused and refused[0] in c:
            raise ConfigError(refused[0], refused[1]) from err
        raise
