"""``pulsecal-results`` (``make results``): train the agents, run the full evaluation, write
``docs/results.md`` and its plots with the command, seeds, versions and git revision.

    python -m pulsecal.scripts.results                 # up to about an hour on 2 cores
    python -m pulsecal.scripts.results --quick         # tiny budgets, into a temp folder
    python -m pulsecal.scripts.results agents.pulse_shaping.max_minutes=30 evaluate.n_devices=200

Three agents, each from its ``*_agent`` experiment when it ships (else the plain
``gate_calibration_ppo``, ``pulse_shaping_sac``, ``drift_tracking_ppo``), trained through
``pulsecal-train``'s :func:`train` into ``<work_dir>/train/<task>``, with a per-agent
wall-clock time box so the whole job stays inside its hour. A finished run whose stored
config equals the one asked for is reused, so an interrupted ``make results`` does not
train again what it already has. ``calibration_variants`` train the calibration agent again
from another experiment with the same seed and budget (shipped: ``measured``, the measured
reward instead of the simulation-only truth reward), and ``estimator_reference`` adds
``estimator_only`` (the zero action: GateCalibration-v1's running estimate by itself), so
results.md can say which reward each agent learned from and what the policy adds.
Then ``pulsecal-evaluate``'s :func:`evaluate` on the full
benchmark (calibration on ``n_devices`` held-out devices at every shot budget against the
standard sequence, Nelder-Mead and CMA-ES; pulse shaping against the GRAPE optimum; drift
tracking against the hourly standard recalibration), raw output in ``<work_dir>/evaluate``.
Finally ``<out_dir>/results.md`` (default ``docs/results.md``) and ``<out_dir>/results/*.png``.

``--quick`` selects ``results_profile=quick`` (tiny budgets) and, unless ``out_dir`` is
given, a fresh temporary folder: an end-to-end check that never touches ``docs/``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from pulsecal.agents.pipelines.common import (
    PipelineError,
    agent_entry,
    compose_section,
    fmt_seconds,
    override,
    pick_experiment,
    train_run,
    trained_env_kwargs,
    typed_conf,
)
from pulsecal.agents.pipelines.train import stored_config

# -- schemas ------------------------------------------------------------------------------------


@dataclass
class AgentRunConf:
    """One agent: ``experiment`` (null: ``preferred`` when it ships, else ``fallback``),
    its seed, a step budget (null: the experiment's own), a time box in minutes (null:
    none) and further ``pulsecal-train`` overrides."""

    preferred: str = MISSING
    fallback: str = MISSING
    experiment: str | None = None
    seed: int = 0
    total_timesteps: int | None = None
    max_minutes: float | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class ResultsAgentsConf:
    calibration: AgentRunConf = MISSING
    pulse_shaping: AgentRunConf = MISSING
    drift_tracking: AgentRunConf = MISSING


@dataclass
class ResultsEvaluateConf:
    """The benchmark (``pulsecal-evaluate``; ``overrides`` applied last)."""

    n_devices: int = 100
    seed: int = 12345
    budgets: list[int] = field(default_factory=lambda: [1000, 5000, 20000])
    baseline: str = "default"
    workers: int = 2
    progress: bool = True
    overrides: list[str] = field(default_factory=list)


@dataclass
class ResultsConf:
    """``calibration_variants`` (name -> experiment) are trained exactly like
    ``agents.calibration`` (seed, step budget, time box, overrides) from another experiment
    into ``<work_dir>/train/calibration_<name>`` and evaluated as ``agent_<algo>_<name>``.
    ``estimator_reference`` adds ``estimator_only``: the all-zero action on the calibration
    agent's env, which on GateCalibration-v1 is the env's running estimate by itself."""

    out_dir: str = "docs"
    work_dir: str = "runs/results"
    reuse_runs: bool = True
    progress_bar: bool = True
    agents: ResultsAgentsConf = field(default_factory=ResultsAgentsConf)
    calibration_variants: dict[str, str] = field(default_factory=dict)
    estimator_reference: bool = True
    evaluate: ResultsEvaluateConf = field(default_factory=ResultsEvaluateConf)

    def check(self) -> None:
        for name in self.calibration_variants:
            if not re.fullmatch(r"[a-z0-9_]+", name):
                raise PipelineError(f"calibration_variants.{name}", "allowed names of a-z, 0-9 and _")
        e = self.evaluate
        for key, value in (("evaluate.n_devices", e.n_devices), ("evaluate.workers", e.workers)):
            if value < 1:
                raise PipelineError(key, f"{value}: allowed an integer >= 1")
        if not e.budgets or any(b < 1 for b in e.budgets):
            raise PipelineError("evaluate.budgets", f"{e.budgets}: allowed one or more integers >= 1")
        for task in TASKS:
            a: AgentRunConf = getattr(self.agents, task)
            if a.total_timesteps is not None and a.total_timesteps < 1:
                raise PipelineError(f"agents.{task}.total_timesteps", f"{a.total_timesteps}: allowed >= 1 or null")
            if a.max_minutes is not None and not a.max_minutes > 0:
                raise PipelineError(f"agents.{task}.max_minutes", f"{a.max_minutes}: allowed > 0 or null")


def register_configs() -> None:
    """Store the results schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="results_schema", node=ResultsConf)


