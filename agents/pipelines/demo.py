"""``pulsecal-demo`` (``make demo``): the product's main job on the default simulated device.

    pulsecal-demo                                          # everything under demo_out/
    python -m pulsecal.scripts.demo train.total_timesteps=20000 evaluate.n_devices=10
    pulsecal-demo out_dir=/tmp/demo "train.overrides=['agent.learning_rate=1e-3']"

Five stages, each through the machinery of its own entry point, so the demo shows what
a user gets from those commands and not a parallel implementation of them:

1. physics sanity: ``physics_demo.run`` (Gaussian vs DRAG X gate), ``physics_demo.png``;
2. train: ``pulsecal-train``'s :func:`train` on the best shipped GateCalibration experiment
   (``gate_calibration_agent`` if present, else ``gate_calibration_ppo``), a few minutes,
   with a wall-clock cap so the demo stays inside its time box on a loaded machine;
3. evaluate: ``pulsecal-evaluate``'s :func:`evaluate` of that agent against the standard
   calibration sequence, Nelder-Mead and CMA-ES on a small seeded held-out set;
4. export: ``export_run`` to ONNX + manifest (the folder a lab runs without torch);
5. replay: ``pulsecal-replay``'s :func:`replay` of the exported policy on the simulated
   backend, through the safety envelope, the shot ledger and the journal, in the env the
   policy was trained in (read from the export's manifest);

then a summary (printed, and as ``summary.md`` / ``summary.json``) lists every artefact and
the key numbers. ``configs/demo.yaml`` holds the settings of every stage; each stage's own
config (``train.yaml``, ``evaluate.yaml``, ``replay.yaml``) is composed with the demo's values
as overrides, so its schema checks them. Config becomes objects only here.

The helpers (composing a section, picking an experiment, the trained agent's evaluation
entry, the staged output) live in ``pulsecal.agents.pipelines.common``, shared with
``pulsecal-results``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict

from pulsecal.agents.pipelines.common import (
    PipelineError,
    agent_entry,
    calibration_table,
    compose_section,
    fmt_seconds,
    override,
    pick_experiment,
    stage,
    train_run,
    typed_conf,
)

# -- schemas ------------------------------------------------------------------------------------


@dataclass
class PhysicsStageConf:
    enabled: bool = True
    duration_s: float = 20e-9


@dataclass
class TrainStageConf:
    """The agent: an experiment of ``pulsecal-train`` with a small budget.

    ``experiment`` null picks ``gate_calibration_agent`` when it ships, else
    ``gate_calibration_ppo``. ``max_minutes`` stops training early (null: never) so the
    demo's time box holds on a loaded machine; the summary says when it did.
    ``overrides`` are further ``pulsecal-train`` overrides, applied last.
    """

    experiment: str | None = None
    seed: int = 0
    total_timesteps: int = 64_000
    max_minutes: float | None = 4.0
    eval_every_steps: int = 16_000
    progress_bar: bool = True
    overrides: list[str] = field(default_factory=list)


@dataclass
class EvaluateStageConf:
    """The held-out comparison (``pulsecal-evaluate``; ``overrides`` applied last)."""

    n_devices: int = 20
    seed: int = 12345
    budgets: list[int] = field(default_factory=lambda: [1000])
    methods: list[str] = field(default_factory=lambda: ["standard", "nelder_mead", "cmaes"])
    baseline: str = "default"
    workers: int = 2
    progress: bool = True
    overrides: list[str] = field(default_factory=list)


@dataclass
class ExportStageConf:
    torchscript: bool = False


@dataclass
class ReplayStageConf:
    """The exported policy's session (``pulsecal-replay``; ``overrides`` applied last).

    ``env_from_export`` runs the session in the env settings the policy was trained with
    (shots per probe, shot budget, probes, steps: the manifest's env description); the
    observation carries the fraction of the budget used, so a session with other
    settings would show the policy inputs it never saw.
    """

    enabled: bool = True
    backend: str = "simulated"
    seed: int = 0
    session_id: str = "demo"
    max_steps: int = 12
    env_from_export: bool = True
    overrides: list[str] = field(default_factory=list)


@dataclass
class DemoConf:
    """The whole demo (``configs/demo.yaml``). ``clean`` removes the previous demo's
    stage folders under ``out_dir`` first (a replay session folder would otherwise be
    resumed with another policy)."""

    out_dir: str = "demo_out"
    clean: bool = True
    physics: PhysicsStageConf = field(default_factory=PhysicsStageConf)
    train: TrainStageConf = field(default_factory=TrainStageConf)
    evaluate: EvaluateStageConf = field(default_factory=EvaluateStageConf)
    export: ExportStageConf = field(default_factory=ExportStageConf)
    replay: ReplayStageConf = field(default_factory=ReplayStageConf)

    def check(self) -> None:
        positive = {"train.total_timesteps": self.train.total_timesteps,
                    "train.eval_every_steps": self.train.eval_every_steps,
                    "evaluate.n_devices": self.evaluate.n_devices, "evaluate.workers": self.evaluate.workers,
                    "replay.max_steps": self.replay.max_steps}
        for key, value in positive.items():
            if value < 1:
                raise PipelineError(key, f"{value}: allowed an integer >= 1")
        if not self.evaluate.budgets or any(b < 1 for b in self.evaluate.budgets):
            raise PipelineError("evaluate.budgets", f"{self.evaluate.budgets}: allowed one or more integers >= 1")
        if self.train.max_minutes is not None and not (math.isfinite(self.train.max_minutes)
                                                       and self.train.max_minutes > 0):
            raise PipelineError("train.max_minutes", f"{self.train.max_minutes}: allowed a value > 0 or null")
        if not (math.isfinite(self.physics.duration_s) and self.physics.duration_s > 0):
            raise PipelineError("physics.duration_s", f"{self.physics.duration_s}: allowed a value > 0 s")
        if not self.out_dir:
            raise PipelineError("out_dir", "allowed a non-empty path")


def register_configs() -> None:
    """Store the demo schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="demo_schema", node=DemoConf)


