"""The one thing a replay session needs of a policy: an action for an observation.

A session (``pulsecal.hardware.replay``) and the evaluation suite
(``pulsecal.agents.evaluation``) drive any object with this shape; what makes the action
(a fixed-gain controller, a plain function, an SB3 model, an exported ONNX graph) lives
outside the hardware layer (``pulsecal.agents.policies``), so the lab path imports no
learner.

The recurrent state is explicit: the caller asks for ``initial_state()`` at the start of
each episode and threads what ``act`` returns into the next call, so a policy object holds
no episode memory of its own and a resumed session re-derives every action from the
journaled counts alone.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from numpy.typing import NDArray

from pulsecal.envs.contract import CalibrationState


class ActionOutOfRange(RuntimeError):
    """A policy's action is not one the env may apply: non-finite, of the wrong shape or
    outside the action box. A policy raises it from ``act`` when it refuses to act (the
    ONNX runner's ``ActionError``); the session raises it for an action it is handed that
    leaves the box. Either way the session stops (``action_out_of_range``), it never clips."""


@runtime_checkable
class Policy(Protocol):
    """What drives a session: an action in the env's action box for an observation.

    An action outside the box stops the session (:class:`ActionOutOfRange`).

    ``initial_state()`` gives the recurrent state at the start of an episode (None for a
    policy without memory); ``act(observation, state)`` returns the action and the state
    for the next step.

    Optional hooks, called by the session when present:

    - ``bind(calibration_state)``: the env's public state
      (``pulsecal.envs.contract.CalibrationState``) before every ``act``, for policies
      that need more than the observation (a scripted controller reads the current gate
      parameters, the probe set and what one unit of action changes).
    - ``describe() -> dict``: what the journal and the report record of the policy.
    """

    def initial_state(self) -> Any: ...

    def act(self, observation: NDArray[Any], state: Any) -> tuple[NDArray[Any], Any]: ...


class BindsCalibrationState(Protocol):
    """The optional ``bind`` hook of a :class:`Policy`."""

    def bind(self, calibration_state: CalibrationState) -> None: ...


__all__ = ["ActionOutOfRange", "BindsCalibrationState", "Policy"]
