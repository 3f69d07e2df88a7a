"""Writing run artefacts safely: atomic files, pickle-free normalisation statistics,
and checkpoints that a killed run can resume from.

A file is written next to its destination under a temporary name, flushed to disk
and renamed over (POSIX rename is atomic), so a kill leaves either the old state or
the new file, never a torn one. Nothing here ever replaces an existing artefact: a
name that is taken gets a ``-r<k>`` suffix instead.

``VecNormalize.save`` pickles the whole wrapper; we store only its numbers (running
means, variances, counts as ``.npz`` loaded with ``allow_pickle=False``, settings as
JSON), which is all that is needed to rebuild it around a fresh env.

SB3 also pickles an off-policy replay buffer (and leaves it out of the model zip); we
store its arrays and counters as one ``.npz`` (:func:`save_replay_buffer`), so a resumed
SAC/TD3 continues with the transitions it had instead of refilling from scratch.

A checkpoint ``step_<N>`` is the SB3 zip, the normalisation statistics, for off-policy
algorithms the replay buffer ``step_<N>.replay.npz``, and a JSON manifest written last; a
checkpoint counts only once its manifest exists. The replay buffer is optional for
completeness: it is large (up to ``buffer_size`` transitions, e.g. ~55 MB for the pulse
shaping SAC) and only the latest checkpoint keeps one (see ``CheckpointCallback``).
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
from stable_baselines3.common.buffers import ReplayBuffer
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


def latest_revision(path: Path) -> Path | None:
    """The newest of ``path``, ``stem-r1``, ``stem-r2``, ... that exists (what
    :func:`free_name` wrote last), or None."""
    path = Path(path)
    if not path.exists():
        return None
    k, newest = 1, path
    while True:
        candidate = path.with_name(f"{path.stem}-r{k}{path.suffix}")
        if not candidate.exists():
            return newest
        newest, k = candidate, k + 1


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


# -------------------------------------------------------------- replay buffer

REPLAY_FORMAT = "pulsecal-replay-1"
# Arrays of SB3's ReplayBuffer, each (buffer_size // n_envs, n_envs, ...).
_REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _replay_rows(buffer_size: int, pos: int, full: bool, optimize_memory_usage: bool) -> tuple[int, int]:
    """Rows (of ``n_envs`` transitions each) holding data: (all arrays, observations).

    With ``optimize_memory_usage`` the next observation of row ``pos - 1`` lives in
    ``observations[pos]``, so one more observation row is needed until the buffer is full.
    """
    rows = buffer_size if full else pos
    obs_rows = rows
    if optimize_memory_usage and not full:
        obs_rows = min(rows + 1, buffer_size)
    return rows, obs_rows


def save_replay_buffer(buffer: ReplayBuffer, path: Path, step: int | None = None) -> Path:
    """Store ``buffer``'s filled rows, ``pos``, ``full`` and layout as one ``.npz`` (atomic).

    Only the filled rows are written (a buffer that is not full yet costs what it holds);
    the layout (``buffer_size`` rows per copy, ``n_envs``, shapes, dtypes, memory mode) is
    stored so :func:`load_replay_buffer` can refuse a buffer of another shape. ``step`` is
    the training step it belongs to (recorded, not used).
    """
    if type(buffer) is not ReplayBuffer:
        # Dict/HER buffers hold dicts of arrays and episode bookkeeping we do not store.
        raise TypeError(f"save_replay_buffer: {type(buffer).__name__} is not supported: allowed ReplayBuffer")
    rows, obs_rows = _replay_rows(buffer.buffer_size, buffer.pos, buffer.full, buffer.optimize_memory_usage)
    arrays: dict[str, np.ndarray] = {
        "observations": buffer.observations[:obs_rows],
        "actions": buffer.actions[:rows],
        "rewards": buffer.rewards[:rows],
        "dones": buffer.dones[:rows],
        "timeouts": buffer.timeouts[:rows],
    }
    if not buffer.optimize_memory_usage:
        arrays["next_observations"] = buffer.next_observations[:rows]
    meta = {
        "pos": buffer.pos,
        "full": buffer.full,
        "buffer_size": buffer.buffer_size,
        "n_envs": buffer.n_envs,
        "optimize_memory_usage": buffer.optimize_memory_usage,
        "handle_timeout_termination": buffer.handle_timeout_termination,
        "step": -1 if step is None else int(step),
    }
    for key, value in meta.items():
        arrays[f"meta_{key}"] = np.asarray(value)
    arrays["meta_format"] = np.asarray(REPLAY_FORMAT)

    def _savez(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    return write_atomic(Path(path), _savez)


def replay_buffer_info(path: Path) -> dict[str, int | bool]:
    """``pos``, ``full``, ``size`` (transitions per copy), ``n_envs``, ``step`` of a stored buffer."""
    with np.load(Path(path), allow_pickle=False) as data:
        _check_replay_format(path, data)
        full, pos, size = bool(data["meta_full"]), int(data["meta_pos"]), int(data["meta_buffer_size"])
        return {"pos": pos, "full": full, "size": size if full else pos, "n_envs": int(data["meta_n_envs"]),
                "step": int(data["meta_step"])}


def _check_replay_format(path: Path, data: Any) -> None:
    if "meta_format" not in data.files or str(data["meta_format"]) != REPLAY_FORMAT:
        raise ValueError(f"{path}: not a pulsecal replay buffer (format {REPLAY_FORMAT})")


def load_replay_buffer(buffer: ReplayBuffer, path: Path) -> int:
    """Fill ``buffer`` (freshly built by the algorithm, same layout) from ``path``; returns
    the number of transitions restored (``size() * n_envs``). Raises ``ValueError`` naming
    the field when the stored layout differs from ``buffer``'s."""
    path = Path(path)
    if type(buffer) is not ReplayBuffer:
        raise TypeError(f"load_replay_buffer: {type(buffer).__name__} is not supported: allowed ReplayBuffer")
    with np.load(path, allow_pickle=False) as data:
        _check_replay_format(path, data)
        expected = {
            "n_envs": buffer.n_envs,
            "buffer_size": buffer.buffer_size,  # rows per copy
            "optimize_memory_usage": buffer.optimize_memory_usage,
            "handle_timeout_termination": buffer.handle_timeout_termination,
        }
        for key, want in expected.items():
            got = data[f"meta_{key}"].item()
            if got != want:
                raise ValueError(f"{path}: replay buffer {key}={got!r} does not fit this run's {key}={want!r}")
        pos, full = int(data["meta_pos"]), bool(data["meta_full"])
        if not 0 <= pos < buffer.buffer_size:
            raise ValueError(f"{path}: replay buffer pos={pos}: allowed [0, {buffer.buffer_size - 1}]")
        rows, obs_rows = _replay_rows(buffer.buffer_size, pos, full, buffer.optimize_memory_usage)
        names = [n for n in _REPLAY_ARRAYS if not (n == "next_observations" and buffer.optimize_memory_usage)]
        stored = {n: data[n] for n in names}
    # Every array is checked before the buffer is touched: a bad file leaves it empty.
    for name in names:
        target: np.ndarray = getattr(buffer, name)
        shape = ((obs_rows if name == "observations" else rows), *target.shape[1:])
        if stored[name].shape != shape or stored[name].dtype != target.dtype:
            raise ValueError(f"{path}: replay buffer {name} has shape {stored[name].shape} {stored[name].dtype}: "
                             f"allowed {shape} {target.dtype}")
    for name in names:
        target = getattr(buffer, name)
        n = stored[name].shape[0]
        target[:n] = stored[name]
        target[n:] = 0
    buffer.pos, buffer.full = pos, full
    return buffer.size() * buffer.n_envs