register_configs()


def experiment_env_id(experiment: str) -> str:
    return str(compose_section("train", [override("experiment", experiment)]).env.id)


REPLAY_DEFAULT_ENV = "pulsecal/GateCalibration-v0"


def replay_hosts(env_id: str) -> bool:
    """Whether ``pulsecal-replay`` can run a session in ``env_id``. ``run_session`` builds
    GateCalibration-v0; other GateCalibration versions need ``ReplaySettings.env_id``
    (the demo passes it as ``env_id`` of the replay config when it exists)."""
    import dataclasses

    from pulsecal.hardware.replay import ReplaySettings

    if env_id == REPLAY_DEFAULT_ENV:
        return True
    takes_id = "env_id" in {f.name for f in dataclasses.fields(ReplaySettings)}
    return takes_id and env_id.rsplit("-v", 1)[0] == REPLAY_DEFAULT_ENV.rsplit("-v", 1)[0]


# -- the demo -----------------------------------------------------------------------------------

STAGE_OUTPUTS = ("physics_demo.png", "train", "evaluate", "export", "replay", "summary.md", "summary.json")


@dataclass(frozen=True)
class DemoSummary:
    """What the demo produced: artefact paths, key numbers, stage wall times."""

    out_dir: Path
    artefacts: dict[str, str]
    numbers: dict[str, Any]
    stage_seconds: dict[str, float]
    text: str


def to_demo_conf(cfg: DictConfig) -> DemoConf:
    return typed_conf(cfg, DemoConf, "demo")


