"""``pulsecal-replay``: a closed-loop calibration session of a policy on a backend.

    pulsecal-replay backend=simulated policy=scripted
    pulsecal-replay backend=simulated_faulty policy=scripted session_id=s2
    pulsecal-replay backend=qibolab_emulator policy=scripted
    pulsecal-replay backend=qibolab_emulator policy=onnx policy.folder=exports/ppo
    pulsecal-replay backend=qibolab_emulator policy=onnx_emulator_reference   # the shipped policy
    pulsecal-replay backend=qibolab_emulator policy=sb3 policy.run_dir=runs/<run>

Run it again with the same ``session_id`` (and ``folder``) after a crash or kill: the
session resumes from its journal (``pulsecal.hardware.replay``). The policy is a swap of
config; the backend too. This is the one place the config becomes objects: the schemas
(``replay_schema``) make a wrong type or key fail at compose time, and :func:`replay`
builds the backend and the policy with ``hydra.utils.instantiate`` from their
``_target_`` (``replay_build``), resolves the session's env (``replay_env``) and runs the
session; ``replay_outcome`` turns its result into the console line and exit code.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pulsecal.configs.schema import ConfigError

from .replay_build import (
    backend_info,
    build_backend,
    build_policy,
    check_schema_keys,
    checked_miscalibration,
    limit_overrides,
    qubit_model,
    replay_settings,
    resolved_dict,
    retry_policy,
    verification_fields,
)
from .replay_env import resolve_env_id, session_env, session_env_instance, warn_if_cut_short
from .replay_schema import ReplayConf, is_multirun


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
    c = resolved_dict(cfg)
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
    settings = replay_settings(c, start, env, env_id, **verification_fields(c, model))
    limits = rp.default_limits(backend, 0, **limit_overrides(b.get("limits") or {}))
    truth = simulated_truth_or_none(backend, gate_s)
    info = backend_info(b)
    retry = retry_policy(b)
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
    settings = replay_settings(c, start, env, env_id, verification=verification)
    limits = two_qubit_limits(backend, **limit_overrides(b.get("limits") or {}))
    truth: Any = None
    if isinstance(backend, SimulatedMultiQubitBackend):
        truth = ECRTruth(backend.device, env) if env_id == CR_ENV_ID else CZTruth(backend.device)
    retry = retry_policy(b)
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
        if self._hydra is None or is_multirun(self._hydra.hydra.mode):
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
