"""Sweeps run the GateCalibration version a policy was trained on: an ONNX policy exported
from a (tiny) GateCalibration-v1 model sweeps two simulated qubits in v1, the version
taken from its manifest (``env_id: null``) and threaded through ``QubitJob`` into every
session; a config naming another version than the manifest is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

V1 = "pulsecal/GateCalibration-v1"


@pytest.fixture(scope="module")
def v1_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    import gymnasium as gym
    from stable_baselines3 import PPO

    import pulsecal.envs  # noqa: F401  (registers the ids)
    from pulsecal.agents.export import export_policy, metadata_from_env

    env = gym.make(V1, shot_budget=4800)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, policy_kwargs={"net_arch": [8]},
                device="cpu", seed=0)
    model.learn(64)  # a tiny training: the point is the plumbing, not the policy's quality
    return export_policy(model, tmp_path_factory.mktemp("v1") / "export", metadata=metadata_from_env(env))


def _config(overrides: list[str]) -> dict[str, Any]:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    import pulsecal.agents.pipelines.replay  # noqa: F401  (registers the replay schemas)

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        cfg = compose(config_name="replay", overrides=overrides)
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


def test_sweep_of_an_exported_v1_policy_on_two_simulated_qubits(v1_export: Path, tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.sweep import sweep_job
    from pulsecal.hardware import sweep as sw

    manifest = json.loads((v1_export / "manifest.json").read_text())
    assert manifest["env"]["id"] == V1
    base = ["backend=simulated", "policy=onnx", f"policy.folder={v1_export}", "max_steps=4", "plots=false",
            "env.shot_budget=4800", f"sweep.dir={tmp_path / 'sweep'}", "sweep.name=v1", "sweep.params_store=null",
            "sweep.total_shots=20000", "sweep.plots=false"]
    outcomes = [sweep_job(_config([*base, f"qubit={q}"])) for q in (0, 1)]
    assert [o.state for o in outcomes] == ["finished", "finished"], [o.error for o in outcomes]
    for q, o in zip((0, 1), outcomes, strict=True):
        settings = json.loads((tmp_path / "sweep" / f"q{q}" / "session.json").read_text())["settings"]
        assert settings["env_id"] == V1
        # v1 measures six twins of 4800 // (6 x 8) = 100 shots per round: 5 rounds here.
        assert o.result is not None and o.result.ledger_shots == 5 * 600
        report = json.loads((tmp_path / "sweep" / f"q{q}" / "report.json").read_text())
        assert report["truth"]["infidelity_ratio"] > 1  # the gate improved on its own device
    s = sw.summarize(tmp_path / "sweep")
    assert [r.status for r in s.rows] == ["finished", "finished"] and s.total_shots == 6000
    budget = json.loads((tmp_path / "sweep" / "budget.json").read_text())
    # The grant is sized by v1's shots (5 rounds x 600 x 1.1 + 3 calls of 600), not v0's.
    assert all(int(v["used"]) == 3000 for v in budget["qubits"].values())


def test_env_id_that_contradicts_the_manifest_is_refused(v1_export: Path, tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.sweep import sweep_job

    c = _config(["backend=simulated", "policy=onnx", f"policy.folder={v1_export}", "qubit=0",
                 "env_id=pulsecal/GateCalibration-v0", f"sweep.dir={tmp_path}", "sweep.params_store=null"])
    with pytest.raises(ValueError, match=r"env_id='pulsecal/GateCalibration-v0': allowed the policy's own "
                                         r"'pulsecal/GateCalibration-v1'"):
        sweep_job(c)
