"""``make demo`` (``python -m pulsecal.scripts.demo``) end to end on tiny budgets, its summary
listing the export folder; ``pulsecal-results --quick`` end to end (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pulsecal.agents.pipelines.common import override, pick_experiment, shipped_experiments

# Seconds, not minutes: a smoke-sized agent (meaningless numbers, every stage runs).
TINY = [
    "train.experiment=gate_calibration_ppo", "train.total_timesteps=256", "train.eval_every_steps=128",
    "train.progress_bar=false",
    override("train.overrides", ["env.n_envs=2", "agent.n_steps=64", "agent.batch_size=64", "agent.n_epochs=2",
                                 "device.n_eval_devices=2", "callbacks.eval_episodes=2", "logger=csv"]),
    "evaluate.n_devices=2", "evaluate.workers=1", "evaluate.progress=false", "evaluate.methods=[standard]",
    "evaluate.baseline=quick", "replay.max_steps=3",
]


def _run(module: str, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_demo_runs_every_stage_and_lists_its_artefacts(tmp_path: Path) -> None:
    out = tmp_path / "demo out"  # a space: paths reach every stage's config intact
    proc = _run("pulsecal.scripts.demo", [override("out_dir", out), *TINY], tmp_path, 300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    export = Path(summary["artefacts"]["export folder"])
    assert export == out / "export" and (export / "policy.onnx").is_file() and (export / "manifest.json").is_file()
    assert "export folder" in text and str(export) in text
    for path in summary["artefacts"].values():
        assert Path(path).exists(), path
    for key in ("physics plot", "training run", "results table", "results csv", "replay report", "summary"):
        assert key in summary["artefacts"]
    rows = summary["numbers"]["evaluate"]["calibration"]
    assert {r["method"] for r in rows} == {"standard", "agent_ppo"}
    replay = summary["numbers"]["replay"]
    assert replay["ledger_shots"] > 0 and replay["true_infidelity_final"] is not None
    assert "pulsecal demo: done in" in text and "Replay of the exported policy" in text
    assert (out / "summary.md").read_text().count(str(export)) >= 1

    # A second run starts clean (the replay session is not resumed with another policy).
    again = _run("pulsecal.scripts.demo", [override("out_dir", out), *TINY, "physics.enabled=false"], tmp_path, 300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not (out / "physics_demo.png").exists()


def test_bad_demo_value_is_one_line(tmp_path: Path) -> None:
    proc = _run("pulsecal.scripts.demo", ["evaluate.n_devices=0"], tmp_path, 120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: evaluate.n_devices: 0: allowed an integer >= 1"
    assert not (tmp_path / "demo_out" / "train").exists()


def test_the_best_shipped_experiment_is_picked() -> None:
    assert pick_experiment("smoke", "gate_calibration_agent", "gate_calibration_ppo") == "smoke"
    assert pick_experiment(None, "no_such_experiment", "gate_calibration_ppo") == "gate_calibration_ppo"
    if "gate_calibration_agent" in shipped_experiments():
        assert pick_experiment(None, "gate_calibration_agent", "gate_calibration_ppo") == "gate_calibration_agent"


@pytest.mark.slow
def test_results_quick_writes_results_md_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = _run("pulsecal.scripts.results", ["--quick", override("out_dir", out)], tmp_path, 900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "results.md").read_text()
    for needle in ("command: `python -m pulsecal.scripts.results --quick", "git revision", "packages:",
                   "held_out_devices(4, seed=12345)", "## Issue targets", "## Agents"):
        assert needle in md
    assert {p.name for p in (out / "results").glob("*.png")} >= {"infidelity_vs_shots.png", "pulse_shapes.png",
                                                                   "drift_timeline.png"}
    assert (out / "work" / "train" / "calibration" / "model.zip").is_file()
    assert not (Path.cwd() / "docs" / "results.md").exists() or Path.cwd() != tmp_path
