"""The two-qubit agent experiments (cz_calibration_agent, cr_calibration_agent) end to end
at toy size: a few SAC steps, export to ONNX, and one episode of the exported policy in a
process where torch and stable-baselines3 cannot be imported; their config pieces (env
schemas, multi-qubit device configs); the held-out comparison and the bench rows."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from test_train import compose  # noqa: E402

ENV_OF = {"cz_calibration_agent": "pulsecal/CZCalibration-v0", "cr_calibration_agent": "pulsecal/CRCalibration-v0"}
# The env options of each experiment's torch-free episode (as it trains: closed system).
EPISODE_KWARGS = {"cz_calibration_agent": {"open_system": False, "sampler": {}},
                  "cr_calibration_agent": {"open_system": False}}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _tiny_run(experiment: str, run_dir: Path) -> dict[str, float]:
    from pulsecal.agents.pipelines.train import train

    overrides = [f"experiment={experiment}", "total_timesteps=48", "env.n_envs=2", "device.n_eval_devices=1",
                 "callbacks.eval_every_steps=48", "callbacks.eval_episodes=1", "callbacks.checkpoint_every_steps=48",
                 "agent.learning_starts=16", "agent.batch_size=16", "agent.gradient_steps=1", "logger=csv",
                 "agent.policy_kwargs.net_arch=[16]"]
    return train(compose(overrides), run_dir=run_dir)


_BLOCKER = '''
import importlib.abc, sys

BLOCKED = {"torch", "stable_baselines3", "sb3_contrib"}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this torch-free test")
        return None


sys.meta_path.insert(0, Blocker())
'''

_EPISODE = '''
import json, sys
import gymnasium as gym
import numpy as np

import pulsecal.envs  # noqa: F401
from pulsecal.agents.runner import load_policy

try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("blocker inactive: torch imported")

policy = load_policy(sys.argv[1])
env = gym.make(policy.env_id, **json.loads(sys.argv[2]))
obs, info = env.reset(seed=3)
first = policy.act(np.asarray(obs, dtype=np.float64))
steps, done = 0, False
while not done:
    obs, _, term, trunc, info = env.step(policy.act(np.asarray(obs, dtype=np.float64)))
    steps += 1
    done = term or trunc
print(json.dumps({"first": first.tolist(), "steps": steps, "terminated": bool(term), "shots": int(info["shots_used"]),
                  "fidelity": float(info["fidelity"]),
                  "leaked": sorted(m for m in ("torch", "stable_baselines3", "sb3_contrib") if m in sys.modules)}))
'''


@pytest.mark.parametrize("experiment", ["cz_calibration_agent", "cr_calibration_agent"])
def test_experiment_trains_exports_and_runs_torch_free(experiment: str, tmp_path: Path) -> None:
    import json

    import gymnasium as gym

    from pulsecal.agents.export import export_run
    from pulsecal.agents.runner import load_policy

    metrics = _tiny_run(experiment, tmp_path / "run")
    assert metrics["num_timesteps"] >= 48 and (tmp_path / "run" / "model.zip").is_file()
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["env_id"] == ENV_OF[experiment]
    # The experiment trains closed-system on per-episode device draws (not the preset).
    kwargs = provenance["env_kwargs"]
    assert kwargs["open_system"] is False
    assert kwargs.get("sampler") == {} or kwargs.get("randomize_device") is True

    export = export_run(tmp_path / "run", tmp_path / "export")
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["export_check"]["max_abs_diff"] <= 1e-5

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_BLOCKER))
    script = tmp_path / "episode.py"
    script.write_text(textwrap.dedent(_EPISODE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script), str(export), json.dumps(EPISODE_KWARGS[experiment])],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["leaked"] == []
    # The episode ran to the env's own end: the shot budget.
    budget = {"cz_calibration_agent": 16_000, "cr_calibration_agent": 20_000}[experiment]
    assert result["terminated"] and result["shots"] <= budget and result["steps"] >= 5
    assert 0.0 < result["fidelity"] <= 1.0
    # The torch-free process acts as the exported policy does here.
    here = gym.make(ENV_OF[experiment], **EPISODE_KWARGS[experiment])
    obs, _ = here.reset(seed=3)
    np.testing.assert_allclose(result["first"], load_policy(export).act(np.asarray(obs, dtype=np.float64)), atol=1e-6)


@pytest.mark.parametrize(("schema_name", "config_path"), [
    ("cz_calibration_schema", "pulsecal.envs.cz_calibration:CZCalibrationConfig"),
    ("cr_calibration_schema", "pulsecal.envs.cr_calibration_core:CRCalibrationConfig")])
def test_two_qubit_env_schema_lists_the_options_of_its_env(schema_name: str, config_path: str) -> None:
    import importlib

    from pulsecal.configs.env_schema import ENV_SCHEMAS

    module, name = config_path.split(":")
    config_class = getattr(importlib.import_module(module), name)
    options_class = {f.name: f for f in dataclasses.fields(ENV_SCHEMAS[schema_name])}["kwargs"].default_factory  # type: ignore[misc]
    offered = {f.name for f in dataclasses.fields(options_class)}
    fields = {f.name for f in dataclasses.fields(config_class)}
    assert offered <= fields
    assert fields - offered <= {"shape"}  # the ECR's pulse shape is an object built in code


def test_multi_qubit_sampler_schema_lists_the_sampler_fields() -> None:
    from pulsecal.configs.env_schema import MultiQubitSamplerConf
    from pulsecal.envs.multi_qubit_presets import MultiQubitSampler

    offered = {f.name for f in dataclasses.fields(MultiQubitSamplerConf)}
    assert offered == {f.name for f in dataclasses.fields(MultiQubitSampler)} - {"preset"}


@pytest.mark.parametrize("override", ["env.kwargs.shot_budgt=1000", "env.kwargs.sampler.t1_factr=[1,2]"])
def test_misspelt_two_qubit_env_option_fails_at_compose_time(override: str) -> None:
    from pulsecal.agents.pipelines.console import format_error

    with pytest.raises(Exception) as exc:
        compose(["experiment=cz_calibration_agent", override])
    key = override.split("=")[0]
    assert format_error(exc.value).startswith(f"error: {key}: ")


@pytest.mark.parametrize(("overrides", "message"), [
    (["env=cz_calibration"], "does not fit env pulsecal/CZCalibration-v0"),
    (["device=pair_cr"], "does not fit env pulsecal/GateCalibration-v0"),
])
def test_env_and_device_of_different_kinds_are_refused_naming_device(overrides: list[str], message: str) -> None:
    from pulsecal.agents.pipelines.train import run_env_kwargs, to_train_conf
    from pulsecal.configs.schema import ConfigError

    conf = to_train_conf(compose(overrides))
    with pytest.raises(ConfigError) as exc:
        run_env_kwargs(conf, conf.env.id)
    assert exc.value.key == "device" and message in str(exc.value)


@pytest.mark.parametrize(("fields", "key"), [({"preset": "transmon_20ns"}, "preset"), ({"randomize": True}, "randomize"),
                                             ({"t1_s": 50e-6}, "t1_s"), ({"n_eval_devices": 0}, "n_eval_devices")])
def test_multi_qubit_training_devices_refuse_what_does_not_apply(fields: dict, key: str) -> None:
    from pulsecal.agents.training_devices import MultiQubitTrainingDevices
    from pulsecal.configs.schema import ConfigError

    with pytest.raises(ConfigError) as exc:
        MultiQubitTrainingDevices(**{"preset": "two_transmons_cz", **fields})
    assert exc.value.key == key


def test_held_out_comparison_uses_the_same_start_and_counts_shots(tmp_path: Path) -> None:
    from pulsecal.agents.export import export_run
    from pulsecal.agents.pipelines import eval_two_qubit as ev

    _tiny_run("cr_calibration_agent", tmp_path / "run")
    export = export_run(tmp_path / "run", tmp_path / "export")
    rows = ev.compare("cr", export, 1, calibrate_open=False, log=lambda _: None)
    by = {r["method"]: r for r in rows}
    assert set(by) == {"start", "agent", "textbook"}
    assert 0 < by["agent"]["shots"] <= 20_000 and by["textbook"]["shots"] == 14_500
    # Both scored on the same open-system device: the same coherence limit for the same duration.
    assert by["agent"]["coherence_limit"] == pytest.approx(by["textbook"]["coherence_limit"], rel=1e-9)
    for r in rows:
        assert r["ratio"] == pytest.approx(r["infidelity"] / r["coherence_limit"])
    s = ev.summary(rows)
    assert s["agent"]["n"] == 1 and s["textbook"]["shots_median"] == 14_500
    # The same start as the env episode draws (the textbook is handed it, not a fresh one).
    start, _, _ = ev._agent_episode("cr", ev.held_out_multi_qubit_devices(1)[0], None, ev.EPISODE_SEED, False)
    assert by["start"]["infidelity"] == pytest.approx(ev._score("cr", ev.held_out_multi_qubit_devices(1)[0],
                                                                start)["infidelity"], rel=1e-12)
    with pytest.raises(ValueError, match="trained on pulsecal/CRCalibration-v0"):
        ev.compare("cz", export, 1, calibrate_open=False)


def test_bench_reports_the_two_qubit_envs_and_their_ppo_ratio() -> None:
    from pulsecal.agents.pipelines import bench_envs

    res = bench_envs.run(min_time_s=0.05, ppo_envs=(), env_ids=(), two_qubit_ppo_steps=16, two_qubit_ppo_repeats=1,
                         two_qubit_envs=("pulsecal/CRCalibration-v0",))
    (row,) = res["two_qubit_env_steps_per_s"]
    assert row["env"] == "pulsecal/CRCalibration-v0" and row["single"] > 0 and row["vector_4"] > 0
    p = res["two_qubit_ppo_steps_per_s"]["pulsecal/CRCalibration-v0"]
    assert p["ratio"] == pytest.approx(p["env"] / p["null"]) and p["null"] > 0
    assert res["targets"]["two_qubit_ppo_ratio"] == 0.7