register_configs()

TASKS = ("calibration", "pulse_shaping", "drift_tracking")
PLOTS = ("infidelity_vs_shots.png", "pulse_shapes.png", "drift_timeline.png")
ISSUE_TARGETS = {
    "calibration": "median <= 1.1× and p90 <= 1.5× the coherence limit at <= 1000 shots",
    "pulse_shaping": "1 − F <= 1e-3 on a 6 ns X gate (reported against the GRAPE model optimum)",
    "drift_tracking": ">= 2× lower time-averaged error than the hourly standard recalibration at <= its shots",
}


# -- the job ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultsReport:
    results_md: Path
    plots: list[Path]
    agents: dict[str, dict[str, Any]]
    verdicts: list[dict[str, Any]]
    wall_time_s: float


def to_results_conf(cfg: DictConfig) -> ResultsConf:
    return typed_conf(cfg, ResultsConf, "results")


def _trained_at(run_dir: Path) -> str:
    """Short git revision the run was trained at, from its provenance (``?`` if unknown)."""
    try:
        rev = str(json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))["git_revision"])
    except (OSError, ValueError, KeyError):
        return "?"
    head, dirty = rev.removesuffix("-dirty"), rev.endswith("-dirty")
    return head[:10] + ("-dirty" if dirty else "")


def _reusable(run_dir: Path, experiment: str, overrides: Sequence[str]) -> dict[str, Any] | None:
    """The record of a finished run in ``run_dir`` trained with exactly this config, or None."""
    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.yaml"
    if not (metrics_path.is_file() and config_path.is_file()):
        return None
    want = stored_config(compose_section("train", [override("experiment", experiment), *overrides]))
    if yaml.safe_load(config_path.read_text(encoding="utf-8")) != want:
        return None
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    assert isinstance(want, dict)
    previous = {}
    record_path = run_dir / "results_record.json"
    if record_path.is_file():
        previous = json.loads(record_path.read_text(encoding="utf-8"))
    return {**previous, "experiment": experiment, "run_dir": str(run_dir), "algo": want["agent"]["name"],
            "env_id": want["env"]["id"], "seed": want["seed"], "total_timesteps": want["total_timesteps"],
            "steps": int(metrics["num_timesteps"]), "reused": True,
            "final_infidelity": metrics["final_infidelity"],
            "final_infidelity_median": metrics["final_infidelity_median"],
            "stopped_early": bool(metrics.get("stopped_early"))}


def _runs(conf: ResultsConf) -> list[tuple[str, str, AgentRunConf, str]]:
    """(record key, task, its settings, experiment) of every run to train, in order."""
    runs = []
    for task in TASKS:
        a: AgentRunConf = getattr(conf.agents, task)
        runs.append((task, task, a, pick_experiment(a.experiment, a.preferred, a.fallback)))
    for name, experiment in conf.calibration_variants.items():
        runs.append((f"calibration_{name}", "calibration", conf.agents.calibration, experiment))
    return runs


