"""Writing run artefacts safely: atomic files, pickle-free normalisation statistics,
and checkpoints that a killed run can resume from.

A file is written next to its destination under a temporary name, flushed to disk
and renamed over (POSIX rename is atomic), so a kill leaves either the old state or
the new file, never a torn one. Nothing here ever replaces an existing artefact: a
name that is taken gets a ``-r<k>`` suffix instead.

``VecNormalize.save`` pickles the whole wrapper; we store only its numbers (running
means, variances, counts as ``.npz`` loaded with ``allow_pickle=False``, settings as
JSON), which is all that is needed to rebuild it around a fresh env.

A checkpoint ``step_<N>`` is the SB3 zip, the normalisation statistics and a JSON
manifest written last; a checkpoint counts only once its manifest exists.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` by calling ``write(tmp_path)``, syncing, then renaming over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary keeps the real suffix last-but-one so writers that add suffixes
    # (SB3 appends ".zip" to suffix-less names) leave it alone.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    def _write(tmp: Path) -> None:
        tmp.write_bytes(text.encode("utf-8"))

    return write_atomic(path, _write)


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_model_atomic(model: BaseAlgorithm, path: Path) -> Path:
    """``model.save`` to ``path`` atomically (SB3's zip; excludes no state)."""
    return write_atomic(path, lambda tmp: model.save(str(tmp)))


def free_name(path: Path) -> Path:
    """``path`` if unused, else ``stem-r1``, ``stem-r2``, ... (never overwrite)."""
    if not path.exists():
        return path
    k = 1
    while True:
        candidate = path.with_name(f"{path.stem}-r{k}{path.suffix}")
        if not candidate.exists():
            return candidate
        k += 1


# ------------------------------------------------------------- normalisation


def save_normalization(venv: VecNormalize, path: Path) -> Path:
    """Store ``venv``'s statistics and settings as ``<path>`` (.npz) plus ``.json``."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "ret_mean": np.asarray(venv.ret_rms.mean, dtype=np.float64),
        "ret_var": np.asarray(venv.ret_rms.var, dtype=np.float64),
        "ret_count": np.asarray(venv.ret_rms.count, dtype=np.float64),
    }
    if venv.norm_obs:
        if not isinstance(venv.obs_rms, RunningMeanStd):
            raise TypeError("save_normalization: dict observation spaces are not supported")
        arrays["obs_mean"] = np.asarray(venv.obs_rms.mean, dtype=np.float64)
        arrays["obs_var"] = np.asarray(venv.obs_rms.var, dtype=np.float64)
        arrays["obs_count"] = np.asarray(venv.obs_rms.count, dtype=np.float64)
    settings = {
        "norm_obs": bool(venv.norm_obs),
        "norm_reward": bool(venv.norm_reward),
        "clip_obs": float(venv.clip_obs),
        "clip_reward": float(venv.clip_reward),
        "gamma": float(venv.gamma),
        "epsilon": float(venv.epsilon),
        "format": "pulsecal-vecnormalize-1",
    }
    def _savez(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    write_atomic(path, _savez)
    write_json_atomic(path.with_suffix(".json"), settings)
    return path


def load_normalization(venv: VecEnv, path: Path, training: bool = True) -> VecNormalize:
    """``VecNormalize`` around ``venv`` with the statistics stored by :func:`save_normalization`."""
    path = Path(path)
    settings = json.loads(path.with_suffix(".json").read_text())
    if settings.get("format") != "pulsecal-vecnormalize-1":
        raise ValueError(f"{path.with_suffix('.json')}: not a pulsecal normalisation file")
    norm = VecNormalize(
        venv,
        training=training,
        norm_obs=settings["norm_obs"],
        norm_reward=settings["norm_reward"] and training,
        clip_obs=settings["clip_obs"],
        clip_reward=settings["clip_reward"],
        gamma=settings["gamma"],
        epsilon=settings["epsilon"],
    )
    with np.load(path, allow_pickle=False) as data:
        norm.ret_rms.mean = data["ret_mean"]
        norm.ret_rms.var = data["ret_var"]
        norm.ret_rms.count = float(data["ret_count"])
        if settings["norm_obs"]:
            assert isinstance(norm.obs_rms, RunningMeanStd)
            norm.obs_rms.mean = data["obs_mean"]
            norm.obs_rms.var = data["obs_var"]
            norm.obs_rms.count = float(data["obs_count"])
    return norm


# ---------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint: model zip, optional normalisation, step counter."""

    step: int
    model: Path
    normalization: Path | None
    manifest: Path


_STEP_RE = re.compile(r"^step_(\d+)(?:-r\d+)?\.json$")


def save_checkpoint(model: BaseAlgorithm, directory: Path, step: int | None = None) -> Checkpoint:
    """Write model, normalisation statistics and manifest (in that order) atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    step = int(model.num_timesteps if step is None else step)
    manifest = free_name(directory / f"step_{step:010d}.json")
    stem = manifest.stem
    model_path = free_name(directory / f"{stem}.zip")
    save_model_atomic(model, model_path)
    norm_path: Path | None = None
    venv = model.get_vec_normalize_env()
    if venv is not None:
        norm_path = save_normalization(venv, free_name(directory / f"{stem}.vecnormalize.npz"))
    write_json_atomic(
        manifest,
        {
            "step": step,
            "model": model_path.name,
            "normalization": None if norm_path is None else norm_path.name,
            "algo": type(model).__name__,
        },
    )
    return Checkpoint(step, model_path, norm_path, manifest)


def list_checkpoints(directory: Path) -> list[Checkpoint]:
    """Complete checkpoints in ``directory``, oldest step first."""
    found: list[Checkpoint] = []
    directory = Path(directory)
    if not directory.is_dir():
        return found
    for manifest in directory.iterdir():
        if not _STEP_RE.match(manifest.name):
            continue
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        model_path = directory / data["model"]
        norm = data.get("normalization")
        norm_path = None if norm is None else directory / norm
        if not model_path.is_file() or (norm_path is not None and not norm_path.is_file()):
            continue
        found.append(Checkpoint(int(data["step"]), model_path, norm_path, manifest))
    found.sort(key=lambda c: (c.step, c.manifest.stat().st_mtime))
    return found


def latest_checkpoint(directory: Path) -> Checkpoint | None:
    """The complete checkpoint with the most steps, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None
