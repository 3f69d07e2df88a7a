"""Off-policy replay buffers survive a checkpoint: stored pickle-free as ``.npz``, loaded
back array for array (every ``n_envs`` layout and memory mode), restored on resume so a
killed SAC/TD3 run continues with the transitions it had, and only the newest
checkpoint keeps one (they are large)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from test_train import TINY, TOY_ID, Crash, compose, run_cli, sigkill_long_run  # noqa: E402

ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _filled(n_envs: int, steps: int, optimize: bool, size: int = 24, seed: int = 0) -> ReplayBuffer:
    obs_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    buf = ReplayBuffer(size, obs_space, act_space, "cpu", n_envs=n_envs, optimize_memory_usage=optimize,
                       handle_timeout_termination=not optimize)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        done = rng.random(n_envs) < 0.2
        infos = [{"TimeLimit.truncated": bool(rng.random() < 0.5)} for _ in range(n_envs)]
        buf.add(rng.normal(size=(n_envs, 3)).astype(np.float32), rng.normal(size=(n_envs, 3)).astype(np.float32),
                rng.uniform(-1, 1, (n_envs, 2)).astype(np.float32), rng.normal(size=n_envs).astype(np.float32),
                done, infos)
    return buf


def _empty_like(buf: ReplayBuffer, size: int = 24) -> ReplayBuffer:
    return ReplayBuffer(size, buf.observation_space, buf.action_space, "cpu", n_envs=buf.n_envs,
                        optimize_memory_usage=buf.optimize_memory_usage,
                        handle_timeout_termination=buf.handle_timeout_termination)


@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("steps", [0, 5, 8, 13])  # empty, partly filled, exactly full, wrapped around
def test_round_trip_restores_every_array_and_counter(tmp_path: Path, n_envs: int, optimize: bool,
                                                     steps: int) -> None:
    from pulsecal.agents.persistence import (
        load_replay_buffer,
        replay_buffer_info,
        save_replay_buffer,
    )

    buf = _filled(n_envs, steps, optimize)  # 24 // n_envs rows: 3 envs -> 8 rows
    path = save_replay_buffer(buf, tmp_path / "r.npz", step=123)
    with np.load(path, allow_pickle=False) as data:  # nothing pickled
        assert "meta_pos" in data.files
    info = replay_buffer_info(path)
    assert (info["pos"], info["full"], info["size"], info["n_envs"], info["step"]) == (
        buf.pos, buf.full, buf.size(), n_envs, 123)

    back = _empty_like(buf)
    restored = load_replay_buffer(back, path)
    assert restored == buf.size() * n_envs
    assert (back.pos, back.full, back.size()) == (buf.pos, buf.full, buf.size())
    for name in ARRAYS:
        if optimize and name == "next_observations":
            continue
        np.testing.assert_array_equal(getattr(back, name), getattr(buf, name), err_msg=name)
    if steps:
        # The same rows give the same samples (next observations included); SB3 draws the
        # copy of each row from NumPy's global generator, so both draws are seeded alike.
        idx = np.arange(buf.size() - (1 if optimize and not buf.full else 0))
        np.random.seed(1)  # noqa: NPY002  (the generator SB3 samples from)
        a = buf._get_samples(idx)
        np.random.seed(1)  # noqa: NPY002  (the generator SB3 samples from)
        b = back._get_samples(idx)
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y)


def test_partial_buffer_stores_only_its_filled_rows(tmp_path: Path) -> None:
    from pulsecal.agents.persistence import save_replay_buffer

    small = save_replay_buffer(_filled(2, 3, False, size=2000), tmp_path / "small.npz").stat().st_size
    full = save_replay_buffer(_filled(2, 1000, False, size=2000), tmp_path / "full.npz").stat().st_size
    assert full > 1000 * 2 * 11 * 4 and small < full / 10  # 3 of 1000 rows (plus npz headers)


@pytest.mark.parametrize(("change", "field"), [({"n_envs": 2}, "n_envs"), ({"size": 48}, "buffer_size"),
                                               ({"optimize": True}, "optimize_memory_usage")])
def test_load_refuses_another_layout_and_leaves_the_buffer_alone(tmp_path: Path, change: dict[str, Any],
                                                                 field: str) -> None:
    from pulsecal.agents.persistence import load_replay_buffer, save_replay_buffer

    path = save_replay_buffer(_filled(1, 5, False), tmp_path / "r.npz")
    other = _filled(change.get("n_envs", 1), 0, change.get("optimize", False), size=change.get("size", 24))
    with pytest.raises(ValueError, match=field):
        load_replay_buffer(other, path)
    assert other.pos == 0 and not other.full and not other.observations.any()


def test_load_refuses_a_file_that_is_not_a_replay_buffer(tmp_path: Path) -> None:
    from pulsecal.agents.persistence import load_replay_buffer

    np.savez(tmp_path / "x.npz", observations=np.zeros((1, 1, 3), np.float32))
    with pytest.raises(ValueError, match="not a pulsecal replay buffer"):
        load_replay_buffer(_filled(1, 0, False), tmp_path / "x.npz")


# ------------------------------------------------------------------ resume end to end

SAC_TINY = [a for a in TINY if not a.startswith("agent.")] + [
    "agent=sac", "agent.learning_starts=32", "agent.batch_size=32", "agent.buffer_size=10000",
    "agent.policy_kwargs.net_arch=[16]"]


class BufferAtStart(BaseCallback):
    """Copies the replay buffer as training (re)starts, before any new transition."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}

    def _on_training_start(self) -> None:
        buf = self.model.replay_buffer  # type: ignore[attr-defined]
        self.seen = {"pos": buf.pos, "full": buf.full, "size": buf.size(),
                     **{n: getattr(buf, n).copy() for n in ARRAYS}}

    def _on_step(self) -> bool:
        return True