def train_agents(conf: ResultsConf, work: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    runs = _runs(conf)
    for k, (key, task, a, experiment) in enumerate(runs, start=1):
        overrides = [override("seed", a.seed), override("callbacks.progress_bar", conf.progress_bar)]
        if a.total_timesteps is not None:
            overrides.append(override("total_timesteps", a.total_timesteps))
        overrides += list(a.overrides)
        run_dir = work / "train" / key
        found = _reusable(run_dir, experiment, overrides) if conf.reuse_runs else None
        if found is not None:
            print(f"[train {k}/{len(runs)}] {key}: reusing the finished run {run_dir}", flush=True)
            records[key] = {**found, "task": task}
            continue
        if run_dir.exists():
            shutil.rmtree(run_dir)  # another config or an unfinished run: start over
        print(f"[train {k}/{len(runs)}] {key}: experiment={experiment}"
              + ("" if a.max_minutes is None else f" (time box {a.max_minutes:g} min)"), flush=True)
        rec = train_run(experiment, run_dir, overrides, None if a.max_minutes is None else 60.0 * a.max_minutes)
        rec["reused"] = False
        (run_dir / "results_record.json").write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
        print(f"[train {k}/{len(runs)}] {key}: {rec['algo']} {rec['steps']:,} steps in "
              f"{fmt_seconds(rec['wall_time_s'])}" + (" (time box hit)" if rec["time_box_hit"] else ""), flush=True)
        records[key] = {**rec, "task": task}
    return records


ESTIMATOR = "estimator_only"
REFERENCES = {ESTIMATOR: "reference: no learned policy"}


def agent_method(key: str, record: Mapping[str, Any]) -> str:
    """The evaluation's method name of a trained run: ``agent_<algo>[_<variant>]``."""
    suffix = key.removeprefix(str(record["task"]))
    return f"agent_{record['algo']}{suffix}"


def evaluation_agents(conf: ResultsConf, records: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``agents`` of ``evaluate.yaml``: every trained run, and the estimator reference
    when the calibration agent plays a GateCalibration version with residual actions (v1+)."""
    from pulsecal.agents.evaluation import ENV_IDS

    agents = [agent_entry(agent_method(key, rec), str(rec["task"]), rec) for key, rec in records.items()]
    cal = records["calibration"]
    if conf.estimator_reference and cal["env_id"] != ENV_IDS["calibration"]:
        agents.append({"name": ESTIMATOR, "task": "calibration", "algo": "zero",
                       "env_kwargs": trained_env_kwargs(Path(cal["run_dir"])), "env_id": cal["env_id"]})
    return agents


def results(cfg: DictConfig, argv: Sequence[str] | None = None) -> ResultsReport:
    """Train, evaluate and write ``results.md`` + plots as the composed ``results.yaml`` says."""
    conf = to_results_conf(cfg)
    t0 = time.perf_counter()
    work, out = Path(conf.work_dir), Path(conf.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    records = train_agents(conf, work)

    ev = conf.evaluate
    from pulsecal.agents.pipelines.evaluate import evaluate

    agents = evaluation_agents(conf, records)
    print(f"[evaluate] {len(agents)} agents and the baselines: {ev.n_devices} held-out devices (seed {ev.seed}), "
          f"budgets {ev.budgets}, pulse shaping, drift tracking", flush=True)
    t_eval = time.perf_counter()
    ecfg = compose_section("evaluate", [
        override("baseline", ev.baseline), override("out_dir", work / "evaluate"),
        override("n_devices", ev.n_devices), override("seed", ev.seed), override("budgets", ev.budgets),
        override("workers", ev.workers), override("progress", ev.progress), "pulse_shaping=true", "drift=true",
        override("agents", agents), *ev.overrides])
    report = evaluate(ecfg)
    eval_s = time.perf_counter() - t_eval

    plots_dir = out / "results"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    for f in report.files:
        if f.suffix == ".png":
            plots.append(Path(shutil.copy2(f, plots_dir / f.name)))
    for key, rec in records.items():
        curve = Path(rec["run_dir"]) / "learning_curve.png"
        if curve.is_file():
            plots.append(Path(shutil.copy2(curve, plots_dir / f"learning_curve_{key}.png")))
    wall = time.perf_counter() - t0
    md = write_results_md(out / "results.md", conf, OmegaConf.to_container(ecfg, resolve=True), records, report,
                          plots, list(sys.argv if argv is None else argv), wall, eval_s)
    print(f"\nwrote {md} and {len(plots)} plots in {plots_dir} ({fmt_seconds(wall)})")
    for v in report.verdicts:
        if v["agent"]:
            print(f"  {v['task']:<15} {v['method']:<16} {'PASS' if v['passed'] else 'fail'}  {v['detail']}")
    return ResultsReport(md, plots, records, report.verdicts, wall)


# -- docs/results.md ----------------------------------------------------------------------------


def command_line(argv: Sequence[str]) -> str:
    """The command as typed: ``python -m pulsecal.scripts.results`` for a module run
    (whose argv[0] is the file), the console script's name otherwise."""
    if not argv:
        return "python -m pulsecal.scripts.results"
    head = "python -m pulsecal.scripts.results" if argv[0].endswith(".py") else Path(argv[0]).name
    return " ".join([head, *argv[1:]])


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def write_results_md(path: Path, conf: ResultsConf, eval_cfg: Any, records: Mapping[str, Mapping[str, Any]],
                     report: Any, plots: Sequence[Path], argv: Sequence[str], wall_s: float, eval_s: float) -> Path:
    from pulsecal.agents.provenance import git_revision, package_versions

    versions = package_versions()
    ev = conf.evaluate
    lines = [
        "# pulsecal results",
        "",
        "Written by `make results` (`python -m pulsecal.scripts.results`) down to the benchmark marker; do not "
        "edit that part by hand. Commit this file together with `docs/results/`. The sections after the marker "
        "are quoted from the benchmark scripts each names, and a rewrite keeps them.",
        "",
        "## How these numbers were made",
        "",
        f"- command: `{command_line(argv)}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}; wall time {fmt_seconds(wall_s)} "
        f"(evaluation {fmt_seconds(eval_s)}) on {os.cpu_count()} cores "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), {platform.platform()}",
        f"- git revision: `{git_revision()}`",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- evaluation: `held_out_devices({ev.n_devices}, seed={ev.seed})` calibration devices, shot budgets "
        f"{', '.join(str(b) for b in sorted(set(ev.budgets)))}, baselines `{ev.baseline}`, pulse shaping on "
        f"`{eval_cfg['shaping_preset']}` ({eval_cfg['shaping_duration_s'] * 1e9:g} ns, GRAPE restarts "
        f"{eval_cfg['grape_restarts']}, maxiter {eval_cfg['grape_maxiter']}), drift tracking on "
        f"{eval_cfg['drift_devices']} device(s) over {eval_cfg['drift_hours']:g} h (seed {ev.seed})",
        "",
        "## Agents",
        "",
        "A reused run was trained earlier, at the revision in its `provenance.json` (\"trained at\"; "
        "`-dirty` means uncommitted changes were in the tree then); only the evaluation ran at the "
        "revision above.",
        "",
        "| task | experiment | algorithm | env | seed | steps (budget) | training wall time | stopped by | trained at | run |",
        "|---|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for key, r in records.items():
        stop = ("time box" if r.get("time_box_hit") else "target" if r.get("stopped_early") else "budget")
        wall = "reused" if r.get("reused") and "wall_time_s" not in r else fmt_seconds(float(r.get("wall_time_s", 0)))
        lines.append(f"| {key} | `{r['experiment']}` | {r['algo']} | `{r['env_id']}` | {r['seed']} | "
                     f"{int(r['steps']):,} ({int(r['total_timesteps']):,}) | {wall} | {stop} | "
                     f"`{_trained_at(Path(r['run_dir']))}` | `{r['run_dir']}` |")
    lines += ["", "## Issue targets", "", "| issue target | task | agent | passed | detail |", "|---|---|---|:-:|---|"]
    for task in TASKS:
        mine = [v for v in report.verdicts if v["task"] == task and v["agent"]]
        if not mine:
            lines.append(f"| {ISSUE_TARGETS[task]} | {task} | – | NO | no agent result |")
        for v in mine:
            method = v["method"] + (f" ({REFERENCES[v['method']]})" if v["method"] in REFERENCES else "")
            lines.append(f"| {ISSUE_TARGETS[task]} | {task} | {method} | {'yes' if v['passed'] else 'NO'} "
                         f"| {v['detail']} |")
    lines += calibration_notes(records, report)
    # The evaluation's own table (summary, every verdict including the baselines').
    body = (Path(report.out_dir) / "results.md").read_text(encoding="utf-8").splitlines()
    lines += ["", "## Evaluation", ""] + [("#" + s if s.startswith("## ") else s) for s in body[1:]]
    lines += ["", "## Plots", ""]
    for p in plots:
        lines += [f"![{p.stem}]({_rel(p, path.parent)})", ""]
    lines += kept_benchmark_sections(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


#: The line after which results.md holds sections quoted from benchmark scripts that
#: ``make results`` does not run (each names its command); a rewrite keeps them.
BENCHMARK_MARKER = "<!-- benchmark sections: quoted from the scripts they name; make results keeps them -->"


def kept_benchmark_sections(path: Path) -> list[str]:
    """The marker and everything after it in the existing file (nothing if there is none)."""
    try:
        old = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return old[old.index(BENCHMARK_MARKER):] if BENCHMARK_MARKER in old else []


def _run_reward(run_dir: Path) -> str | None:
    """The ``env.kwargs.reward`` a run trained with (None: the env's default)."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except OSError:
        return None
    reward = ((config.get("env") or {}).get("kwargs") or {}).get("reward")
    return None if reward is None else str(reward)


REWARD_TEXT = {
    "truth": "`reward: truth`: the log-improvement of the *true* excess infidelity over the coherence limit, "
             "which only a simulation knows. A privileged, simulation-only training signal: it is never in the "
             "observation (the policy acts on measurements only, in training and in this evaluation), but the "
             "training itself could not be repeated on hardware",
    "measured": "`reward: measured`: the log-improvement of the posterior expected error of the env's own "
                "estimate, computed from the shots alone (a signal a lab has)",
}


def calibration_notes(records: Mapping[str, Mapping[str, Any]], report: Any) -> list[str]:
    """What the calibration agents were trained on, and the trained policies next to the
    estimator alone and the standard sequence, from the evaluation's own summary."""
    cal_keys = [k for k, r in records.items() if r.get("task") == "calibration"]
    methods = {agent_method(k, records[k]): k for k in cal_keys}
    summary = [s for s in report.summary if s["task"] == "calibration"]
    present = {s["method"] for s in summary}
    lines = ["", "## Calibration agents: training signal and what the policy adds", ""]
    for method, key in methods.items():
        r = records[key]
        reward = _run_reward(Path(r["run_dir"]))
        text = REWARD_TEXT.get(reward or "", f"`reward: {reward}`" if reward else "the env's default reward")
        lines.append(f"- `{method}` (`{r['experiment']}`, seed {r['seed']}, {int(r['steps']):,} steps) "
                     f"was trained with {text}.")
    if ESTIMATOR in present:
        lines.append(f"- `{ESTIMATOR}` has no learned policy: the all-zero action in every round, i.e. the env's "
                     "own running estimate (sign-flipped twin probes combined by inverse variance) acted on as "
                     "it stands, at the middle probe depth. The difference to it is what training adds.")
    shown = [m for m in (*methods, ESTIMATOR, "standard") if m in present]
    lines += ["", "| method | budget | ratio median | ratio p90 | 1−F median | shots median |",
              "|---|---:|---:|---:|---:|---:|"]
    for m in shown:
        for s in sorted((s for s in summary if s["method"] == m), key=lambda s: s["budget"]):
            lines.append(f"| {m} | {s['budget']} | {s['ratio_median']:.4f} | {s['ratio_p90']:.4f} | "
                         f"{s['infidelity_median']:.4g} | {s['shots_median']:.0f} |")
    verdict = {v["method"]: v for v in report.verdicts if v["task"] == "calibration"}
    if ESTIMATOR in verdict:
        v = verdict[ESTIMATOR]
        lines += ["", f"The estimator alone {'meets' if v['passed'] else 'misses'} the issue target by itself "
                      f"({v['detail']}). What the trained policies change relative to it (ratio median / p90; "
                      "negative is better):", ""]
        by = {(s["method"], s["budget"]): s for s in summary}
        for b in sorted({s["budget"] for s in summary if s["method"] == ESTIMATOR}):
            estimator = by[(ESTIMATOR, b)]
            deltas = [f"`{m}` {by[(m, b)]['ratio_median'] - estimator['ratio_median']:+.4f} / "
                      f"{by[(m, b)]['ratio_p90'] - estimator['ratio_p90']:+.4f}" for m in methods if (m, b) in by]
            lines.append(f"- {b} shots: " + ("; ".join(deltas) if deltas else "no trained policy at this budget"))
    return lines


def quick_argv(argv: Sequence[str]) -> list[str]:
    """``--quick`` as Hydra overrides: the quick profile, and a fresh temporary ``out_dir``
    unless one is given."""
    args = [a for a in argv if a != "--quick"]
    if len(args) == len(argv):
        return list(argv)
    args.append("results_profile=quick")  # its work_dir is <out_dir>/work: never runs/results
    if not any(a.split("=", 1)[0].lstrip("+") == "out_dir" for a in args):
        args.append(override("out_dir", tempfile.mkdtemp(prefix="pulsecal-results-quick-")))
    return args


# -- entry point --------------------------------------------------------------------------------

__all__ = ["BENCHMARK_MARKER", "ResultsConf", "ResultsReport", "kept_benchmark_sections", "quick_argv", "results",
           "write_results_md"]
