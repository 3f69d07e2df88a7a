"""Policies that drive replay sessions (``pulsecal.hardware.policy.Policy``).

``ScriptedPolicy`` (the textbook controller) and ``OnnxPolicy`` (an exported policy
through the torch-free lab runner) import no learner; ``pulsecal.agents.policies.sb3``
(a training run's SB3 model) imports torch and is not imported here, so the lab path
stays torch-free.
"""

from .onnx import OnnxPolicy
from .scripted import ScriptedPolicy

__all__ = ["OnnxPolicy", "ScriptedPolicy"]
