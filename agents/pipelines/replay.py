"""``pulsecal-replay``: a closed-loop calibration session of a policy on a backend.

    pulsecal-replay backend=simulated policy=scripted
    pulsecal-replay backend=simulated_faulty policy=scripted session_id=s2
    pulsecal-replay backend=qibolab_emulator policy=scripted
    pulsecal-replay backend=qibolab_emulator policy=onnx policy.folder=exports/ppo
    pulsecal-replay backend=qibolab_emulator policy=onnx_emulator_reference   # the shipped policy
    pulsecal-replay backend=qibolab_emulator policy=sb3 policy.run_dir=runs/<run>

Run it again with the same ``session_id`` (and ``folder``) after a crash or kill: the
session resumes from its journal (``pulsecal.hardware.replay``). The policy is a swap of
config; the backend too. This is the one place the config becomes objects: schemas below
make a wrong type or key fail at compose time, and :func:`replay` builds the backend and
the policy with ``hydra.utils.instantiate`` from their ``_target_`` and runs the session.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

from pulsecal.configs.schema import ConfigError

# -- schemas -------------------------------------------------------------------------------------
#
# A backend or policy config names what builds it (``_target_``: a class or factory,
# called by ``hydra.utils.instantiate`` with the config's other keys) and is typed by
# one schema here, so a misspelt key or a wrong type fails at compose time naming
# ``backend.<key>`` or ``policy.<key>``. Adding a backend is one adapter module with its
# factory plus one ``configs/backend/<name>.yaml`` (and its schema, registered below).


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
# ``Class.field=value: problem`` or ``field=value ...``: a library's refusal of one setting.
_FIELD = re.compile(r"^(?:\w+\.)?(\w+)=(.*)$", re.S)
_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def _checked_name(key: str, value: Any) -> str:
    """``${pulsecal.name:<key>,<value>}``: ``value`` if it is a plain name, else a
    ``ConfigError`` naming ``key``; resolved before Hydra or the session creates a folder."""
    text = str(value)
    if not _NAME.match(text) or text in (".", ".."):
        raise ConfigError(key, f"{text!r} is out of range: allowed a plain name of letters, digits and "
                               "'._-' (no '/', not '..'), at most 128 characters")
    return text


def _by_mode(mode: Any, multirun: Any, run: Any) -> Any:
    """``${pulsecal.by_mode:${hydra:mode},<multirun value>,<run value>}``."""
    return multirun if str(mode).rsplit(".", 1)[-1] == "MULTIRUN" else run


def register_replay_resolvers() -> None:
    """The resolvers ``replay.yaml`` uses (idempotent)."""
    OmegaConf.register_new_resolver("pulsecal.name", _checked_name, replace=True)
    OmegaConf.register_new_resolver("pulsecal.by_mode", _by_mode, replace=True)


register_replay_resolvers()

# Keys of a backend or policy config that describe the session around the object, not
# arguments of its ``_target_``.
_NOT_ARGUMENTS = frozenset({"kind", "limits", "env", "retry", "sampler", "allow_device_mismatch"})


# -- config -> objects ---------------------------------------------------------------------------


def _container(cfg: Any) -> dict[str, Any]:
    out = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def _instantiate(section: Mapping[str, Any]) -> Any:
    return instantiate({k: v for k, v in section.items() if k not in _NOT_ARGUMENTS}, _convert_="all")


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
        return _instantiate(conf)
    except InstantiationException as err:
        cause = err.__cause__
        if not isinstance(cause, ValueError):
            raise
        m = _FIELD.match(" ".join(str(cause).split()))
        if m and m.group(1) in conf:
            raise ConfigError(f"{section}.{m.group(1)}", m.group(2)) from cause
        for k, v in conf.items():  # a refusal that starts with the value it refused, e.g. a path
            if isinstance(v, str) and v and k != "_target_" and str(cause).startswith(v):
                raise ConfigError(f"{section}.{k}", " ".join(str(cause).split())) from cause
        raise ConfigError(section, " ".join(str(cause).split())) from cause


def backend_info(b: Mapping[str, Any]) -> dict[str, Any]:
    """What the journal and report record of a backend config (its own settings)."""
    return {k: v for k, v in b.items() if k not in ("_target_", "limits", "env", "retry")}


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


def _verification(c: Mapping[str, Any], model: Any) -> dict[str, Any]:
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


def qubit_model(backend: Any, qubit: int) -> Any:
    """The transmon model of ``backend``'s qubit ``qubit`` for the textbook start, or None
    (a real device: the lab gives ``initial_params``): what the backend's optional
    ``transmon_model(qubit)`` says."""
    model_of = getattr(backend, "transmon_model", None)
    return model_of(qubit) if callable(model_of) else None


# -- outcomes -> exit codes ----------------------------------------------------------------------
#
# What ``pulsecal-replay`` exits with (docs/lab_sessions.md has the table for users). A
# stop reason is ``pulsecal.hardware.replay.stops``'; 3 belongs to a session another
# process holds.
EXIT_CODES: dict[str, int] = {
    "finished": 0,
    "error": 1,  # unexpected: a bug (traceback) or a journal the replay cannot retrace (one line)
    "refused": 2,  # a refused config or command line; nothing was written
    "busy": 3,  # the session (or sweep qubit) is held by another process
    "budget_exhausted": 4,
    "safety_refused": 5,
    "action_out_of_range": 6,
    "backend_failed": 7,  # a job lost beyond the retry policy; rerun to resume
    "verdict_failed": 8,  # finished, but its verification's verdict is ``failed: <reason>``
}


def exit_code(result: Any) -> int:
    """The exit code of a session's ``ReplayResult`` or a sweep qubit's ``QubitOutcome``."""
    from pulsecal.hardware import sweep as sw

    stop = getattr(result, "stop", None)
    reason = stop.reason if stop is not None else getattr(result, "stop_reason", None)
    if reason is not None:
        return EXIT_CODES[reason]
    state = getattr(result, "state", sw.FINISHED)
    verdict = getattr(result, "verdict", None)
    if verdict is not None and not verdict.calibrated:
        return EXIT_CODES["verdict_failed"]
    if state == sw.FINISHED:
        return EXIT_CODES["finished"]
    if state == sw.BUSY:
        return EXIT_CODES["busy"]
    return EXIT_CODES["budget_exhausted"] if state == sw.BUDGET_EXHAUSTED else EXIT_CODES["error"]


def outcome_line(result: Any) -> str:
    """The one line the console prints for a session's ``ReplayResult`` or a sweep
    qubit's ``QubitOutcome``."""
    if hasattr(result, "qubit"):
        return (f"qubit {result.qubit}: {'skipped, ' if result.skipped else ''}{result.state} after "
                f"{result.attempts} attempt(s)" + (f": {result.error}" if result.error else ""))
    rep = result.report
    if result.stop is not None:
        then = ("rerun the same command to resume" if not result.stop.terminal
                else "a rerun reports the same; a new session_id starts afresh")
        return (f"session {rep['session_id']} stopped: {result.stop.short()}; {rep['env_steps']} steps, "
                f"{result.ledger_shots} shots; report in {result.folder} ({then})")
    return (f"session {rep['session_id']}: {rep['env_steps']} steps, {result.ledger_shots} shots, "
            f"estimated infidelity {rep['estimated_infidelity_initial']:.3g} -> "
            f"{rep['estimated_infidelity_final']:.3g}"
            + (f"; verdict {result.verdict.describe()}" if getattr(result, "verdict", None) is not None else "")
            + f"; report in {result.folder}")


