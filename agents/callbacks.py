"""Training callbacks: evaluation on held-out devices, checkpoints, early stop,
scalars from the env's ``info``.

Small SB3 callbacks, one ``_on_step() -> bool`` each. Evaluation reports what a
simulation knows and hardware does not: the true gate infidelity ``1 - info["fidelity"]``,
leakage and shots spent, read from the last ``info`` of every evaluation episode. The
agent's reward is whatever the env measures; these numbers are for us.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, sync_envs_normalization

from pulsecal.agents.persistence import Checkpoint, prune_replay_buffers, save_checkpoint

EVAL_FIELDS = (
    "step",
    "infidelity_mean",
    "infidelity_median",
    "infidelity_best",
    "leakage_mean",
    "shots_mean",
    "device_time_s_mean",
    "return_mean",
    "episodes",
)


class EvalOnDevicesCallback(BaseCallback):
    """Every ``every_steps`` env steps, run ``n_episodes`` deterministic episodes on
    ``eval_env`` (built on held-out devices) and record the true infidelity, leakage
    and shots per episode.

    Results go to the SB3 logger under ``eval/`` (TensorBoard), to ``history_csv``
    (appended, so a resumed run continues the same curve) and to ``self.history``.
    ``callback_after_eval`` (e.g. :class:`StopAtInfidelity`) may end training.
    The observation statistics of a ``VecNormalize`` training env are copied to the
    eval env before each evaluation; the eval env never updates them.
    """

    def __init__(
        self,
        eval_env: VecEnv,
        every_steps: int,
        n_episodes: int,
        history_csv: Path | None = None,
        callback_after_eval: BaseCallback | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if every_steps <= 0:
            raise ValueError(f"EvalOnDevicesCallback.every_steps={every_steps}: allowed >= 1")
        if n_episodes <= 0:
            raise ValueError(f"EvalOnDevicesCallback.n_episodes={n_episodes}: allowed >= 1")
        self.eval_env = eval_env
        self.every_steps = every_steps
        self.n_episodes = n_episodes
        self.history_csv = None if history_csv is None else Path(history_csv)
        self.callback_after_eval = callback_after_eval
        self.history: list[dict[str, float]] = []
        self.last: dict[str, float] | None = None
        self._next_eval = every_steps

    def _init_callback(self) -> None:
        if self.callback_after_eval is not None:
            self.callback_after_eval.init_callback(self.model)
            self.callback_after_eval.parent = self
        train_env = self.model.get_env()
        if isinstance(train_env, VecNormalize) and not isinstance(self.eval_env, VecNormalize):
            self.eval_env = VecNormalize(
                self.eval_env,
                training=False,
                norm_obs=train_env.norm_obs,
                norm_reward=False,
                clip_obs=train_env.clip_obs,
            )
        # A resumed run starts counting from its restored step.
        self._next_eval = (self.num_timesteps // self.every_steps + 1) * self.every_steps

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next_eval:
            return True
        self._next_eval = (self.num_timesteps // self.every_steps + 1) * self.every_steps
        self.evaluate()
        if self.callback_after_eval is not None:
            return self.callback_after_eval.on_step()
        return True

    def evaluate(self) -> dict[str, float]:
        """Run the evaluation now and record it; returns the summary."""
        train_env = self.model.get_env()
        if isinstance(train_env, VecNormalize) and isinstance(self.eval_env, VecNormalize):
            sync_envs_normalization(train_env, self.eval_env)
        finals: list[dict[str, Any]] = []

        def grab(locals_: dict[str, Any], _globals: dict[str, Any]) -> None:
            info = locals_["info"]
            if locals_["done"] and "episode" in info:
                finals.append(info)

        returns, _lengths = evaluate_policy(
            self.model,
            self.eval_env,
            n_eval_episodes=self.n_episodes,
            deterministic=True,
            return_episode_rewards=True,
            callback=grab,
            warn=False,
        )
        summary = summarize_episodes(finals, returns)
        summary["step"] = float(self.num_timesteps)
        self.last = summary
        self.history.append(summary)
        for key, value in summary.items():
            if key != "step" and math.isfinite(value):
                self.logger.record(f"eval/{key}", value)
        self.logger.dump(self.num_timesteps)
        if self.history_csv is not None:
            append_csv(self.history_csv, summary, EVAL_FIELDS)
        if self.verbose:
            print(
                f"eval @ {self.num_timesteps}: 1-F = {summary['infidelity_mean']:.3e} "
                f"(median {summary['infidelity_median']:.3e}), leakage {summary['leakage_mean']:.2e}, "
                f"shots/episode {summary['shots_mean']:.0f}"
            )
        return summary


def summarize_episodes(finals: list[dict[str, Any]], returns: Any) -> dict[str, float]:
    """Mean/median true infidelity, leakage, shots and device time of final infos."""

    def column(key: str) -> np.ndarray:
        return np.array([float(np.mean(info[key])) for info in finals if key in info], dtype=float)

    def mean(values: np.ndarray) -> float:
        return float(np.mean(values)) if values.size else math.nan

    infid = 1.0 - column("fidelity")
    return {
        "infidelity_mean": mean(infid),
        "infidelity_median": float(np.median(infid)) if infid.size else math.nan,
        "infidelity_best": float(np.min(infid)) if infid.size else math.nan,
        "leakage_mean": mean(column("leakage")),
        "shots_mean": mean(column("shots_used")),
        "device_time_s_mean": mean(column("device_time_s")),
        "return_mean": float(np.mean(returns)) if len(returns) else math.nan,
        "episodes": float(len(finals)),
    }


def append_csv(path: Path, row: dict[str, float], fields: tuple[str, ...]) -> None:
    """Append one row (header first if the file is new); flushed per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a CSV written by :func:`append_csv`, as floats."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(fh)]


