"""Export a trained SB3 policy into a self-contained folder the lab can run without torch.

The folder holds ``policy.onnx`` (raw observation in, deterministic action out, with the
VecNormalize observation statistics and SB3's action post-processing folded into the
graph), ``manifest.json`` (what the policy was trained on and for, and the sha256 of
every file) and, behind a flag, ``policy.pt`` (TorchScript of the same computation).
:mod:`pulsecal.agents.runner` loads such a folder with numpy + onnxruntime only.

The graph is built by tracing a small wrapper module around ``policy._predict`` with
torch's legacy TorchScript-based ONNX exporter (``dynamo=False``): the policies are MLPs
or a single-step LSTM, which that exporter handles exactly, and it needs no package
beyond torch + onnx (the dynamo exporter would add ``onnxscript``). Every export is
checked against SB3's own ``predict`` before its manifest is written, so a silent
exporter regression cannot produce a folder.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from pulsecal.agents.export.graph import (
    DEFAULT_OPSET,
    build_actor,
    example_inputs,
    onnx_bytes,
    torchscript_bytes,
)
from pulsecal.agents.export.manifest import TORCHSCRIPT_NAME, build_manifest, sha256_hex
from pulsecal.agents.export.metadata import (
    ExportCheck,
    ExportMetadata,
    ObservationNormalisation,
    metadata_from_env,
)
from pulsecal.agents.export.parity import check_graph, reference_actions, sample_observations
from pulsecal.agents.pinned_env import make_pinned
from pulsecal.agents.runner import (
    MANIFEST_NAME,
    ONNX_NAME,
)

__all__ = [
    "DEFAULT_OPSET",
    "TORCHSCRIPT_NAME",
    "ExportCheck",
    "ExportMetadata",
    "ObservationNormalisation",
    "export_policy",
    "export_run",
    "metadata_from_env",
    "read_normalisation",
    "reference_actions",
    "sample_observations",
]


def export_policy(
    model: BaseAlgorithm,
    out_dir: str | Path,
    *,
    vec_normalize: VecNormalize | ObservationNormalisation | None = None,
    metadata: ExportMetadata | None = None,
    torchscript: bool = False,
    opset: int = DEFAULT_OPSET,
    check_samples: int = 2000,
    tolerance: float = 1e-5,
    overwrite: bool = False,
) -> Path:
    """Write ``policy.onnx`` + ``manifest.json`` (+ ``policy.pt``) for ``model`` into ``out_dir``.

    Args:
        model: a trained SB3 / sb3-contrib algorithm with Box observation and action spaces
            (PPO, A2C, SAC, TD3, DDPG, RecurrentPPO).
        out_dir: the folder to create; it must not exist or be empty unless ``overwrite``.
        vec_normalize: the VecNormalize the model was trained behind (its observation
            statistics are folded into the graph), or its statistics, or None.
        metadata: env id, layout names/units, pulse/device/safety description, training
            config, seed, provenance; see :func:`metadata_from_env`.
        torchscript: also write ``policy.pt``, a TorchScript trace of the same computation.
        opset: ONNX opset of the graph.
        check_samples: random observations (in and beyond the observation box) on which the
            graph must reproduce ``model.predict`` before anything is written.
        tolerance: largest allowed absolute action difference in that check.
        overwrite: replace the files of an existing export in ``out_dir``.

    Returns:
        The folder, ready for :func:`pulsecal.agents.runner.load_policy`.
    """
    meta = metadata or ExportMetadata()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: allowed a new or empty folder (or overwrite=True)")
    norm = (
        ObservationNormalisation.from_vec_normalize(vec_normalize)
        if isinstance(vec_normalize, VecNormalize)
        else vec_normalize
    )
    actor, recurrent = build_actor(model, norm)
    inputs = example_inputs(model, recurrent)
    onnx_data = onnx_bytes(actor, inputs, recurrent, opset)
    check = check_graph(onnx_data, model, norm, recurrent, check_samples, tolerance, seed=0)

    files: dict[str, bytes] = {ONNX_NAME: onnx_data}
    if torchscript:
        files[TORCHSCRIPT_NAME] = torchscript_bytes(actor, inputs)

    manifest = build_manifest(model, norm, meta, recurrent, opset, check, files)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    # The folder must load with the lab runner exactly as it will in the lab.
    from pulsecal.agents.runner import load_policy

    load_policy(out)
    return out


# --------------------------------------------------------------------------- run dirs

_REVISION = re.compile(r"^(?P<stem>.+?)(?:-r(?P<k>\d+))?(?P<suffix>\.[a-z]+)$")


def _latest(run_dir: Path, name: str) -> Path | None:
    """``name`` or its newest ``-r<k>`` sibling (a resumed run never overwrites, it adds -r<k>)."""
    stem, suffix = name.rsplit(".", 1)
    best: tuple[int, Path] | None = None
    for path in run_dir.glob(f"{stem}*.{suffix}"):
        match = _REVISION.match(path.name)
        if match is None or match["stem"] != stem or match["suffix"] != f".{suffix}":
            continue
        k = int(match["k"] or 0)
        if best is None or k > best[0]:
            best = (k, path)
    return None if best is None else best[1]


def read_normalisation(npz_path: str | Path) -> ObservationNormalisation | None:
    """Observation statistics stored by ``pulsecal.agents.persistence.save_normalization``
    (``.npz`` read with ``allow_pickle=False`` + ``.json`` settings); None if not normalised."""
    path = Path(npz_path)
    settings = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    if settings.get("format") != "pulsecal-vecnormalize-1":
        raise ValueError(f"{path.with_suffix('.json')}: format {settings.get('format')!r}: allowed 'pulsecal-vecnormalize-1'")
    if not settings.get("norm_obs"):
        return None
    with np.load(path, allow_pickle=False) as data:
        mean, var = np.array(data["obs_mean"]), np.array(data["obs_var"])
    return ObservationNormalisation(
        mean=mean, var=var, epsilon=float(settings["epsilon"]), clip_obs=float(settings["clip_obs"])
    )


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    checkpoint: str | int | None = None,
    torchscript: bool = False,
    overwrite: bool = False,
) -> Path:
    """Export the policy of a ``pulsecal-train`` run directory.

    Reads the final model named by the newest ``metrics*.json`` (or, with ``checkpoint``
    ``"latest"`` or a step number, a checkpoint from ``checkpoints/``), its pickle-free
    normalisation statistics, the newest resolved ``config*.yaml`` (``yaml.safe_load``)
    and ``provenance*.json`` (seed, package versions, git revision, env id). The env is
    built once, with the run's env kwargs, only to read its labels and description; the
    labels are used only if its spaces equal the model's.

    Args:
        run_dir: the run directory.
        out_dir: where to write; default ``<run_dir>/export`` (``export-step_<N>`` for a checkpoint).
        checkpoint: None for the final model, ``"latest"`` or a step number.
        torchscript: also write ``policy.pt``.
        overwrite: replace an existing export.
    """
    import yaml

    from pulsecal.agents.factory import load_algorithm
    from pulsecal.agents.persistence import list_checkpoints

    run = Path(run_dir)
    config_path = _latest(run, "config.yaml")
    if config_path is None:
        raise FileNotFoundError(f"{run}: no config.yaml: allowed a pulsecal-train run directory")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    provenance_path = _latest(run, "provenance.json")
    provenance = json.loads(provenance_path.read_text(encoding="utf-8")) if provenance_path else {}

    step: int | None = None
    if checkpoint is None:
        metrics_path = _latest(run, "metrics.json")
        if metrics_path is None:
            raise FileNotFoundError(f"{run}: no metrics.json (the run did not finish): pass checkpoint='latest'")
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        model_path = run / str(metrics["model"])
        norm_path = None if metrics.get("normalization") is None else run / str(metrics["normalization"])
    else:
        found = list_checkpoints(run / "checkpoints")
        if checkpoint != "latest":
            found = [c for c in found if c.step == int(checkpoint)]
        if not found:
            raise FileNotFoundError(f"{run / 'checkpoints'}: no complete checkpoint {checkpoint!r}")
        chosen = found[-1]
        model_path, norm_path, step = chosen.model, chosen.normalization, chosen.step

    algo = str(provenance.get("algo") or config.get("agent", {}).get("name"))
    model = load_algorithm(algo, model_path)
    norm = None if norm_path is None else read_normalisation(norm_path)

    env_id = provenance.get("env_id") or config.get("env", {}).get("id")
    env_kwargs = _training_env_kwargs(env_id, config, provenance)
    meta = _metadata_for_run(model, env_id, env_kwargs)
    sources = {"model": model_path, **({"normalisation": norm_path} if norm_path else {})}
    device = dict(meta.device or {})
    # The env built above has the run's preset; physical overrides (t1_s, ...) reach the
    # training env through reset options it does not see, so the run's own device
    # config is recorded next to it.
    device["run_config"] = config.get("device")
    meta = dataclasses.replace(
        meta,
        device=device,
        env_id=env_id,
        env_kwargs=env_kwargs,
        training_config=config,
        seed=provenance.get("seed", config.get("seed")),
        training_versions=provenance.get("packages"),
        git_revision=provenance.get("git_revision"),
        source={
            "run_dir": str(run.resolve()),
            "checkpoint_step": step,
            "command": provenance.get("argv"),
            **{
                key: {"file": str(path.relative_to(run)), "sha256": sha256_hex(path.read_bytes())}
                for key, path in sources.items()
            },
        },
    )
    if out_dir is None:
        out_dir = run / ("export" if step is None else f"export-step_{step}")
    return export_policy(model, out_dir, vec_normalize=norm, metadata=meta, torchscript=torchscript, overwrite=overwrite)


def _training_env_kwargs(env_id: str | None, config: Mapping[str, Any],
                         provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The env constructor arguments the run trained with: ``provenance.json``'s
    ``env_kwargs``; for a run recorded before that field, rebuilt from its config as
    ``pulsecal-train`` builds them (a pulsecal env also gets the device section's preset)."""
    recorded = provenance.get("env_kwargs")
    if isinstance(recorded, Mapping):
        return dict(recorded)
    if env_id is not None and _is_pulsecal_env(env_id):
        from pulsecal.agents.training_devices import stored_env_kwargs

        return stored_env_kwargs(config)
    return dict(config.get("env", {}).get("kwargs") or {})


