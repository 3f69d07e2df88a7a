"""An export records the env and device its policy was trained on, also off the default
preset: ``pulsecal-train device=transmon_short`` (a few steps) then ``export_run`` gives a
manifest whose env and device sections are transmon_short's, a replay takes them, and a
session on another device class is refused naming the keys unless explicitly allowed."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")

# A real GateCalibration-v0 run, as short as PPO allows: one rollout of 16 steps.
TINY_SHORT = [
    "device=transmon_short", "logger=csv", "total_timesteps=16", "env.n_envs=1", "agent.n_steps=16",
    "agent.batch_size=16", "agent.n_epochs=1", "agent.policy_kwargs.net_arch=[8]",
    "callbacks.eval_every_steps=1000", "callbacks.eval_episodes=1", "callbacks.checkpoint_every_steps=1000",
    "callbacks.progress_bar=false", "device.n_eval_devices=1",
]


def _compose(name: str, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_module

    import pulsecal.agents.pipelines.replay  # noqa: F401  (registers the replay schemas)

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, its export) of a transmon_short training run."""
    import torch

    from pulsecal.agents.export import export_run
    from pulsecal.agents.pipelines.train import train

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("short") / "run"
    train(_compose("train", TINY_SHORT), run_dir=run)
    return run, export_run(run)


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def test_manifest_env_and_device_are_the_training_ones(short_run: tuple[Path, Path]) -> None:
    from pulsecal.agents.runner import load_policy
    from pulsecal.envs.presets import get_preset
    from pulsecal.hardware.replay import trained_env_of_export

    run, folder = short_run
    m = _manifest(folder)
    short = get_preset("transmon_short")
    assert m["env"]["kwargs"] == {"device": "transmon_short"}
    assert m["env"]["description"]["config"]["device"] == "transmon_short"
    assert m["device"]["preset"] == "transmon_short" == m["device"]["run_config"]["preset"]
    assert m["device"]["preset_parameters"]["params"]["transmon"]["dt_s"] == short.params.transmon.dt_s
    assert m["pulse"]["gate_settings"]["duration_s"] == short.gate_duration_s == 6e-9
    assert json.loads((run / "provenance.json").read_text())["env_kwargs"] == {"device": "transmon_short"}
    assert load_policy(folder).env_id == "pulsecal/GateCalibration-v0"
    trained = trained_env_of_export(folder)
    assert trained.device_preset == "transmon_short" and trained.settings["gate_duration_s"] == 6e-9


def test_a_run_recorded_before_env_kwargs_exports_the_same_sections(short_run: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    """Runs whose provenance.json has no ``env_kwargs`` get them rebuilt from config.yaml."""
    from pulsecal.agents.export import export_run

    run, folder = short_run
    old = tmp_path / "run"
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("export*"))
    provenance = json.loads((old / "provenance.json").read_text())
    del provenance["env_kwargs"]
    (old / "provenance.json").write_text(json.dumps(provenance))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = _manifest(export_run(old))
    assert not any("is out of date" in str(w.message) for w in caught)  # v0 is what the run trained
    new = _manifest(folder)
    assert again["env"] == new["env"]
    assert again["device"] == new["device"]


def test_replay_on_another_device_class_is_refused_naming_the_keys(short_run: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from pulsecal.agents.pipelines.replay import replay
    from pulsecal.agents.pipelines.replay_env import session_env

    _, folder = short_run
    base = ["policy=onnx", f"policy.folder={folder}", "max_steps=2", "plots=false"]
    with pytest.raises(ValueError) as err:
        replay(_compose("replay", ["backend=simulated", *base, f"folder={tmp_path / 'a'}"]))
    message = str(err.value)
    assert "env_defaults.device='transmon_20ns'" in message and "backend.preset='transmon_20ns'" in message
    assert "trained on device 'transmon_short'" in message and "policy.allow_device_mismatch=true" in message
    assert "(env.device=transmon_short backend.preset=transmon_short)" in message
    assert not (tmp_path / "a").exists()  # refused before the session folder is made
    # Only the key that still disagrees is named.
    with pytest.raises(ValueError, match=r"^backend\.preset='transmon_20ns': the policy") as err:
        session_env(OmegaConf.to_container(_compose("replay", ["backend=simulated", *base,
                                                               "env.device=transmon_short"]), resolve=True))
    assert "env.device" not in str(err.value).split(":")[0]


def test_replay_on_the_training_device_class_runs(short_run: tuple[Path, Path], tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.replay import replay

    _, folder = short_run
    r = replay(_compose("replay", ["backend=simulated", "backend.preset=transmon_short", "env.device=transmon_short",
                                   "policy=onnx", f"policy.folder={folder}", "max_steps=2", "plots=false",
                                   f"folder={tmp_path / 's'}"]))
    env = json.loads((tmp_path / "s" / "session.json").read_text())["settings"]["env"]
    assert env["device"] == "transmon_short" and env["gate_duration_s"] == 6e-9
    assert r.ledger_shots > 0


def test_an_explicit_override_runs_the_policy_on_another_device(short_run: tuple[Path, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from omegaconf import OmegaConf

    from pulsecal.agents.pipelines.replay_env import session_env

    _, folder = short_run
    c = OmegaConf.to_container(_compose("replay", ["backend=simulated", "policy=onnx", f"policy.folder={folder}",
                                                   "policy.allow_device_mismatch=true"]), resolve=True)
    env, _ = session_env(c)  # type: ignore[arg-type]
    assert env["device"] == "transmon_20ns"
    out = capsys.readouterr().out
    assert "warning: env_defaults.device='transmon_20ns', backend.preset='transmon_20ns'" in out
    assert "policy.allow_device_mismatch=true" in out
