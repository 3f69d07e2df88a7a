"""One training run, start to finish, into a run directory; resumable after a kill.

:func:`run_training` builds (or restores from a checkpoint) the SB3 algorithm,
attaches the callbacks, trains to ``total_timesteps`` env steps, evaluates once more
and writes the final model, its normalisation statistics, the evaluation history and
the learning curve. It takes typed settings only; ``pulsecal.agents.pipelines.train`` turns a
Hydra config into them.

Run directory layout (artefacts are never replaced; a resumed run adds ``-r<k>``
names where a name is taken)::

    config.yaml  command.txt  provenance.json      written by the entry point
    checkpoints/step_<N>.{zip,vecnormalize.npz,vecnormalize.json,json}
                 step_<N>.replay.npz  off-policy replay buffer, latest checkpoint only
    logs/        TensorBoard events, progress.csv
    eval.csv     evaluation history (appended across resumes)
    model.zip  vecnormalize.npz/.json  metrics.json  learning_curve.png
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    HumanOutputFormat,
    JSONOutputFormat,
    KVWriter,
    Logger,
    TensorBoardOutputFormat,
)
from stable_baselines3.common.vec_env import VecEnv

from pulsecal.agents.callbacks import (
    CheckpointCallback,
    ClampedProgressBarCallback,
    EvalOnDevicesCallback,
    InfoScalarsCallback,
    StopAtInfidelity,
    read_csv,
)
from pulsecal.agents.factory import (
    AlgorithmSpec,
    build_algorithm,
    load_algorithm,
    wrap_normalization,
)
from pulsecal.agents.persistence import (
    Checkpoint,
    free_name,
    load_normalization,
    load_replay_buffer,
    save_model_atomic,
    save_normalization,
    write_json_atomic,
)
from pulsecal.agents.provenance import plot_learning_curve

LOGGER_FORMATS = ("stdout", "log", "csv", "json", "tensorboard")


@dataclass(frozen=True)
class TrainSettings:
    """How long to train and what to do along the way (all counts in env steps).

    ``target_infidelity`` stops training once the evaluated mean reaches it.
    ``keep_replay_buffers``: how many of the newest checkpoints keep an off-policy
    algorithm's replay buffer (0: none; a resume then refills it from scratch).
    ``logger_formats`` is a subset of ``stdout, log, csv, json, tensorboard``.
    """

    total_timesteps: int
    seed: int = 0
    eval_every_steps: int = 10_000
    eval_episodes: int = 16
    checkpoint_every_steps: int = 20_000
    target_infidelity: float | None = None
    progress_bar: bool = False
    info_scalars: bool = True
    keep_replay_buffers: int = 1
    logger_formats: tuple[str, ...] = ("csv", "tensorboard")
    torch_device: str = "cpu"
    verbose: int = 0

    def __post_init__(self) -> None:
        for name in ("total_timesteps", "eval_every_steps", "eval_episodes", "checkpoint_every_steps"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"TrainSettings.{name}={value}: allowed >= 1")
        if self.keep_replay_buffers < 0:
            raise ValueError(f"TrainSettings.keep_replay_buffers={self.keep_replay_buffers}: allowed >= 0")
        if self.target_infidelity is not None and not 0 <= self.target_infidelity <= 1:
            raise ValueError(f"TrainSettings.target_infidelity={self.target_infidelity}: allowed [0, 1]")
        for fmt in self.logger_formats:
            if fmt not in LOGGER_FORMATS:
                raise ValueError(f"TrainSettings.logger_formats has {fmt!r}: allowed {', '.join(LOGGER_FORMATS)}")
        object.__setattr__(self, "logger_formats", tuple(self.logger_formats))


def make_logger(log_dir: Path, formats: Sequence[str]) -> Logger:
    """SB3 logger whose files never replace an earlier run's (``progress-r1.csv``, ...)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    outputs: list[KVWriter] = []
    for fmt in formats:
        if fmt == "stdout":
            outputs.append(HumanOutputFormat(sys.stdout))
        elif fmt == "log":
            outputs.append(HumanOutputFormat(str(free_name(log_dir / "log.txt"))))
        elif fmt == "csv":
            outputs.append(CSVOutputFormat(str(free_name(log_dir / "progress.csv"))))
        elif fmt == "json":
            outputs.append(JSONOutputFormat(str(free_name(log_dir / "progress.json"))))
        elif fmt == "tensorboard":
            # One new event file per writer: TensorBoard merges them by step.
            outputs.append(TensorBoardOutputFormat(str(log_dir)))
        else:
            raise ValueError(f"make_logger: unknown format {fmt!r}")
    return Logger(folder=str(log_dir), output_formats=outputs)