def replay(cfg: DictConfig) -> Any:
    """Run (or resume) the session the composed ``replay.yaml`` describes; returns the
    ``ReplayResult``."""
    from pulsecal.hardware import replay as rp
    from pulsecal.hardware.simulated_session import simulated_truth_or_none

    if isinstance(cfg, DictConfig):
        allowed = [f.name for f in dataclasses.fields(ReplayConf)]
        for key in cfg:
            if key not in allowed:  # added with +key=...: past the schema by design
                raise ConfigError(str(key), f"unknown key (not a key of ReplayConf: allowed {', '.join(allowed)})")
        check_schema_keys(cfg, "backend")
        check_schema_keys(cfg, "policy")
    c = _container(cfg)
    if c.get("qubit") is not None:
        from pulsecal.agents.pipelines.sweep import sweep_job

        return sweep_job(c)
    b, p = dict(c["backend"]), dict(c["policy"])
    backend = build_backend(b)
    if rp.is_two_qubit(str(c.get("env_id") or "")):
        return _replay_two_qubit(cfg, c, backend, build_policy(p))
    model = qubit_model(backend, 0)
    policy = build_policy(p)  # first: a broken export fails on its own digest check
    env, gate_s = session_env(c)
    if c.get("initial_params") is not None:
        start = tuple(float(x) for x in c["initial_params"])
    elif model is not None:
        m = checked_miscalibration(c)
        # Four values: a weakly driven qubit's amplitude exceeds full scale at gate_s, and
        # the session's env chooses the longer gate it fits.
        start = rp.start_values(model, gate_s, amplitude_rel=m["amplitude_rel"], beta_rel=m["beta_rel"],
                                detuning_hz=m["detuning_hz"], phase=m["phase"])
    else:
        raise ValueError("initial_params=None: allowed only with a backend that has a device model "
                         "(simulated, qibolab emulator); give the lab's current calibration")
    env_id = resolve_env_id(c, policy)
    warn_if_cut_short(env_id, env, int(c["max_steps"]))
    try:
        settings = rp.ReplaySettings(str(c["session_id"]), int(c["seed"]), start,  # type: ignore[arg-type]
                                     max_steps=int(c["max_steps"]), budget_shots=c.get("budget_shots"), env=env,
                                     env_id=env_id, **_verification(c, model))
    except ValueError as err:  # named as the config names it: budget_shots, not ReplaySettings.budget_shots
        field_error = _FIELD.match(str(err))
        if field_error and field_error.group(1) in c:
            raise ConfigError(field_error.group(1), field_error.group(2)) from err
        raise
    limits = rp.default_limits(backend, 0, **_limits(b.get("limits") or {}))
    truth = simulated_truth_or_none(backend, gate_s)
    info = backend_info(b)
    from pulsecal.hardware.device import RetryPolicy

    retry = RetryPolicy(**dict(b.get("retry") or {}))
    from pulsecal.hardware.ledger import DeviceDayLedger

    day = DeviceDayLedger(c["device_ledger"]) if c.get("device_ledger") else None
    from pulsecal.hardware.progress import SessionProgress

    record = HydraRecord(cfg)
    try:
        with SessionProgress(settings.session_id) as progress:
            return rp.run_session(backend, policy, Path(c["folder"]), settings, limits=limits, retry=retry,
                                  truth=truth, plots=bool(c.get("plots", True)), backend_info=info,
                                  device_ledger=day, on_folder=record.write, progress=progress)
    finally:
        record.close()


