"""An exported policy folder (ONNX + manifest) as a replay policy, through the lab runner.

Built on ``pulsecal.agents.runner.load_policy``: the folder is verified file by file
before anything runs, and nothing here imports torch or stable-baselines3.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.agents.runner import (
    ActionError,
    ExportedPolicy,
    OutOfBounds,
    PolicyState,
    load_policy,
)
from pulsecal.hardware.package_data import resolve_path
from pulsecal.hardware.policy import ActionOutOfRange


class OnnxPolicy:
    """An exported policy folder run by the torch-free lab runner; a recurrent policy's
    state is the runner's ``PolicyState``, threaded through ``act`` by the session.

    Args:
        folder: the exported policy folder (``policy.onnx`` + ``manifest.json``), or
            ``pkg://<package>/<path>`` for one shipped inside a package.
        out_of_bounds: what the runner does with observations outside the training box
            ("allow", "warn", "refuse").
    """

    def __init__(self, folder: str | Path, *, out_of_bounds: OutOfBounds = "warn") -> None:
        self.folder = resolve_path(folder)
        self.policy: ExportedPolicy = load_policy(self.folder, out_of_bounds=out_of_bounds)

    @property
    def env_id(self) -> str | None:
        """The env id the policy was exported for (its manifest's)."""
        return self.policy.env_id

    def describe(self) -> dict[str, Any]:
        return {"kind": "onnx", "folder": str(self.folder), "env_id": self.policy.env_id,
                "manifest_sha256": file_sha256(self.folder / "manifest.json")}

    def initial_state(self) -> PolicyState | None:
        return self.policy.initial_state() if self.policy.recurrent else None

    def act(self, observation: NDArray[Any], state: PolicyState | None) -> tuple[NDArray[np.float32],
                                                                                 PolicyState | None]:
        obs = np.asarray(observation, dtype=np.float32)
        try:
            if self.policy.recurrent:
                return self.policy.act_with_state(obs, state if state is not None else self.policy.initial_state())
            return self.policy.act(obs), None
        except ActionError as err:
            # The runner refused to act; the session ends on it as on any action outside
            # the box (hardware cannot name the runner's own error class).
            raise ActionOutOfRange(str(err)) from err


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes ("" if it does not exist), for the journal's provenance."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
