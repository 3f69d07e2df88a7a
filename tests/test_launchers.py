"""Hydra launchers for sweeps: the Ray launcher (local instance, or an existing cluster) and
the SLURM launcher compose for both entry points with keys their plugins accept; a
4-qubit calibration sweep through Ray on a local instance gives exactly the joblib
launcher's results, and so does a training sweep (slow tier)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _compose(config: str, overrides: list[str]):
    from hydra import compose, initialize_config_module

    import pulsecal.agents.pipelines.replay  # registers the replay schemas
    import pulsecal.agents.pipelines.train  # noqa: F401  (registers the training schemas)

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        return compose(config_name=config, overrides=overrides, return_hydra_config=True)


# This file shadows the plugin's `ray` config of the same name (hydra/launcher=ray is the
# documented spelling), which Hydra 1.3 still validates against the plugin's schema.
@pytest.mark.filterwarnings(r"ignore:(?s).*is validated against ConfigStore schema")
@pytest.mark.parametrize("config", ["replay", "train"])
@pytest.mark.parametrize("launcher", ["ray", "ray_cluster"])
def test_ray_launcher_configs_pass_only_ray_init_arguments(config: str, launcher: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    import ray
    from omegaconf import OmegaConf

    monkeypatch.setenv("RAY_ADDRESS", "ray://head.example:10001")
    cfg = _compose(config, [f"hydra/launcher={launcher}"])
    lc = cfg.hydra.launcher
    assert lc._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    init = OmegaConf.to_container(lc.ray.init, resolve=True)
    assert isinstance(init, dict)
    allowed = set(inspect.signature(ray.init).parameters)
    assert set(init) <= allowed, set(init) - allowed
    assert set(OmegaConf.to_container(lc.ray.remote)) <= {"num_cpus", "max_retries", "num_gpus", "memory",
                                                           "resources", "runtime_env"}
    if launcher == "ray":
        assert init["address"] == "local" and init["object_store_memory"] > 0
    else:
        # Joining a cluster: the address from RAY_ADDRESS and no resource argument, which
        # ray.init refuses for an existing cluster (the plugin's setdefault keeps the null).
        assert init["address"] == "ray://head.example:10001"
        assert init["num_cpus"] is None and init["object_store_memory"] is None


@pytest.mark.parametrize("config", ["replay", "train"])
def test_slurm_launcher_config_matches_the_submitit_schema(config: str) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
    from omegaconf import OmegaConf

    cfg = _compose(config, ["hydra/launcher=slurm", "hydra.launcher.partition=cpu", "hydra.launcher.timeout_min=30"])
    lc = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert isinstance(lc, dict)
    assert set(lc) <= {f.name for f in dataclasses.fields(SlurmQueueConf)}
    assert lc["_target_"].endswith("SlurmLauncher") and lc["partition"] == "cpu" and lc["timeout_min"] == 30
    assert lc["max_num_timeout"] == 0 and lc["cpus_per_task"] == 1
    # The launcher class is importable: the config is usable on a login node.
    from hydra.utils import get_class

    get_class(lc["_target_"])


def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("pulsecal-replay")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pulsecal.scripts.replay"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONHASHSEED": "0", **env})


def test_four_qubit_sweep_on_local_ray_equals_joblib(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    sweep = ["-m", "replay_experiment=sweep_smoke"]
    (tmp_path / "joblib").mkdir()
    (tmp_path / "ray").mkdir()
    (tmp_path / "home").mkdir()
    jl = _cli([*sweep, "hydra/launcher=local"], tmp_path / "joblib")
    assert jl.returncode == 0, jl.stderr[-3000:]
    # RAY_AUTH_MODE=disabled: a private instance needs no token (ray would write one into
    # $HOME); HOME is a temporary folder anyway, so nothing lands in the real one.
    ry = _cli([*sweep, "hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2"], tmp_path / "ray",
              RAY_AUTH_MODE="disabled", HOME=str(tmp_path / "home"), RAY_USAGE_STATS_ENABLED="0")
    assert ry.returncode == 0, ry.stderr[-3000:]
    assert "Ray Launcher is launching 4 jobs" in ry.stdout + ry.stderr

    def rows(root: Path) -> list[dict]:
        data = json.loads((root / "runs" / "sweep" / "smoke" / "summary.json").read_text())
        return [{k: q[k] for k in ("qubit", "status", "final_params", "estimated_infidelity", "shots",
                                   "true_infidelity", "journal_complete")} for q in data["qubits"]]

    a, b = rows(tmp_path / "joblib"), rows(tmp_path / "ray")
    assert [r["qubit"] for r in a] == [0, 1, 2, 3] and all(r["status"] == "finished" for r in a)
    assert a == b
    assert not any((tmp_path / "home").iterdir()) or not (tmp_path / "home" / ".ray" / "auth_token").exists()


def _train_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("pulsecal-train")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from pulsecal.scripts.train import main; main()"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **env})


@pytest.mark.slow  # two tiny trainings per launcher, ~30 s each on 2 cores
@pytest.mark.filterwarnings(r"ignore:(?s).*is validated against ConfigStore schema")
def test_training_sweep_on_local_ray_equals_joblib(tmp_path: Path) -> None:
    """``pulsecal-train -m experiment=smoke seed=0,1 hydra/launcher=ray``: a training sweep
    runs through the Ray launcher on a private local instance and trains exactly what the
    joblib launcher trains (same seeds, same metrics)."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    sweep = ["-m", "experiment=smoke", "seed=0,1", "hydra.sweep.dir=sweep"]
    for name in ("joblib", "ray", "home"):
        (tmp_path / name).mkdir()
    jl = _train_cli([*sweep, "hydra/launcher=local"], tmp_path / "joblib")
    assert jl.returncode == 0, jl.stderr[-3000:]
    ry = _train_cli([*sweep, "hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2"], tmp_path / "ray",
                    RAY_AUTH_MODE="disabled", HOME=str(tmp_path / "home"), RAY_USAGE_STATS_ENABLED="0")
    assert ry.returncode == 0, ry.stderr[-3000:]
    assert "Ray Launcher is launching 2 jobs" in ry.stdout + ry.stderr

    def metrics(root: Path) -> list[dict]:
        out = []
        for job in ("0", "1"):
            m = json.loads((root / "sweep" / job / "metrics.json").read_text())
            assert (root / "sweep" / job / "model.zip").is_file()
            out.append({k: m[k] for k in ("num_timesteps", "final_infidelity", "final_return", "final_shots")})
        return out

    a, b = metrics(tmp_path / "joblib"), metrics(tmp_path / "ray")
    assert all(r["num_timesteps"] == 256 for r in a)
    assert a == b
    assert a[0] != a[1]  # the seeds differ, so the two jobs are two trainings