def _is_pulsecal_env(env_id: str) -> bool:
    import gymnasium as gym

    try:
        import pulsecal.envs  # noqa: F401  (registers pulsecal/<Name>-v<N>)
    except ImportError:
        pass
    try:
        spec = gym.spec(env_id)
    except (gym.error.Error, ImportError):
        return False
    entry = spec.entry_point or spec.vector_entry_point
    return isinstance(entry, str) and entry.startswith("pulsecal.envs")


def _metadata_for_run(model: BaseAlgorithm, env_id: str | None, env_kwargs: Mapping[str, Any]) -> ExportMetadata:
    """Labels and description from the run's env, if it can be built and its spaces are the model's."""
    if env_id is None:
        return ExportMetadata()
    try:
        import pulsecal.envs  # noqa: F401  (registers pulsecal/<Name>-v<N>)
    except ImportError:
        pass
    try:
        env = make_pinned(env_id, **dict(env_kwargs))
    except Exception as err:  # the env is only a source of labels; the export stands without it
        warnings.warn(f"could not build {env_id!r} to read its labels ({err}); using generic labels", stacklevel=3)
        return ExportMetadata(env_id=env_id)
    try:
        same = env.observation_space == model.observation_space and env.action_space == model.action_space
        if not same:
            warnings.warn(f"{env_id!r} built with the run's kwargs has other spaces than the model; generic labels", stacklevel=3)
            return ExportMetadata(env_id=env_id)
        return metadata_from_env(env)
    finally:
        env.close()
