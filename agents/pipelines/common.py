"""What ``pulsecal-demo`` and ``pulsecal-results`` share: composing a shipped entry config
with overrides, picking an experiment, training one run under a wall-clock cap, the
trained agent's evaluation entry, and the staged console output with its formatting.
"""

from __future__ import annotations

import importlib.resources
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import hydra
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.callbacks import BaseCallback


class PipelineError(ValueError):
    """A demo or results setting is out of range; ``key`` is the dotted config key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key, self.problem = key, problem

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


class _CheckedConf(Protocol):
    def check(self) -> None: ...


ConfT = TypeVar("ConfT", bound=_CheckedConf)


def typed_conf(cfg: DictConfig, schema: type[ConfT], entry: str) -> ConfT:
    """The composed ``cfg`` as its typed schema object, cross-field checks run; a config
    not composed from ``<entry>.yaml`` is refused."""
    conf = OmegaConf.to_object(cfg)
    if not isinstance(conf, schema):
        raise PipelineError("config", f"not composed from {entry}.yaml ({entry}_schema)")
    conf.check()
    return conf


def override(key: str, value: Any) -> str:
    """``key=value`` in Hydra's override grammar; strings are quoted, so paths with spaces,
    colons or brackets pass through unchanged."""
    return f"{key}={_literal(value)}"


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        text = str(value).replace("\\", "\\\\").replace("'", "\\'")
        return f"'{text}'"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    raise TypeError(f"override value {value!r} of type {type(value).__name__}: allowed null, bool, "
                    "number, string, list or mapping")


def compose_section(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """Compose one of the shipped entry configs (``train``, ``evaluate``, ``replay``) with
    ``overrides``, inside an initialised Hydra (``@hydra.main`` or a test's
    ``initialize_config_module``) or on its own."""
    if GlobalHydra.instance().is_initialized():
        return hydra.compose(config_name=config_name, overrides=list(overrides))
    with hydra.initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        return hydra.compose(config_name=config_name, overrides=list(overrides))


def shipped_experiments() -> set[str]:
    folder = importlib.resources.files("pulsecal.configs").joinpath("experiment")
    return {p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")}


def pick_experiment(chosen: str | None, preferred: str, fallback: str) -> str:
    """``chosen``, else ``preferred`` when it ships, else ``fallback``."""
    if chosen:
        return chosen
    return preferred if preferred in shipped_experiments() else fallback


class WallClockLimit(BaseCallback):
    """Stop training after ``seconds`` of wall time (a time box, not a quality criterion);
    ``stopped_at`` is the step it stopped at, or None."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = float(seconds)
        self.stopped_at: int | None = None
        self._deadline = math.inf

    def _on_training_start(self) -> None:
        self._deadline = time.monotonic() + self.seconds

    def _on_step(self) -> bool:
        if time.monotonic() < self._deadline:
            return True
        self.stopped_at = int(self.num_timesteps)
        return False


def train_run(experiment: str, run_dir: Path, overrides: Sequence[str], max_seconds: float | None) -> dict[str, Any]:
    """Train ``experiment`` into ``run_dir`` through ``pulsecal-train``'s :func:`train`;
    returns the run's record (metrics, algorithm, wall time, time-box hit)."""
    from pulsecal.agents.pipelines.train import train

    cfg = compose_section("train", [override("experiment", experiment), *overrides])
    limit = [WallClockLimit(max_seconds)] if max_seconds is not None else []
    t0 = time.perf_counter()
    metrics = train(cfg, run_dir=run_dir, extra_callbacks=limit)
    wall = time.perf_counter() - t0
    return {"experiment": experiment, "run_dir": str(run_dir), "algo": str(cfg.agent.name),
            "env_id": str(cfg.env.id), "seed": int(cfg.seed), "total_timesteps": int(cfg.total_timesteps),
            "steps": int(metrics["num_timesteps"]), "wall_time_s": wall,
            "time_box_hit": bool(limit and limit[0].stopped_at is not None),
            "stopped_early": bool(metrics.get("stopped_early")),
            "final_infidelity": float(metrics["final_infidelity"]),
            "final_infidelity_median": float(metrics["final_infidelity_median"])}


def trained_env_kwargs(run_dir: Path) -> dict[str, Any]:
    """The env keyword arguments a run trained with that an evaluation must repeat (device
    preset, shots per probe, the env's own kwargs), from its resolved ``config.yaml``."""
    import yaml

    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
    env, device = dict(config.get("env") or {}), dict(config.get("device") or {})
    kwargs: dict[str, Any] = {}
    if device.get("preset"):
        kwargs["device"] = device["preset"]
    if env.get("shots_per_probe") is not None:
        kwargs["shots_per_probe"] = int(env["shots_per_probe"])
    kwargs.update(dict(env.get("kwargs") or {}))
    return kwargs


def agent_entry(name: str, task: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``agents`` entry of ``evaluate.yaml`` for a trained run (with ``env_id`` when the
    run trained on another version than the task's default)."""
    from pulsecal.agents.evaluation import ENV_IDS

    entry = {"name": name, "task": task, "algo": record["algo"], "path": record["run_dir"],
             "env_kwargs": trained_env_kwargs(Path(record["run_dir"]))}
    if record["env_id"] != ENV_IDS[task]:
        entry["env_id"] = record["env_id"]
    return entry


def calibration_table(summary: Sequence[Mapping[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The calibration rows of an evaluation summary at ``budget``, best median ratio first."""
    rows = [dict(s) for s in summary if s["task"] == "calibration" and int(s["budget"]) == budget]
    return sorted(rows, key=lambda s: s["ratio_median"])


def fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{int(s // 60)} min {s % 60:02.0f} s"


@contextmanager
def stage(log: list[tuple[str, float]], number: int, total: int, name: str, what: str) -> Iterator[None]:
    print(f"\n[{number}/{total}] {name}: {what}", flush=True)
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    log.append((name, dt))
    print(f"[{number}/{total}] {name} done in {fmt_seconds(dt)}", flush=True)


__all__ = ["PipelineError", "WallClockLimit", "agent_entry", "calibration_table", "compose_section", "fmt_seconds",
           "override", "pick_experiment", "shipped_experiments", "stage", "train_run", "trained_env_kwargs"]