def test_killed_sac_run_resumes_with_its_replay_buffer(tmp_path: Path) -> None:
    from pulsecal.agents.persistence import latest_checkpoint
    from pulsecal.agents.pipelines.train import train

    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose(SAC_TINY), run_dir=run_dir, extra_callbacks=[Crash(at_step=200)])
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    assert ckpt is not None and ckpt.step == 128 and ckpt.replay_buffer is not None
    assert json.loads(ckpt.manifest.read_text())["replay_buffer"] == ckpt.replay_buffer.name
    with np.load(ckpt.replay_buffer, allow_pickle=False) as data:
        saved = {k: data[k] for k in data.files}
    # SB3 stores a step's transitions after the callbacks: the checkpoint holds the 63
    # earlier steps of the 2 copies.
    assert int(saved["meta_pos"]) == 128 // 2 - 1 and not bool(saved["meta_full"])

    probe = BufferAtStart()
    metrics = train(compose([*SAC_TINY, f"resume={run_dir}"]), extra_callbacks=[probe])
    assert metrics["start_step"] == 128 and metrics["num_timesteps"] >= 256
    assert metrics["replay_transitions_restored"] == 2 * int(saved["meta_pos"])
    assert probe.seen["pos"] == int(saved["meta_pos"]) and probe.seen["size"] == int(saved["meta_pos"])
    n = probe.seen["pos"]
    for name in ARRAYS:
        np.testing.assert_array_equal(probe.seen[name][:n], saved[name], err_msg=name)
        assert not probe.seen[name][n:].any(), name
    # Only the newest checkpoint keeps a buffer; every checkpoint keeps its model.
    buffers = sorted(p.name for p in (run_dir / "checkpoints").glob("*.replay*.npz"))
    assert buffers == ["step_0000000256.replay.npz"]
    assert (run_dir / "checkpoints" / "step_0000000128.zip").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["replay_transitions_restored"] == 2 * n


def test_resume_from_a_checkpoint_without_buffer_warns_and_refills(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.train import train

    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose(SAC_TINY), run_dir=run_dir, extra_callbacks=[Crash(at_step=200)])
    for p in (run_dir / "checkpoints").glob("*.replay.npz"):
        p.unlink()
    with pytest.warns(UserWarning, match="empty buffer"):
        metrics = train(compose([*SAC_TINY, f"resume={run_dir}"]))
    assert metrics["start_step"] == 128 and metrics["replay_transitions_restored"] == 0


def test_on_policy_checkpoints_have_no_replay_buffer(tmp_path: Path) -> None:
    from pulsecal.agents.persistence import list_checkpoints
    from pulsecal.agents.pipelines.train import train

    train(compose(TINY), run_dir=tmp_path)
    ckpts = list_checkpoints(tmp_path / "checkpoints")
    assert ckpts and all(c.replay_buffer is None for c in ckpts)
    assert not list((tmp_path / "checkpoints").glob("*.replay*"))


@pytest.mark.slow
def test_sigkilled_sac_run_resumes_with_its_replay_buffer(tmp_path: Path) -> None:
    """A real SIGKILL (possibly mid-write: a torn temporary file must not matter)."""
    from pulsecal.agents.persistence import latest_checkpoint, list_checkpoints, replay_buffer_info

    run_dir = tmp_path / "run"
    sigkill_long_run(SAC_TINY, run_dir, tmp_path, lambda: len(list_checkpoints(run_dir / "checkpoints")) >= 2,
                     poll_s=0.1)

    ckpt = latest_checkpoint(run_dir / "checkpoints")
    assert ckpt is not None and ckpt.replay_buffer is not None
    saved = replay_buffer_info(ckpt.replay_buffer)
    assert saved["step"] == ckpt.step and saved["size"] == ckpt.step // 2 - 1
    resumed = run_cli([f"resume={run_dir}", f"total_timesteps={ckpt.step + 256}"], tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["start_step"] == ckpt.step and metrics["num_timesteps"] >= ckpt.step + 256
    assert metrics["replay_transitions_restored"] == 2 * saved["size"]


def test_resume_ends_the_last_trajectory_of_a_memory_saving_buffer(tmp_path: Path) -> None:
    """optimize_memory_usage stores next observations in the following row, which the
    resumed run's fresh reset overwrites: the restored buffer's last transition must end."""
    from pulsecal.agents.factory import AlgorithmSpec, build_algorithm, make_vec_env
    from pulsecal.agents.persistence import save_checkpoint
    from pulsecal.agents.training import _restore_replay_buffer

    spec = AlgorithmSpec("sac", hyperparams={"learning_starts": 16, "batch_size": 16, "buffer_size": 200,
                                             "optimize_memory_usage": True,
                                             "replay_buffer_kwargs": {"handle_timeout_termination": False}},
                         net_arch=(8,), normalize_obs=False)
    model = build_algorithm(spec, make_vec_env(TOY_ID, 2, seed=0), seed=0)
    model.learn(36)  # 18 steps of 2 copies: mid-episode (the toy's episodes last 10 steps)
    buf = model.replay_buffer
    assert buf is not None and buf.optimize_memory_usage
    ckpt = save_checkpoint(model, tmp_path)
    last = (buf.pos - 1) % buf.buffer_size
    assert not buf.dones[last].any()
    fresh = build_algorithm(spec, make_vec_env(TOY_ID, 2, seed=0), seed=0)
    assert _restore_replay_buffer(fresh, ckpt) == 2 * buf.size()
    assert fresh.replay_buffer is not None
    np.testing.assert_array_equal(fresh.replay_buffer.dones[last], np.ones(2, np.float32))
    np.testing.assert_array_equal(fresh.replay_buffer.dones[:last], buf.dones[:last])
