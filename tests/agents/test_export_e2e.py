"""Export acceptance, end to end: a short ``pulsecal-train`` run, exported
with ``export_run``, replayed by the ``pulsecal-replay`` console script on the simulated
backend (safety envelope, shot ledger, journal) calibrates the gate as the in-torch policy
does when it drives the same session (same settings, seed and device) through
``pulsecal-replay``'s machinery.

Both sessions see the same device and shot-noise generator, so as long as the two policies
choose the same actions they draw the same counts. ONNX and SB3 actions agree to ~1e-7
(``test_export``), far inside one shot of probability resolution, so the sessions retrace
each other step for step: the same parameters and so the same true final infidelity. The
tolerances below allow float32 rounding, not a different trajectory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pulsecal.agents.pipelines.common import compose_section, override

# The replay env the policy trained in (GateCalibration-v0 defaults: 20 shots per probe,
# 1000-shot budget); pulsecal-replay's own defaults (50 shots, 100,000) would show the
# policy a budget fraction it never saw.
SESSION = ["backend=simulated", "seed=3", "session_id=e2e", "max_steps=12", "plots=false",
           "env.shots_per_probe=20", "env.shot_budget=1000"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from pulsecal.agents.export import export_run
    from pulsecal.agents.pipelines.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("e2e")
    cfg = compose_section("train", [
        "experiment=gate_calibration_ppo", "seed=0", "total_timesteps=2048", "env.n_envs=8",
        "callbacks.eval_every_steps=1024", "callbacks.eval_episodes=4", "callbacks.checkpoint_every_steps=2048",
        "callbacks.target_infidelity=null", "callbacks.progress_bar=false", "device.n_eval_devices=4", "logger=csv"])
    train(cfg, run_dir=root / "run")
    return root / "run", export_run(root / "run", root / "export")


def _replay_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("pulsecal-replay")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pulsecal.scripts.replay"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


def _truth(report: dict[str, Any]) -> tuple[float, float]:
    t = report["truth"]
    return 1.0 - float(t["initial"]["fidelity"]), 1.0 - float(t["final"]["fidelity"])


def test_exported_policy_calibrates_like_the_torch_policy(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.replay import replay

    run, export = trained
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["env"]["id"] == "pulsecal/GateCalibration-v0"
    assert manifest["export_check"]["max_abs_diff"] <= 1e-5

    # The exported folder through the pulsecal-replay command, as a lab runs it.
    onnx_folder = tmp_path / "onnx"
    out = _replay_cli([*SESSION, "policy=onnx", override("policy.folder", export),
                       override("folder", onnx_folder)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "report in" in out.stdout
    onnx = json.loads((onnx_folder / "report.json").read_text())

    # The in-torch policy of the same run through the same session machinery.
    sb3_folder = tmp_path / "sb3"
    cfg = compose_section("replay", [*SESSION, "policy=sb3", override("policy.run_dir", run),
                                     override("folder", sb3_folder)])
    torch_result = replay(cfg)
    sb3 = torch_result.report

    assert onnx["policy"]["kind"] == "onnx" and sb3["policy"]["kind"] == "sb3"
    # Every shot went through the envelope and the ledger, and the journal holds every action.
    ledger = json.loads((onnx_folder / "ledger.json").read_text())
    assert ledger and onnx["env_steps"] >= 1 and onnx["shots_used"] <= 1000
    events = [json.loads(line)["event"] for line in (onnx_folder / "journal.jsonl").read_text().splitlines()]
    assert events.count("action") == onnx["env_steps"] and "session_finished" in events

    # The same trajectory: the same actions, parameters and shots at every step.
    assert onnx["env_steps"] == sb3["env_steps"] and onnx["shots_used"] == sb3["shots_used"]
    for a, b in zip(onnx["trajectory"][1:], sb3["trajectory"][1:], strict=True):
        np.testing.assert_allclose(a["action"], b["action"], atol=1e-4)
        np.testing.assert_allclose(a["params"], b["params"], rtol=1e-5, atol=1e-3)  # detuning in Hz
    names = ("amplitude", "beta_s", "detuning_hz", "phase")
    np.testing.assert_allclose([onnx["final_params"][k] for k in names], [sb3["final_params"][k] for k in names],
                               rtol=1e-5, atol=1e-3)

    # The calibration improves the true gate, and equally for both policies.
    i0_onnx, i1_onnx = _truth(onnx)
    i0_sb3, i1_sb3 = _truth(sb3)
    assert i0_onnx == pytest.approx(i0_sb3, rel=1e-9)
    assert i1_onnx < i0_onnx, f"the exported policy did not improve the gate: {i0_onnx:.3g} -> {i1_onnx:.3g}"
    assert i1_onnx == pytest.approx(i1_sb3, rel=1e-3)
