"""Resuming a crashed or killed run: the step counter continues from the last complete
checkpoint, earlier artefacts stay byte for byte, new checkpoints get new names."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from test_train import TINY, Crash, compose, run_cli, sigkill_long_run  # noqa: E402


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_resume_after_crash_continues_step_counter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pulsecal.agents.pipelines.train import train

    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose(TINY), run_dir=run_dir, extra_callbacks=[Crash(at_step=200)])
    before = _digests(run_dir / "checkpoints")
    assert "step_0000000128.zip" in before and "step_0000000128.json" in before
    assert not (run_dir / "model.zip").exists()

    capsys.readouterr()
    metrics = train(compose([*TINY, f"resume={run_dir}"]))
    assert "resuming from the checkpoint at step 128 to total_timesteps=256" in capsys.readouterr().out
    assert metrics["start_step"] == 128
    assert metrics["num_timesteps"] >= 256
    after = _digests(run_dir / "checkpoints")
    assert {k: after[k] for k in before} == before  # earlier checkpoints untouched
    assert "step_0000000256.zip" in after
    assert (run_dir / "model.zip").is_file()
    # The first attempt's config is kept; the resume records its own next to it.
    assert (run_dir / "config.yaml").is_file() and (run_dir / "config-r1.yaml").is_file()
    eval_rows = (run_dir / "eval.csv").read_text().strip().splitlines()
    assert eval_rows[1].startswith("128") and eval_rows[-1].startswith("256")


def test_resume_of_a_finished_run_does_not_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pulsecal.agents.pipelines.train import train

    run_dir = tmp_path / "run"
    train(compose(TINY), run_dir=run_dir)
    out = capsys.readouterr().out
    # The run folder first; the final metric and every artefact's path at the end.
    assert out.startswith(f"run folder: {run_dir}\n")
    final = json.loads((run_dir / "metrics.json").read_text())["final_infidelity"]
    assert f"done at step 256: final_infidelity={final:.4g}" in out
    for name in ("model.zip", "vecnormalize.npz", "metrics.json", "learning_curve.png"):
        assert f" {run_dir / name}\n" in out
    first = hashlib.sha256((run_dir / "model.zip").read_bytes()).hexdigest()
    metrics = train(compose([*TINY, f"resume={run_dir}"]))
    out = capsys.readouterr().out
    assert "this run already finished (metrics.json: step 256): nothing left to train" in out
    assert f" {run_dir / 'model-r1.zip'}\n" in out
    assert metrics["start_step"] == metrics["num_timesteps"]
    assert hashlib.sha256((run_dir / "model.zip").read_bytes()).hexdigest() == first
    assert (run_dir / "model-r1.zip").is_file()


def test_resume_without_checkpoint_is_a_config_error(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.train import train
    from pulsecal.configs import ConfigError

    with pytest.raises(ConfigError, match="resume"):
        train(compose([*TINY, f"resume={tmp_path}"]))


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    sigkill_long_run(TINY, run_dir, tmp_path, lambda: bool(list((run_dir / "checkpoints").glob("step_*.json"))),
                     poll_s=0.2)
    before = _digests(run_dir / "checkpoints")
    last = max(json.loads((run_dir / "checkpoints" / n).read_text())["step"] for n in before if n.endswith(".json")
               and not n.endswith("vecnormalize.json"))
    resumed = run_cli([f"resume={run_dir}", f"total_timesteps={last + 256}"], tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["start_step"] == last and metrics["num_timesteps"] >= last + 256
    after = _digests(run_dir / "checkpoints")
    assert {k: after[k] for k in before if k in after} == {k: v for k, v in before.items() if k in after}
    assert all(k in after for k in before if not k.startswith("."))
    assert list((run_dir / ".hydra").glob("resume_*/config.yaml"))