# ---------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint: model zip, optional normalisation, step counter, and the
    off-policy replay buffer when this checkpoint still has one."""

    step: int
    model: Path
    normalization: Path | None
    manifest: Path
    replay_buffer: Path | None = None


_STEP_RE = re.compile(r"^step_(\d+)(?:-r\d+)?\.json$")


def save_checkpoint(
    model: BaseAlgorithm, directory: Path, step: int | None = None, replay_buffer: bool = True
) -> Checkpoint:
    """Write model, normalisation statistics, replay buffer (off-policy algorithms, when
    ``replay_buffer``) and manifest, in that order, each atomically."""
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
    replay_path: Path | None = None
    buffer = getattr(model, "replay_buffer", None)
    if replay_buffer and type(buffer) is ReplayBuffer:  # Dict/HER buffers: not stored
        replay_path = save_replay_buffer(buffer, free_name(directory / f"{stem}.replay.npz"), step=step)
    write_json_atomic(
        manifest,
        {
            "step": step,
            "model": model_path.name,
            "normalization": None if norm_path is None else norm_path.name,
            "replay_buffer": None if replay_path is None else replay_path.name,
            "algo": type(model).__name__,
        },
    )
    return Checkpoint(step, model_path, norm_path, manifest, replay_path)


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
        # The replay buffer is not part of completeness: only the latest checkpoint keeps one.
        replay = data.get("replay_buffer")
        replay_path = None if replay is None or not (directory / replay).is_file() else directory / replay
        found.append(Checkpoint(int(data["step"]), model_path, norm_path, manifest, replay_path))
    found.sort(key=lambda c: (c.step, c.manifest.stat().st_mtime))
    return found


def prune_replay_buffers(directory: Path, keep: int = 1) -> list[Path]:
    """Delete the replay buffers of all but the newest ``keep`` complete checkpoints, and any
    left by a checkpoint whose manifest was never written; returns what was deleted.

    A buffer is as large as the run's ``buffer_size`` allows (tens of MB), so unlike every
    other artefact only the latest ones are kept; the model, normalisation and manifest of
    older checkpoints stay (resuming from one of those refills its buffer).
    """
    if keep < 0:
        raise ValueError(f"prune_replay_buffers: keep={keep}: allowed >= 0")
    directory = Path(directory)
    kept = {c.replay_buffer for c in list_checkpoints(directory)[::-1][:keep] if c.replay_buffer is not None}
    removed = []
    for path in sorted(directory.glob("step_*.replay*.npz")):
        if path not in kept:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def latest_checkpoint(directory: Path) -> Checkpoint | None:
    """The complete checkpoint with the most steps, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None
