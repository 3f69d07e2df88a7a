"""The ``pulsecal-replay`` config: typed schemas of the replay entry config and of every
backend and policy config group, stored in Hydra's ConfigStore on import, and the
resolvers ``replay.yaml`` uses.

A backend or policy config names what builds it (``_target_``: a class or factory,
called by ``hydra.utils.instantiate`` with the config's other keys) and is typed by
one schema here, so a misspelt key or a wrong type fails at compose time naming
``backend.<key>`` or ``policy.<key>``. Adding a backend is one adapter module with its
factory plus one ``configs/backend/<name>.yaml`` (and its schema, registered below).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from pulsecal.configs.schema import ConfigError


@dataclass
class BackendConf:
    _target_: str = MISSING
    kind: str = MISSING  # names the backend in the journal and report; picks the sweep mode
    limits: dict[str, Any] = field(default_factory=dict)  # SafetyLimits fields over the defaults
    env: dict[str, Any] = field(default_factory=dict)  # env settings this backend needs
    retry: dict[str, Any] = field(default_factory=dict)  # RetryPolicy fields over the defaults


@dataclass
class SimulatedBackendConf(BackendConf):
    _target_: str = "pulsecal.hardware.simulated_session.simulated_backend"
    kind: str = "simulated"
    preset: str = "transmon_20ns"
    seed: int = 0
    fault_rate: float = 0.0
    open_system: bool = True
    amplitude_scale: float = 1.0
    detuning_hz: float | None = None
    # Qubit sweeps (qubit != null): DeviceSampler ranges over its defaults, e.g.
    # {amplitude_error: [-0.05, 0.05]}; each qubit's device is drawn from (seed, qubit).
    sampler: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimulatedMultiQubitBackendConf(BackendConf):
    _target_: str = "pulsecal.hardware.adapters.simulated.simulated_multi_qubit_backend"
    kind: str = "simulated_multi_qubit"
    preset: str = "two_transmons_cz"
    seed: int = 0
    fault_rate: float = 0.0
    open_system: bool = True


@dataclass
class QibolabBackendConf(BackendConf):
    _target_: str = "pulsecal.hardware.adapters.qibolab.qibolab_backend"
    kind: str = "qibolab"
    platform: str = "pulsecal_emulator"
    platforms_dir: str | None = None  # None: $QIBOLAB_PLATFORMS, else the shipped emulator platforms
    virtual_z_sign: int = -1
    emulator_seed: int | None = None  # seeds the generator qibolab's emulator samples shots from


@dataclass
class BraketBackendConf(BackendConf):
    _target_: str = "pulsecal.hardware.adapters.openpulse.braket_backend"
    kind: str = "braket"
    properties: str = "braket_rigetti_pulse"
    device_arn: str | None = None
    s3_bucket: str | None = None  # task results; None: the AWS session's default bucket
    s3_prefix: str = "pulsecal-tasks"


@dataclass
class ReplayPolicyConf:
    _target_: str = MISSING
    kind: str = MISSING  # names the policy kind; "onnx" and "sb3" record their training env
    # Run a trained policy on a device preset other than its training one (refused otherwise).
    allow_device_mismatch: bool = False


@dataclass
class ScriptedPolicyConf(ReplayPolicyConf):
    _target_: str = "pulsecal.agents.policies.scripted.ScriptedPolicy"
    kind: str = "scripted"
    gain: float = 0.8
    explore: float = 0.3


@dataclass
class ScriptedCZPolicyConf(ReplayPolicyConf):
    _target_: str = "pulsecal.agents.policies.cz_scripted.ScriptedCZPolicy"
    kind: str = "scripted_cz"
    gain: float = 0.8
    phase_after_rad: float = 0.6


@dataclass
class ScriptedECRPolicyConf(ReplayPolicyConf):
    _target_: str = "pulsecal.agents.policies.ecr_scripted.ScriptedECRPolicy"
    kind: str = "scripted_ecr"
    gain: float = 0.8


@dataclass
class SB3PolicyConf(ReplayPolicyConf):
    _target_: str = "pulsecal.agents.policies.sb3.SB3Policy"
    kind: str = "sb3"
    run_dir: str = MISSING
    model: str = "model.zip"
    normalization: str | None = "vecnormalize.npz"
    algo: str | None = None


@dataclass
class OnnxPolicyConf(ReplayPolicyConf):
    _target_: str = "pulsecal.agents.policies.onnx.OnnxPolicy"
    kind: str = "onnx"
    folder: str = MISSING  # a path, or pkg://<package>/<path> for a shipped policy
    out_of_bounds: str = "warn"


@dataclass
class MiscalibrationConf:
    amplitude_rel: float = 0.04
    beta_rel: float = 0.4
    detuning_hz: float = 0.5e6
    phase: float = 0.0


@dataclass
class SweepConf:
    """Per-qubit calibration sweeps (``qubit`` set): see ``pulsecal.hardware.sweep``."""

    name: str = "sweep"
    dir: str = MISSING
    total_shots: int | None = None  # the global shot budget over all qubits; null: none
    budget_headroom: float = 0.1
    attempts: int = 3  # tries per qubit in one run (a failed session resumes from its journal)
    params_store: str | None = None  # null: neither read nor written
    start_from_store: bool = True
    qubits: list[int] | None = None  # the qubits the summary expects (missing ones: pending)
    coherence_factor: float = 2.0
    plots: bool = True
    # Tags this multirun's outcome lines (agents.pipelines.sweep.record_outcome); set once
    # per multirun by replay.yaml's ${now:...}.
    run_id: str = ""


@dataclass
class ReplayConf:
    backend: Any = MISSING
    policy: Any = MISSING
    session_id: str = "replay"
    folder: str = MISSING
    seed: int = 0
    max_steps: int = 8
    budget_shots: int | None = None
    initial_params: list[float] | None = None  # None: textbook + miscalibration
    miscalibration: MiscalibrationConf = field(default_factory=MiscalibrationConf)
    # The session's env settings: ``env`` (explicit, null: unset) over the policy's training
    # settings (an exported policy's manifest, an SB3 run's config.yaml) over ``backend.env``
    # over ``env_defaults``; see ``pulsecal.hardware.replay.merge_session_env``.
    env: dict[str, Any] = field(default_factory=dict)
    env_defaults: dict[str, Any] = field(default_factory=dict)
    # The GateCalibration version the policy was trained on; None: the exported policy's
    # manifest says, else v0. Set against a manifest that names another version: an error.
    env_id: str | None = None
    # The device's day-ledger file, shared by all its sessions: the per-day shot limit of
    # backend.limits bounds them together. None: the session's own ledger (sweeps default
    # to <sweep.dir>/device_day_ledger.json).
    device_ledger: str | None = None
    plots: bool = True
    # verify: end with a verdict (docs/verification.md) from checks with ``verification``'s
    # VerificationSettings fields ({}: the defaults, the trusted checks) and the qubit's (T1, T2) in s for its
    # coherence limit (``stated_coherence``; null: the backend's device model, if it has one).
    verify: bool = False
    verification: dict[str, Any] = field(default_factory=dict)
    stated_coherence: list[float] | None = None
    qubit: int | None = None  # set: one qubit's session of a sweep in <sweep.dir>/q<qubit>
    sweep: SweepConf = field(default_factory=SweepConf)


def register_replay_configs() -> None:
    """Store the replay schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="replay_schema", node=ReplayConf)
    cs.store(group="backend", name="simulated_schema", node=SimulatedBackendConf)
    cs.store(group="backend", name="simulated_multi_qubit_schema", node=SimulatedMultiQubitBackendConf)
    cs.store(group="backend", name="qibolab_schema", node=QibolabBackendConf)
    cs.store(group="backend", name="braket_schema", node=BraketBackendConf)
    cs.store(group="policy", name="scripted_schema", node=ScriptedPolicyConf)
    cs.store(group="policy", name="scripted_cz_schema", node=ScriptedCZPolicyConf)
    cs.store(group="policy", name="scripted_ecr_schema", node=ScriptedECRPolicyConf)
    cs.store(group="policy", name="sb3_schema", node=SB3PolicyConf)
    cs.store(group="policy", name="onnx_schema", node=OnnxPolicyConf)


