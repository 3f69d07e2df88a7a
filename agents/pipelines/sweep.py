"""Per-qubit calibration sweeps through ``pulsecal-replay --multirun``, and their summary.

    pulsecal-replay -m backend=simulated_faulty policy=scripted qubit=0,1,2,3
    pulsecal-replay -m replay_experiment=sweep_8q                      # a whole simulated device
    pulsecal-replay -m replay_experiment=sweep_8q hydra/launcher=ray   # the same on Ray
    pulsecal-replay -m backend=qibolab_emulator backend.platform=pulsecal_emulator_2q qubit=0,1
    pulsecal-sweep-summary runs/sweep/device8                          # recompute the table

Every job of the multirun is one qubit (``qubit=k``): :func:`sweep_job` turns the composed
config into a ``pulsecal.hardware.sweep.QubitJob`` and runs, resumes or skips it in
``<sweep.dir>/q<k>``. When the launcher has run every job, the Hydra callback
:class:`SweepSummaryCallback` (registered in ``replay.yaml``) recomputes the summary table
and plot from the session folders. Re-running the same command resumes the sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def sweep_job(c: dict[str, Any]) -> Any:
    """Run one qubit of a sweep from a resolved replay config (``qubit`` set); returns the
    ``QubitOutcome``.

    ``backend.kind=simulated``: every qubit is its own sampled one-qubit device, drawn from
    (backend.seed, qubit). Lab backends (``qibolab``, ``braket``): one device, the session
    addresses qubit ``qubit`` of it (its drive frame, its readout, an envelope allowing that
    frame only). All qubits' sessions share the device's day ledger
    (``device_ledger``, default ``<sweep.dir>/device_day_ledger.json``), so the per-day
    shot limit bounds their sum. ``env_id`` (or the exported policy's manifest) picks the
    GateCalibration version the policy runs in.
    """
    from pulsecal.agents.pipelines.replay_build import (
        backend_info,
        build_backend,
        build_policy,
        checked_miscalibration,
        limit_overrides,
        qubit_model,
        retry_policy,
    )
    from pulsecal.agents.pipelines.replay_env import (
        resolve_env_id,
        session_env,
        session_env_instance,
    )
    from pulsecal.hardware import replay as rp
    from pulsecal.hardware import sweep as sw
    from pulsecal.hardware.progress import SessionProgress

    qubit = int(c["qubit"])
    b, p, s = dict(c["backend"]), dict(c["policy"]), dict(c["sweep"])
    kind = b.get("kind")
    env, gate_s = session_env(c)
    first_policy = [build_policy(p)]  # also tells the env id an exported policy was trained on
    env_id = resolve_env_id(c, first_policy[0])
    session_env_instance(env_id, env)  # a refused env setting fails here, naming env.<key>
    m = checked_miscalibration(c)
    limit_changes = limit_overrides(b.get("limits") or {})
    common = {"qubit": qubit, "sweep_dir": Path(s["dir"]), "sweep_name": str(s["name"]),
              "max_steps": int(c["max_steps"]), "env": env, "total_shots": s.get("total_shots"),
              "session_budget_shots": c.get("budget_shots"), "budget_headroom": float(s["budget_headroom"]),
              "attempts": int(s["attempts"]), "start_from_store": bool(s["start_from_store"]),
              "params_store": None if s.get("params_store") is None else Path(s["params_store"]),
              "env_id": env_id,
              "device_ledger": Path(c.get("device_ledger") or Path(s["dir"]) / "device_day_ledger.json")}

    def make_policy() -> Any:
        return first_policy.pop() if first_policy else build_policy(p)

    if kind == "simulated":
        from pulsecal.envs.presets import DeviceSampler

        sampler = DeviceSampler(**{k: (tuple(v) if isinstance(v, list) else v)
                                   for k, v in (b.get("sampler") or {}).items()})
        sweep_seed = int(b["seed"])
        device_params = sw.sampled_qubit_params(sweep_seed, qubit, sampler)
        if c.get("initial_params") is not None:
            start = tuple(float(x) for x in c["initial_params"])
        else:
            start = sw.lab_start_values(device_params, gate_s, amplitude_rel=m["amplitude_rel"],
                                        beta_rel=m["beta_rel"], detuning_hz=m["detuning_hz"], phase=m["phase"])
        job = _qubit_job(seed=sw.qubit_seed(sweep_seed, qubit), default_start=start, device_qubit=0, **common)

        def make_backend(attempt: int) -> Any:
            return sw.sampled_qubit_backend(seed=sweep_seed, qubit=qubit, fault_rate=float(b["fault_rate"]),
                                            sampler=sampler, open_system=bool(b["open_system"]),
                                            fault_stream=attempt)

        info = {"kind": "simulated", "name": "simulated", "device": "sampled", "sweep_seed": sweep_seed,
                "qubit": qubit, "fault_rate": float(b["fault_rate"]), "sampler": b.get("sampler") or {}}
        with SessionProgress(job.session_id) as progress:
            return sw.run_qubit(job, make_backend=make_backend, make_policy=make_policy,
                                limits=lambda be: rp.default_limits(be, 0, **limit_changes),
                                retry=retry_policy(b),
                                truth=lambda be: rp.simulated_truth(be, gate_s), backend_info=info,
                                plots=bool(c.get("plots", True)), progress=progress)

    # One lab device: the session addresses its qubit `qubit`.
    backends = [build_backend(b)]
    caps = backends[0].capabilities()
    if qubit not in caps.qubits:
        raise ValueError(f"qubit={qubit}: allowed one of the backend's qubits {list(caps.qubits)}")
    if c.get("initial_params") is not None:
        start = tuple(float(x) for x in c["initial_params"])
    else:
        model = qubit_model(backends[0], qubit)
        if model is None:
            raise ValueError("initial_params=None: allowed only with a backend that has a device model "
                             "(simulated, qibolab emulator); give the lab's current calibration")
        start = rp.start_values(model, gate_s, amplitude_rel=m["amplitude_rel"], beta_rel=m["beta_rel"],
                                detuning_hz=m["detuning_hz"], phase=m["phase"])
    job = _qubit_job(seed=sw.qubit_seed(int(c["seed"]), qubit), default_start=start, device_qubit=qubit, **common)

    def make_lab_backend(attempt: int) -> Any:
        # The first attempt uses the backend built above; a retry gets a fresh one.
        return backends.pop() if backends else build_backend(b)

    info = {**backend_info(b), "qubit": qubit}
    with SessionProgress(job.session_id) as progress:
        return sw.run_qubit(job, make_backend=make_lab_backend, make_policy=make_policy,
                            limits=lambda be: rp.default_limits(be, qubit, **limit_changes),
                            retry=retry_policy(b), backend_info=info,
                            plots=bool(c.get("plots", True)), progress=progress)


# QubitJob's fields as the replay config names them, for its refusals.
_JOB_KEYS = {"qubit": "qubit", "sweep_name": "sweep.name", "attempts": "sweep.attempts",
             "budget_headroom": "sweep.budget_headroom", "total_shots": "sweep.total_shots",
             "session_budget_shots": "budget_shots"}


def _qubit_job(**fields: Any) -> Any:
    """A ``QubitJob``; a refused field is named by its config key (``budget_shots``, not
    ``QubitJob.session_budget_shots``)."""
    from pulsecal.configs.schema import ConfigError
    from pulsecal.hardware import sweep as sw

    try:
        return sw.QubitJob(**fields)
    except ValueError as err:
        head, _, rest = str(err).partition("=")
        key = _JOB_KEYS.get(head.removeprefix("QubitJob."))
        if key is None or not rest:
            raise
        raise ConfigError(key, f"{rest.split(':', 1)[0]} is out of range:{rest.split(':', 1)[1]}"
                          if ":" in rest else rest) from err


def summary_from_config(cfg: DictConfig, *, echo: bool = True) -> Any:
    """Write the summary of the sweep ``cfg.sweep`` names; None if it has no qubit folder."""
    from pulsecal.hardware import sweep as sw

    s = OmegaConf.to_container(cfg.sweep, resolve=True)
    assert isinstance(s, dict)
    root = Path(str(s["dir"]))
    if not any(p.is_dir() and p.name[1:].isdigit() for p in root.glob("q*")):
        return None
    summary = sw.write_summary(root, s.get("qubits"), coherence_factor=float(s.get("coherence_factor", 2.0)),
                               plots=bool(s.get("plots", True)))
    if echo:
        print(sw.summary_markdown(summary, coherence_factor=float(s.get("coherence_factor", 2.0))))
        print(f"summary: {root / 'summary.md'}")
    return summary


# The sweep's outcome log: one JSON line per job that ran its qubit (finished, stopped,
# failed or busy), tagged with the multirun's ``sweep.run_id``. A job appends to it from
# whichever process or host the launcher ran it on; the launching process reads its own
# run's lines back, so the exit status does not depend on the launcher.
OUTCOMES = "outcomes.jsonl"


def record_outcome(c: dict[str, Any], outcome: Any, code: int) -> None:
    """Append a sweep job's outcome (``QubitOutcome``, exit ``code``) to the outcome log."""
    line = {"run_id": str(c["sweep"].get("run_id") or ""), "qubit": int(outcome.qubit), "state": str(outcome.state),
            "stop_reason": getattr(outcome, "stop_reason", None), "code": int(code), "pid": os.getpid()}
    path = Path(str(c["sweep"]["dir"])) / OUTCOMES
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line in append mode: jobs of one sweep running at once do not
    # interleave within a line.
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


def run_outcomes(sweep_dir: Path, run_id: str) -> dict[int, int]:
    """Qubit -> exit code of the jobs of multirun ``run_id`` (its lines of the outcome log)."""
    path = Path(sweep_dir) / OUTCOMES
    if not run_id or not path.exists():
        return {}
    codes: dict[int, int] = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:  # a line cut short by a killed job
            continue
        if isinstance(rec, dict) and rec.get("run_id") == run_id:
            codes[int(rec["qubit"])] = int(rec["code"])
    return codes


def sweep_exit_code(codes: dict[int, int]) -> int:
    """A sweep's exit code: that of its lowest-numbered qubit that did not finish, else 0."""
    return next((codes[q] for q in sorted(codes) if codes[q]), 0)


def discard_job_record() -> None:
    """Remove what Hydra made for this sweep job, for a qubit refused before its session
    started: the job's own record ``q<k>/.hydra/<stamp>/``, then ``q<k>/.hydra`` and
    ``q<k>`` if nothing else is left in them. A folder that holds anything else (an
    earlier run's journal, another process's files) is left as it is."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    out = Path(str(hc.runtime.output_dir))
    if hc.output_subdir is not None:
        record = out / str(hc.output_subdir)
        if record.is_dir():
            shutil.rmtree(record)
        _remove_empty(record.parent, stop=out)
    _remove_empty(out, stop=out.parent)


def _remove_empty(folder: Path, *, stop: Path) -> None:
    """``rmdir`` folder and its parents up to (not including) ``stop`` while they are empty."""
    folder, stop = folder.absolute(), stop.absolute()
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()  # only an empty folder: never anything a run wrote
        except OSError:
            return
        folder = folder.parent


@dataclass
class _Multirun:
    """What the launching process saw before its multirun created anything."""

    sweep_dir: Path
    run_id: str
    existing: Path  # the sweep dir, or its nearest ancestor that already existed
    multirun_yaml: bytes | None  # the earlier run's multirun.yaml, if there was one
    exit_code: int | None = None


# The multirun of this process (one at a time: Hydra runs one per command line).
_current: list[_Multirun] = []


def forget_multirun() -> None:
    """Start a command afresh: no multirun of an earlier command in this process counts."""
    _current.clear()


def multirun_exit_code() -> int | None:
    """The exit code of this process's multirun after it ended (None: no multirun ran)."""
    return _current[0].exit_code if _current else None


def undo_refused_multirun() -> None:
    """After the multirun stopped on a refused qubit: remove what it created in the launching
    process (``multirun.yaml`` and the folders up to the first one that existed before),
    or put back an earlier run's ``multirun.yaml``. Only empty folders are removed; when
    another qubit of the same command ran (its line is in the outcome log), the command's
    ``multirun.yaml`` stays with its data."""
    if not _current:
        return
    m = _current.pop()
    if run_outcomes(m.sweep_dir, m.run_id):
        return
    yaml_path = m.sweep_dir / "multirun.yaml"
    if m.multirun_yaml is not None:
        yaml_path.write_bytes(m.multirun_yaml)
        return
    yaml_path.unlink(missing_ok=True)
    _remove_empty(m.sweep_dir, stop=m.existing)


class SweepSummaryCallback(Callback):
    """Hydra callback: after a multirun, the sweep summary from the session folders and
    the sweep's exit code from its outcome log.

    It runs in the launching process; ``on_multirun_end`` once every job has returned
    (jobs do not raise for a qubit that ran and failed, only for a refused one).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _current.clear()
        if "sweep" not in config:
            return
        # Reading run_id resolves its ${now:...} here; Hydra copies this resolved value
        # into every job's config, so all jobs of this multirun log the same id.
        run_id = str(config.sweep.get("run_id") or "")
        sweep_dir = Path(str(config.sweep.dir)).absolute()
        existing = sweep_dir
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        yaml_path = sweep_dir / "multirun.yaml"
        _current.append(_Multirun(sweep_dir, run_id, existing,
                                  yaml_path.read_bytes() if yaml_path.is_file() else None))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if "sweep" in config:
            summary_from_config(config)
        if _current:
            m = _current[0]
            m.exit_code = sweep_exit_code(run_outcomes(m.sweep_dir, m.run_id))


def main(argv: list[str] | None = None) -> None:
    """``pulsecal-sweep-summary SWEEP_DIR``: recompute and print a sweep's summary."""
    from pulsecal.hardware import sweep as sw

    ap = argparse.ArgumentParser(prog="pulsecal-sweep-summary", description=main.__doc__)
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--qubits", type=int, nargs="*", default=None, help="qubits the sweep should cover")
    ap.add_argument("--coherence-factor", type=float, default=2.0)
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args(argv)
    if not a.sweep_dir.is_dir():
        print(f"error: sweep_dir={str(a.sweep_dir)!r}: allowed an existing sweep folder", file=sys.stderr)
        sys.exit(2)
    s = sw.write_summary(a.sweep_dir, a.qubits, coherence_factor=a.coherence_factor, plots=not a.no_plots)
    print(sw.summary_markdown(s, coherence_factor=a.coherence_factor), end="")




__all__ = ["OUTCOMES", "SweepSummaryCallback", "discard_job_record", "forget_multirun", "main", "multirun_exit_code", "record_outcome",
           "run_outcomes", "summary_from_config", "sweep_exit_code", "sweep_job", "undo_refused_multirun"]
