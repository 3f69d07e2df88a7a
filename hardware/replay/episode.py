"""The journaled calibration episode both session loops run (the single-qubit ``session``
and ``two_qubit``): the env's reset on the session device, then policy steps until the env
ends the episode or the session's step limit, each action journaled before the env plays
it and each observation journaled (checked against the journal on a resume) after.

The episode keeps its progress on itself, so a session that stops mid-way (a safety
refusal, an action outside the box, a lost job, a replayed stop) still has the steps, the
last step number, calibration state and info it reached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from numpy.typing import NDArray

from pulsecal.envs.contract import CalibrationState
from pulsecal.envs.protocol import Device

from ..journal import Journal
from ..policy import Policy
from .journal_state import JournalState
from .loop import StepRecord, journal_action, log_observation, policy_action, step_record


class JournaledEpisode:
    """One env episode of ``policy`` on a session's journal.

    ``names``: the parameter names the observation records carry; None takes them from the
    env's calibration state at each record (a two-qubit gate's own names)."""

    def __init__(self, env: Any, policy: Policy, journal: Journal, state: JournalState, sid: str,
                 names: Sequence[str] | None = None) -> None:
        self.env, self.policy, self.journal, self.state, self.sid = env, policy, journal, state, sid
        self._names = names
        self.policy_state: Any = policy.initial_state()
        self.calibration: CalibrationState = env.unwrapped.calibration_state()
        self.steps: list[StepRecord] = []
        self.terminated = self.truncated = False
        self.t = 0
        self.obs: NDArray[Any] | None = None
        self.info: Mapping[str, Any] = {}

    def reset(self, seed: int | None, device: Device, initial_params: NDArray[Any]) -> StepRecord:
        """Reset the env on ``device`` at ``initial_params`` and journal its first observation."""
        self.obs, self.info = self.env.reset(seed=seed, options={"device": device, "initial_params": initial_params})
        self._record(step_record(0, None, 0.0, self.info, self._calibrated()))
        return self.steps[-1]

    def run(self, max_steps: int, after_step: Callable[[StepRecord], None] | None = None) -> None:
        """Step the policy until the env ends the episode or ``max_steps`` steps were taken;
        ``after_step`` is called with each step's record once it is journaled."""
        while self.t < max_steps and not (self.terminated or self.truncated):
            self.t += 1
            assert self.obs is not None  # (reset ran first)
            action, self.policy_state = policy_action(self.policy, self.obs, self.policy_state, self.calibration,
                                                      self.env.action_space)
            journal_action(self.journal, self.state, self.sid, self.t, action, self.calibration)
            self.obs, reward, self.terminated, self.truncated, self.info = self.env.step(action)
            self._record(step_record(self.t, action, float(reward), self.info, self._calibrated()))
            if after_step is not None:
                after_step(self.steps[-1])

    def _calibrated(self) -> CalibrationState:
        self.calibration = self.env.unwrapped.calibration_state()
        return self.calibration

    def _record(self, record: StepRecord) -> None:
        self.steps.append(record)
        assert self.obs is not None
        names = self.calibration.parameter_names if self._names is None else self._names
        log_observation(self.journal, self.state, self.sid, record, self.obs, names)


__all__ = ["JournaledEpisode"]
