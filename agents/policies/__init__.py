"""Policies that drive replay sessions (``pulsecal.hardware.policy.Policy``).

``scripted.ScriptedPolicy`` (the textbook controller), ``cz_scripted.ScriptedCZPolicy``
(the textbook CZ update rules for two-qubit sessions), ``ecr_scripted.ScriptedECRPolicy`` (the
textbook ECR tomography update), ``function.FunctionPolicy`` (a plain
function observation -> action, e.g. the all-zero action the evaluation plays) and
``onnx.OnnxPolicy`` (an exported policy through the torch-free lab runner) import no
learner; ``sb3.SB3Policy`` (a training run's SB3 model, in replay and in the evaluation)
imports torch. Each is imported only when asked for: importing
onnxruntime starts a thread, which a forking caller of the scripted policy must not
inherit, and the SB3 one would pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cz_scripted import ScriptedCZPolicy
    from .ecr_scripted import ScriptedECRPolicy
    from .function import FunctionPolicy
    from .onnx import OnnxPolicy
    from .sb3 import SB3Policy
    from .scripted import ScriptedPolicy

_MODULE_OF = {"FunctionPolicy": ".function", "ScriptedCZPolicy": ".cz_scripted",
              "ScriptedECRPolicy": ".ecr_scripted", "OnnxPolicy": ".onnx", "SB3Policy": ".sb3",
              "ScriptedPolicy": ".scripted"}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FunctionPolicy", "OnnxPolicy", "SB3Policy", "ScriptedCZPolicy", "ScriptedECRPolicy", "ScriptedPolicy"]