def _replay_two_qubit(cfg: Any, c: dict[str, Any], backend: Any, policy: Any) -> Any:
    """A two-qubit session (``env_id`` one of ``two_qubit_session.REPLAY_ENV_IDS``): its env
    settings are ``backend.env`` under the explicit ``env`` (``env_defaults`` are the
    single-qubit env's and are not used); ``initial_params`` are the gate's four parameters."""
    from pulsecal.envs.ecr_session import CR_ENV_ID
    from pulsecal.hardware import replay as rp
    from pulsecal.hardware.adapters.simulated import SimulatedMultiQubitBackend
    from pulsecal.hardware.device import RetryPolicy
    from pulsecal.hardware.replay.two_qubit import (
        CZTruth,
        ECRTruth,
        run_two_qubit_session,
        two_qubit_limits,
    )

    b = dict(c["backend"])
    env_id = resolve_env_id(c, policy)
    env = {**dict(b.get("env") or {}), **{k: v for k, v in dict(c.get("env") or {}).items() if v is not None}}
    env = rp.env_to_kwargs(env)
    session_env_instance(env_id, env)  # a setting the env refuses: named as env.<key>
    if c.get("initial_params") is None:
        raise ConfigError("initial_params", f"null is out of range: allowed the 4 gate parameters of {env_id} "
                                            "(CZ: amplitude_phi0, length_s, phase_q0_rad, phase_q1_rad; "
                                            "ECR: cr_amp, cr_phase_rad, cancel_amp, cancel_phase_rad)")
    start = tuple(float(x) for x in c["initial_params"])
    # verify=true: interleaved two-qubit RB (``verification``: RB2QSettings fields) ends the session.
    verification = dict(c.get("verification") or {}) if c.get("verify") else None
    try:
        settings = rp.ReplaySettings(str(c["session_id"]), int(c["seed"]), start,  # type: ignore[arg-type]
                                     max_steps=int(c["max_steps"]), budget_shots=c.get("budget_shots"), env=env,
                                     env_id=env_id, verification=verification)
    except ValueError as err:
        field_error = _FIELD.match(str(err))
        if field_error and field_error.group(1) in c:
            raise ConfigError(field_error.group(1), field_error.group(2)) from err
        raise
    limits = two_qubit_limits(backend, **_limits(b.get("limits") or {}))
    truth: Any = None
    if isinstance(backend, SimulatedMultiQubitBackend):
        truth = ECRTruth(backend.device, env) if env_id == CR_ENV_ID else CZTruth(backend.device)
    retry = RetryPolicy(**dict(b.get("retry") or {}))
    record = HydraRecord(cfg)
    try:
        result = run_two_qubit_session(backend, policy, Path(c["folder"]), settings, limits=limits, retry=retry,
                                       truth=truth, backend_info=backend_info(b))
        record.write(Path(c["folder"]))
        return result
    finally:
        record.close()