def demo(cfg: DictConfig) -> DemoSummary:
    """Run every stage the composed ``demo.yaml`` describes; print and return the summary."""
    conf = to_demo_conf(cfg)
    out = Path(conf.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if conf.clean:
        for name in STAGE_OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    t_start = time.perf_counter()
    log: list[tuple[str, float]] = []
    artefacts: dict[str, str] = {}
    numbers: dict[str, Any] = {}
    tr = conf.train
    experiment = pick_experiment(tr.experiment, "gate_calibration_agent", "gate_calibration_ppo")
    replay_env = experiment_env_id(experiment)
    replay_note = None
    if conf.replay.enabled and not replay_hosts(replay_env):
        replay_note = (f"skipped: experiment={experiment} trains on {replay_env}, and pulsecal-replay "
                       f"runs sessions in {REPLAY_DEFAULT_ENV} only (hardware.replay.ReplaySettings has no "
                       "env_id yet); train.experiment=gate_calibration_ppo replays today")
        print(f"note: replay {replay_note}", flush=True)
    total = 3 + int(conf.physics.enabled) + int(conf.replay.enabled and replay_note is None)
    n = 0

    if conf.physics.enabled:
        n += 1
        with stage(log, n, total, "physics", "Gaussian vs DRAG X gate on the default transmon"):
            from pulsecal.agents.pipelines import physics_demo

            report = physics_demo.run(out, conf.physics.duration_s)
        artefacts["physics plot"] = str(out / "physics_demo.png")
        numbers["physics"] = report

    n += 1
    run_dir = out / "train"
    cap = None if tr.max_minutes is None else 60.0 * tr.max_minutes
    with stage(log, n, total, "train", f"experiment={experiment}, {tr.total_timesteps:,} steps"
               + ("" if cap is None else f" (time box {tr.max_minutes:g} min)")):
        rec = train_run(experiment, run_dir, [
            override("seed", tr.seed), override("total_timesteps", tr.total_timesteps),
            override("callbacks.eval_every_steps", tr.eval_every_steps),
            override("callbacks.checkpoint_every_steps", tr.total_timesteps),
            override("callbacks.progress_bar", tr.progress_bar), *tr.overrides], cap)
        print(f"  {rec['algo']} trained {rec['steps']:,} steps"
              + (" (stopped by the time box)" if rec["time_box_hit"] else "")
              + (" (stopped early: target reached)" if rec["stopped_early"] else "")
              + f"; held-out mean 1 − F {rec['final_infidelity']:.3g}", flush=True)
    numbers["train"] = rec
    artefacts["training run"] = str(run_dir)
    artefacts["learning curve"] = str(run_dir / "learning_curve.png")

    ev = conf.evaluate
    n += 1
    agent_name = f"agent_{rec['algo']}"
    with stage(log, n, total, "evaluate", f"{agent_name} vs {', '.join(ev.methods)} on {ev.n_devices} held-out "
               f"devices (seed {ev.seed}), budgets {ev.budgets}"):
        from pulsecal.agents.pipelines.evaluate import evaluate

        eval_dir = out / "evaluate"
        ecfg = compose_section("evaluate", [
            override("baseline", ev.baseline), override("out_dir", eval_dir), override("n_devices", ev.n_devices),
            override("seed", ev.seed), override("budgets", ev.budgets), override("methods", ev.methods),
            override("workers", ev.workers), override("progress", ev.progress), "pulse_shaping=false",
            "drift=false", override("agents", [agent_entry(agent_name, "calibration", rec)]), *ev.overrides])
        ereport = evaluate(ecfg)
    budget = min(ev.budgets)
    table = calibration_table(ereport.summary, budget)
    numbers["evaluate"] = {"n_devices": ev.n_devices, "seed": ev.seed, "budget": budget, "agent": agent_name,
                           "gate_duration_s": float(ecfg.gate_duration_s),
                           "calibration": table, "verdicts": ereport.verdicts}
    for f in ereport.files:
        artefacts[{"results.csv": "results csv", "results.md": "results table"}.get(f.name, f"plot {f.stem}")] = str(f)

    n += 1
    with stage(log, n, total, "export", "ONNX + manifest for the torch-free lab runner"):
        from pulsecal.agents.export import export_run

        folder = export_run(run_dir, out / "export", torchscript=conf.export.torchscript, overwrite=True)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        check = manifest["export_check"]
        print(f"  {folder}: max |onnx − sb3| = {check['max_abs_diff']:.2g} on {check['samples']} observations")
    numbers["export"] = {"folder": str(folder), "max_abs_diff": float(check["max_abs_diff"]),
                         "samples": int(check["samples"])}
    artefacts["export folder"] = str(folder)

    if replay_note is not None:
        numbers["replay_skipped"] = replay_note
    elif conf.replay.enabled:
        rp = conf.replay
        n += 1
        with stage(log, n, total, "replay", f"exported policy on backend={rp.backend} through the safety envelope, "
                   "shot ledger and journal"):
            numbers["replay"] = replay_export(folder, out / "replay", rp)
        rfolder = Path(numbers["replay"]["folder"])
        artefacts["replay report"] = str(rfolder / "report.md")
        artefacts["replay journal"] = str(rfolder / "journal.jsonl")
        artefacts["replay ledger"] = str(rfolder / "ledger.json")

    stage_seconds = dict(log)
    stage_seconds["total"] = time.perf_counter() - t_start
    artefacts["summary"] = str(out / "summary.md")
    text = format_summary(numbers, artefacts, stage_seconds)
    summary = DemoSummary(out, artefacts, numbers, stage_seconds, text)
    (out / "summary.md").write_text("```\n" + text + "\n```\n", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps({"artefacts": artefacts, "numbers": numbers,
                                                  "stage_seconds": stage_seconds}, indent=2, default=_json) + "\n",
                                      encoding="utf-8")
    print("\n" + text, flush=True)
    return summary


# Training-env settings a replay session does not take over: the device is the backend's,
# the start is the session's, and a backend has no truth to report or reward with.
_NOT_SESSION_ENV = frozenset({"randomize_device", "sampler", "drift", "report_truth", "miscalibration", "reward",
                              "reward_floor"})


def replay_export(folder: Path, session_folder: Path, rp: ReplayStageConf) -> dict[str, Any]:
    """Replay an exported policy through ``pulsecal-replay``'s :func:`replay`; its numbers."""
    from pulsecal.agents.pipelines.replay import replay

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    env_id = str((manifest.get("env") or {}).get("id") or REPLAY_DEFAULT_ENV)
    rcfg = compose_section("replay", [
        override("backend", rp.backend), "policy=onnx", override("policy.folder", folder),
        override("folder", session_folder), override("session_id", rp.session_id), override("seed", rp.seed),
        override("max_steps", rp.max_steps), "plots=true",
        *([] if env_id == REPLAY_DEFAULT_ENV else [override("env_id", env_id)]), *rp.overrides])
    if rp.env_from_export:
        trained = dict(((manifest.get("env") or {}).get("description") or {}).get("config") or {})
        env = {k: v for k, v in trained.items() if v is not None and k not in _NOT_SESSION_ENV}
        with open_dict(rcfg):
            rcfg.env = OmegaConf.merge(rcfg.env, env)
    result = replay(rcfg)
    rep = result.report
    truth = rep.get("truth") or {}
    f0 = (truth.get("initial") or {}).get("fidelity")
    f1 = (truth.get("final") or {}).get("fidelity")
    numbers = {"folder": str(result.folder), "env_steps": int(rep["env_steps"]),
               "ledger_shots": int(result.ledger_shots), "env_shots": int(rep["shots_used"]),
               "estimated_infidelity_initial": rep["estimated_infidelity_initial"],
               "estimated_infidelity_final": rep["estimated_infidelity_final"],
               "true_infidelity_initial": None if f0 is None else 1.0 - float(f0),
               "true_infidelity_final": None if f1 is None else 1.0 - float(f1),
               "true_improvement": truth.get("infidelity_ratio"),
               "coherence_limit": (truth.get("final") or {}).get("coherence_limit"),
               "final_params": rep["final_params"]}
    print(f"  {numbers['env_steps']} steps, {numbers['ledger_shots']} shots in the ledger"
          + ("" if f1 is None else f"; true 1 − F {numbers['true_infidelity_initial']:.3g} → "
                                    f"{numbers['true_infidelity_final']:.3g}"), flush=True)
    return numbers


def _json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _x(v: Any) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):.2f}×"