class StopAtInfidelity(BaseCallback):
    """Child of :class:`EvalOnDevicesCallback`: stop once the mean evaluated
    infidelity is at or below ``target``."""

    def __init__(self, target: float, verbose: int = 0) -> None:
        super().__init__(verbose)
        if not (0.0 <= target <= 1.0):
            raise ValueError(f"StopAtInfidelity.target={target}: allowed [0, 1]")
        self.target = target
        self.reached_at: int | None = None

    def _on_step(self) -> bool:
        parent = self.parent
        assert isinstance(parent, EvalOnDevicesCallback), "use as callback_after_eval"
        last = parent.last
        if last is None or not last["infidelity_mean"] <= self.target:
            return True
        self.reached_at = self.num_timesteps
        if self.verbose:
            print(f"target infidelity {self.target:.1e} reached at step {self.num_timesteps}; stopping")
        return False


class CheckpointCallback(BaseCallback):
    """Every ``every_steps`` env steps, save model + normalisation + step counter (and an
    off-policy algorithm's replay buffer) to ``directory`` atomically (see
    :mod:`pulsecal.agents.persistence`); earlier checkpoints are kept, so a crash loses at
    most one interval. Replay buffers are large: only the newest ``keep_replay_buffers``
    checkpoints keep theirs (0: never store them), older ones are deleted once the new
    checkpoint is complete."""

    def __init__(
        self,
        directory: Path,
        every_steps: int,
        on_saved: Callable[[Checkpoint], None] | None = None,
        keep_replay_buffers: int = 1,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if every_steps <= 0:
            raise ValueError(f"CheckpointCallback.every_steps={every_steps}: allowed >= 1")
        if keep_replay_buffers < 0:
            raise ValueError(f"CheckpointCallback.keep_replay_buffers={keep_replay_buffers}: allowed >= 0")
        self.directory = Path(directory)
        self.every_steps = every_steps
        self.on_saved = on_saved
        self.keep_replay_buffers = keep_replay_buffers
        self.saved: list[Checkpoint] = []
        self._next = every_steps

    def _init_callback(self) -> None:
        self._next = (self.num_timesteps // self.every_steps + 1) * self.every_steps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.every_steps + 1) * self.every_steps
            ckpt = save_checkpoint(self.model, self.directory, replay_buffer=self.keep_replay_buffers > 0)
            if ckpt.replay_buffer is not None:
                prune_replay_buffers(self.directory, keep=self.keep_replay_buffers)
            self.saved.append(ckpt)
            if self.on_saved is not None:
                self.on_saved(ckpt)
            if self.verbose:
                print(f"checkpoint {ckpt.model.name} at step {ckpt.step}")
        return True


class InfoScalarsCallback(BaseCallback):
    """Training-episode means of the env's ``info`` numbers (fidelity as infidelity,
    leakage, shots, device time) to the SB3 logger under ``train_env/``."""

    KEYS = ("fidelity", "leakage", "shots_used", "device_time_s")

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._buffer: dict[str, list[float]] = {k: [] for k in self.KEYS}

    def _on_step(self) -> bool:
        dones = self.locals.get("dones")
        infos = self.locals.get("infos")
        if dones is None or infos is None:
            return True
        for done, info in zip(dones, infos, strict=False):
            if not done:
                continue
            for key in self.KEYS:
                if key in info:
                    self._buffer[key].append(float(np.mean(info[key])))
        return True

    def _on_rollout_end(self) -> None:
        for key, values in self._buffer.items():
            if not values:
                continue
            if key == "fidelity":
                self.logger.record("train_env/infidelity", 1.0 - float(np.mean(values)))
            else:
                self.logger.record(f"train_env/{key}", float(np.mean(values)))
            values.clear()


class ClampedProgressBarCallback(BaseCallback):
    """SB3's progress bar with its position clamped to the steps this ``learn`` call asked
    for: rollouts run in whole ``n_steps × n_envs`` chunks, so SB3's own bar, which adds
    ``num_envs`` per step, ends past its total (e.g. 2,048/2,000)."""

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.pbar: Any = None
        self._start = 0

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self._start = self.model.num_timesteps
        self.pbar = tqdm(total=max(int(self.locals["total_timesteps"]) - self._start, 0), unit="step")

    def _on_step(self) -> bool:
        self.pbar.n = min(self.model.num_timesteps - self._start, self.pbar.total)
        self.pbar.refresh()
        return True

    def _on_training_end(self) -> None:
        self.pbar.close()