def _restore_replay_buffer(model: BaseAlgorithm, checkpoint: Checkpoint) -> int:
    """Refill an off-policy ``model``'s fresh replay buffer from ``checkpoint``; returns
    the number of transitions restored (0 for on-policy algorithms)."""
    buffer = getattr(model, "replay_buffer", None)
    if not isinstance(buffer, ReplayBuffer):
        return 0
    if checkpoint.replay_buffer is None:
        warnings.warn(
            f"{checkpoint.manifest.name} has no replay buffer (only the newest checkpoints keep one): "
            f"{type(model).__name__} resumes with an empty buffer and refills it",
            stacklevel=2,
        )
        return 0
    restored = load_replay_buffer(buffer, checkpoint.replay_buffer)
    if buffer.optimize_memory_usage and restored:
        # The memory-saving layout keeps the last transition's next observation in the row
        # the next step writes; after a resume that step starts a fresh episode, so the last
        # stored trajectory ends here (what SB3 does when it cannot continue an episode).
        buffer.dones[(buffer.pos - 1) % buffer.buffer_size] = True
    return restored


def run_training(
    spec: AlgorithmSpec,
    make_train_env: Callable[[], VecEnv],
    make_eval_env: Callable[[], VecEnv],
    settings: TrainSettings,
    run_dir: Path,
    resume_from: Checkpoint | None = None,
    extra_callbacks: Sequence[BaseCallback] = (),
) -> dict[str, float]:
    """Train into ``run_dir`` and return the final metrics.

    With ``resume_from``, the model and its normalisation statistics are restored
    from that checkpoint and training continues its step counter up to
    ``settings.total_timesteps`` (SB3 ``reset_num_timesteps=False``), and an
    off-policy algorithm gets the checkpoint's replay buffer back (stored pickle-free by
    :func:`~pulsecal.agents.persistence.save_replay_buffer`). The transitions of the one
    vector step during which the checkpoint was taken are not in it (SB3 stores them after
    the callbacks run); a checkpoint without a buffer (written without one, or
    with ``keep_replay_buffers=0``) resumes with an empty buffer, with a warning.
    """
    run_dir = Path(run_dir)
    venv = make_train_env()
    model: BaseAlgorithm
    restored = 0
    if resume_from is not None:
        if resume_from.normalization is not None:
            venv = load_normalization(venv, resume_from.normalization, training=True)
        model = load_algorithm(spec.algo, resume_from.model, venv, device=settings.torch_device)
        restored = _restore_replay_buffer(model, resume_from)
    else:
        venv = wrap_normalization(venv, spec, training=True)
        model = build_algorithm(spec, venv, seed=settings.seed, device=settings.torch_device)
    model.set_logger(make_logger(run_dir / "logs", settings.logger_formats))

    stop = None if settings.target_infidelity is None else StopAtInfidelity(settings.target_infidelity)
    evaluator = EvalOnDevicesCallback(
        make_eval_env(),
        every_steps=settings.eval_every_steps,
        n_episodes=settings.eval_episodes,
        history_csv=run_dir / "eval.csv",
        callback_after_eval=stop,
        verbose=settings.verbose,
    )
    callbacks: list[BaseCallback] = [
        CheckpointCallback(run_dir / "checkpoints", settings.checkpoint_every_steps,
                           keep_replay_buffers=settings.keep_replay_buffers, verbose=settings.verbose),
        evaluator,
    ]
    if settings.info_scalars:
        callbacks.append(InfoScalarsCallback())
    if settings.progress_bar:
        callbacks.append(ClampedProgressBarCallback())
    callbacks.extend(extra_callbacks)

    start_step = model.num_timesteps
    remaining = settings.total_timesteps - start_step
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=CallbackList(callbacks),
            reset_num_timesteps=False,
            progress_bar=False,
        )
    else:
        evaluator.init_callback(model)

    final = evaluator.last
    if final is None or final["step"] != model.num_timesteps:
        final = evaluator.evaluate()

    model_path = save_model_atomic(model, free_name(run_dir / "model.zip"))
    norm = model.get_vec_normalize_env()
    norm_path = None if norm is None else save_normalization(norm, free_name(run_dir / "vecnormalize.npz"))
    history = read_csv(run_dir / "eval.csv")
    curve = plot_learning_curve(history, free_name(run_dir / "learning_curve.png"), title=f"{spec.algo}")

    finite = [row["infidelity_mean"] for row in history if math.isfinite(row.get("infidelity_mean", math.nan))]
    metrics: dict[str, float] = {
        "final_infidelity": final["infidelity_mean"],
        "final_infidelity_median": final["infidelity_median"],
        "best_infidelity": min(finite) if finite else math.nan,
        "final_leakage": final["leakage_mean"],
        "final_shots": final["shots_mean"],
        "final_return": final["return_mean"],
        "num_timesteps": float(model.num_timesteps),
        "start_step": float(start_step),
        "replay_transitions_restored": float(restored),
        "stopped_early": float(stop is not None and stop.reached_at is not None),
    }
    write_json_atomic(
        free_name(run_dir / "metrics.json"),
        {
            **{k: (v if math.isfinite(v) else None) for k, v in metrics.items()},
            "model": model_path.name,
            "normalization": None if norm_path is None else norm_path.name,
            "learning_curve": None if curve is None else curve.name,
            "resumed_from": None if resume_from is None else str(resume_from.manifest),
        },
    )
    venv.close()
    evaluator.eval_env.close()
    return metrics