def format_summary(numbers: Mapping[str, Any], artefacts: Mapping[str, str], seconds: Mapping[str, float]) -> str:
    """The demo's summary as plain text (printed and written to summary.md)."""
    tr, ev, ex = numbers["train"], numbers["evaluate"], numbers["export"]
    parts = ", ".join(f"{k} {fmt_seconds(v)}" for k, v in seconds.items() if k != "total")
    lines = [f"pulsecal demo: done in {fmt_seconds(seconds['total'])} ({parts})", ""]
    lines.append(f"Agent: {tr['algo'].upper()} from experiment={tr['experiment']}, {tr['steps']:,} env steps "
                 f"in {fmt_seconds(tr['wall_time_s'])}, seed {tr['seed']}"
                 + (", stopped by the time box" if tr["time_box_hit"] else "")
                 + (", stopped early at its target" if tr["stopped_early"] else ""))
    lines.append(f"Calibration of a {ev['gate_duration_s'] * 1e9:g} ns DRAG X gate on {ev['n_devices']} held-out devices (seed {ev['seed']}) "
                 f"at {ev['budget']} shots, (1 − F) / coherence limit:")
    lines.append(f"  {'method':<18}{'median':>9}{'p90':>9}{'shots':>8}  target median <= 1.1×, p90 <= 1.5×")
    passed = {v["method"]: v["passed"] for v in ev["verdicts"] if v["task"] == "calibration"}
    for s in ev["calibration"]:
        name = s["method"] + (" (agent)" if s["method"] == ev["agent"] else "")
        lines.append(f"  {name:<18}{_x(s['ratio_median']):>9}{_x(s['ratio_p90']):>9}{s['shots_median']:>8.0f}  "
                     + ("pass" if passed.get(s["method"]) else "fail"))
    best = next((s for s in ev["calibration"] if s["method"] != ev["agent"]), None)
    mine = next((s for s in ev["calibration"] if s["method"] == ev["agent"]), None)
    if best is not None and mine is not None:
        lines.append(f"  agent median / best baseline ({best['method']}) median: "
                     f"{mine['ratio_median'] / best['ratio_median']:.2f}")
    lines.append(f"Export: {ex['folder']} (policy.onnx + manifest.json), max |onnx − sb3| = {ex['max_abs_diff']:.2g}")
    if "replay" in numbers:
        r = numbers["replay"]
        line = (f"Replay of the exported policy (simulated backend, safety envelope, ledger, journal): "
                f"{r['env_steps']} steps, {r['ledger_shots']} shots; ")
        if r["true_infidelity_final"] is not None:
            line += (f"true 1 − F {r['true_infidelity_initial']:.3g} → {r['true_infidelity_final']:.3g} "
                     f"({r['true_improvement']:.1f}× better")
            if r.get("coherence_limit"):
                line += f", {r['true_infidelity_final'] / r['coherence_limit']:.2f}× the coherence limit"
            line += ")"
        else:
            line += (f"estimated 1 − F {r['estimated_infidelity_initial']:.3g} → "
                     f"{r['estimated_infidelity_final']:.3g}")
        lines.append(line)
    elif "replay_skipped" in numbers:
        lines.append(f"Replay: {numbers['replay_skipped']}")
    lines += ["", "Artefacts:"]
    width = max(len(k) for k in artefacts)
    lines += [f"  {k:<{width}}  {v}" for k, v in artefacts.items()]
    return "\n".join(lines)


# -- entry point --------------------------------------------------------------------------------

__all__ = ["DemoConf", "DemoSummary", "demo", "experiment_env_id", "format_summary", "replay_export", "replay_hosts"]