register_replay_configs()

# A session or sweep name becomes a folder name: a plain name, so that neither Hydra nor
# the session ever writes outside the folder its config names.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def _checked_name(key: str, value: Any) -> str:
    """``${pulsecal.name:<key>,<value>}``: ``value`` if it is a plain name, else a
    ``ConfigError`` naming ``key``; resolved before Hydra or the session creates a folder."""
    text = str(value)
    if not _NAME.match(text) or text in (".", ".."):
        raise ConfigError(key, f"{text!r} is out of range: allowed a plain name of letters, digits and "
                               "'._-' (no '/', not '..'), at most 128 characters")
    return text


def is_multirun(mode: Any) -> bool:
    """Whether Hydra's ``hydra.mode`` (a ``RunMode`` or its name) is a multirun."""
    return str(mode).rsplit(".", 1)[-1] == "MULTIRUN"


def _by_mode(mode: Any, multirun: Any, run: Any) -> Any:
    """``${pulsecal.by_mode:${hydra:mode},<multirun value>,<run value>}``."""
    return multirun if is_multirun(mode) else run


def register_replay_resolvers() -> None:
    """The resolvers ``replay.yaml`` uses (idempotent)."""
    OmegaConf.register_new_resolver("pulsecal.name", _checked_name, replace=True)
    OmegaConf.register_new_resolver("pulsecal.by_mode", _by_mode, replace=True)


register_replay_resolvers()
