"""``manifest.json``: the policy's layout, provenance and the sha256 of every file."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import math
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.base_class import BaseAlgorithm

from pulsecal.agents.export.metadata import (
    ExportCheck,
    ExportMetadata,
    ObservationNormalisation,
    jsonable,
)
from pulsecal.agents.runner import (
    MANIFEST_SCHEMA,
    MANIFEST_SCHEMA_VERSION,
    ONNX_NAME,
    manifest_digest,
)

TORCHSCRIPT_NAME = "policy.pt"
# Packages whose versions decide whether the exported numbers are reproducible.
_VERSIONED_PACKAGES = (
    "pulsecal",
    "numpy",
    "torch",
    "stable-baselines3",
    "sb3-contrib",
    "gymnasium",
    "onnx",
    "onnxruntime",
)


def _bounds_list(flat: NDArray[np.float64]) -> Any:
    """Box bounds as nested JSON lists: an infinite bound is ``null`` (JSON has no infinity)."""
    if flat.ndim == 0:
        return None if not math.isfinite(float(flat)) else float(flat)  # type: ignore[return-value]
    return [_bounds_list(v) for v in flat]


def _layout(
    shape: tuple[int, ...], labels: Sequence[str] | None, units: Sequence[str] | None, prefix: str
) -> tuple[list[str], list[str]]:
    size = int(np.prod(shape)) if shape else 1
    names = list(labels) if labels is not None else [f"{prefix}[{i}]" for i in range(size)]
    unit_list = list(units) if units is not None else ["" for _ in range(size)]
    for what, seq in ((f"{prefix} labels", names), (f"{prefix} units", unit_list)):
        if len(seq) != size:
            raise ValueError(f"{what} has {len(seq)} entries: allowed {size} (one per element of shape {shape})")
    return names, unit_list


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def _git_revision() -> str | None:
    """The source tree's commit at export time (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None


def _env_version(env_id: str | None) -> int | None:
    match = re.search(r"-v(\d+)$", env_id or "")
    return int(match.group(1)) if match else None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




def build_manifest(
    model: BaseAlgorithm,
    norm: ObservationNormalisation | None,
    meta: ExportMetadata,
    recurrent: bool,
    opset: int,
    check: ExportCheck,
    files: Mapping[str, bytes],
) -> dict[str, Any]:
    policy = model.policy
    obs_space, act_space = policy.observation_space, policy.action_space
    assert isinstance(obs_space, spaces.Box) and isinstance(act_space, spaces.Box)
    obs_shape = tuple(int(s) for s in obs_space.shape)
    act_shape = tuple(int(s) for s in act_space.shape)
    obs_labels, obs_units = _layout(obs_shape, meta.observation_labels, meta.observation_units, "observation")
    act_labels, act_units = _layout(act_shape, meta.action_labels, meta.action_units, "action")

    graph_inputs: dict[str, Any] = {"observation": {"dtype": "float64", "shape": ["batch", *obs_shape]}}
    graph_outputs: dict[str, Any] = {"action": {"dtype": "float32", "shape": ["batch", *act_shape]}}
    recurrent_state = None
    if recurrent:
        n_layers, _, hidden = policy.lstm_hidden_state_shape  # type: ignore[misc]
        state_shape = [int(n_layers), "batch", int(hidden)]
        for name in ("lstm_h", "lstm_c"):
            graph_inputs[name] = {"dtype": "float32", "shape": state_shape}
            graph_outputs[f"{name}_out"] = {"dtype": "float32", "shape": state_shape}
        recurrent_state = {
            "inputs": ["lstm_h", "lstm_c"],
            "outputs": ["lstm_h_out", "lstm_c_out"],
            "shape": [int(n_layers), 1, int(hidden)],
            "dtype": "float32",
            "initial": "zeros",
            "reset": "start every episode from the initial (zero) state, as SB3 does on episode_start",
        }

    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "env": {
            "id": meta.env_id,
            "version": _env_version(meta.env_id),
            "kwargs": jsonable(meta.env_kwargs),
            "description": jsonable(meta.env_description),
        },
        "algorithm": {
            "name": type(model).__name__,
            "policy_class": type(policy).__name__,
            "recurrent": recurrent,
            "deterministic": True,
        },
        "observation": {
            "shape": list(obs_shape),
            "space_dtype": str(obs_space.dtype),
            "low": _bounds_list(np.asarray(obs_space.low, dtype=np.float64)),
            "high": _bounds_list(np.asarray(obs_space.high, dtype=np.float64)),
            "labels": obs_labels,
            "units": obs_units,
            "accepted_dtypes": ["float16", "float32", "float64"],
            "normalisation": None if norm is None else {**norm.to_json(), "folded_into_graph": True},
        },
        "action": {
            "shape": list(act_shape),
            "dtype": "float32",
            "low": _bounds_list(np.asarray(act_space.low, dtype=np.float64)),
            "high": _bounds_list(np.asarray(act_space.high, dtype=np.float64)),
            "labels": act_labels,
            "units": act_units,
            "postprocess": {
                "kind": "unscale_tanh_then_clip" if policy.squash_output else "clip",
                "formula": (
                    "clip(low + 0.5 * (a + 1) * (high - low), low, high)" if policy.squash_output else "clip(a, low, high)"
                ),
                "folded_into_graph": True,
            },
        },
        "recurrent_state": recurrent_state,
        "graph": {
            "file": ONNX_NAME,
            "format": "onnx",
            "opset": opset,
            "exporter": f"torch.onnx.export(dynamo=False) torch {th.__version__}",
            "inputs": graph_inputs,
            "outputs": graph_outputs,
            "torchscript": TORCHSCRIPT_NAME if TORCHSCRIPT_NAME in files else None,
        },
        "pulse": jsonable(meta.pulse),
        "device": jsonable(meta.device),
        "safety": jsonable(meta.safety),
        "training": {
            "config": jsonable(meta.training_config),
            "seed": meta.seed,
            "num_timesteps": int(model.num_timesteps),
            "versions": jsonable(meta.training_versions),
            "git_revision": meta.git_revision,
            "source": jsonable(meta.source),
        },
        "provenance": {"export_git_revision": _git_revision(), "export_versions": _package_versions()},
        "export_check": dataclasses.asdict(check),
        "files": {name: {"sha256": sha256_hex(data), "bytes": len(data)} for name, data in sorted(files.items())},
    }
    manifest["manifest_sha256"] = manifest_digest(manifest)
    return manifest