class HydraRecord:
    """This invocation's Hydra record in the session folder, written only once the
    session starts: ``.hydra/<stamp>/`` (config, hydra, overrides) and ``replay.log``.

    ``replay.yaml`` keeps Hydra from writing anything for a single session, so a refused
    command leaves no folder behind; a sweep job's record is Hydra's own (nothing here).
    """

    def __init__(self, cfg: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        self._cfg = cfg
        # The masked config {hydra: ...}, as Hydra saves it in hydra.yaml.
        self._hydra: Any = HydraConfig.instance().cfg if HydraConfig.initialized() else None
        self._handler: logging.Handler | None = None

    def write(self, folder: Path) -> None:
        if self._hydra is None or _by_mode(self._hydra.hydra.mode, True, False):
            return
        hc = self._hydra.hydra
        sub = folder / ".hydra" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
        sub.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self._cfg, sub / "config.yaml")
        OmegaConf.save(self._hydra, sub / "hydra.yaml")
        OmegaConf.save(hc.overrides.task, sub / "overrides.yaml")
        self._handler = logging.FileHandler(folder / f"{hc.job.name}.log")
        self._handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logging.getLogger().addHandler(self._handler)

    def close(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None


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
            import inspect

            config = getattr(getattr(cls, "core_class", None), "config_class", None)
            fields = inspect.signature(config).parameters if config is not None else {}
            params = sorted({*fields, *inspect.signature(cls).parameters} - {"self", "kwargs"})
            raise ConfigError(f"env.{m.group(1)}", f"is not an option of {env_id}: allowed {params}") from None
        raise
    except ValueError as err:
        m = _FIELD.match(str(err))
        if m and m.group(1) in env:
            raise ConfigError(f"env.{m.group(1)}", m.group(2)) from err
        if "device" in env and str(err).startswith("device preset "):
            raise ConfigError("env.device", str(err)) from err
        raise


def checked_miscalibration(c: Mapping[str, Any]) -> dict[str, float]:
    """``miscalibration`` of a resolved config, each entry a finite number (else a
    ``ConfigError`` naming ``miscalibration.<key>``)."""
    import math

    m = dict(c["miscalibration"])
    for k, v in m.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"miscalibration.{k}", f"{v!r} is out of range: allowed a finite number")
    return m


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


def _limits(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}

__all__ = ["EXIT_CODES", "backend_info", "build_backend", "build_policy", "checked_miscalibration", "exit_code", "outcome_line", "qubit_model",
           "register_replay_configs", "register_replay_resolvers", "replay", "resolve_env_id", "session_env"]
