"""How a session ends when it cannot run to its last step: the stop reasons.

A session that runs out of shots, meets a program the safety envelope refuses, gets an
action outside the env's action box from its policy, or loses a job beyond the retry
policy has not crashed: it has an outcome. ``run_session`` turns each of these into a
:class:`SessionStop`, journals it (``session_stopped``), writes the report with it and
returns; the console maps the reason to an exit code (``docs/lab_sessions.md``).

Three reasons are terminal: running the same session again would meet the same limit or
the same action, so a rerun reports the recorded stop from the journal and runs no job.
A lost job is not: the journal keeps every finished job, so a rerun resumes the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import BackendError
from ..policy import ActionOutOfRange
from ..safety import SafetyViolation

FINISHED = "finished"
BUDGET_EXHAUSTED = "budget_exhausted"
SAFETY_REFUSED = "safety_refused"
ACTION_OUT_OF_RANGE = "action_out_of_range"
BACKEND_FAILED = "backend_failed"

# The limits that are shot budgets rather than the envelope's physical limits.
_BUDGET_LIMITS = frozenset({"shot_budget", "max_shots_per_day"})
_TERMINAL = frozenset({BUDGET_EXHAUSTED, SAFETY_REFUSED, ACTION_OUT_OF_RANGE})
_WHAT = {BUDGET_EXHAUSTED: "shot budget exhausted", SAFETY_REFUSED: "the safety envelope refused a program",
         ACTION_OUT_OF_RANGE: "the policy's action left the action box",
         BACKEND_FAILED: "the backend lost a job beyond the retry policy"}


@dataclass(frozen=True)
class SessionStop:
    """Why a session ended before its last step.

    Attributes:
        reason: one of ``budget_exhausted``, ``safety_refused``, ``action_out_of_range``,
            ``backend_failed``.
        detail: the refusal or error, one line (the violated limits, the action, the job).
        env_step: the env step that could not be completed (0: the reset's measurement).
    """

    reason: str
    detail: str
    env_step: int

    def __post_init__(self) -> None:
        if self.reason not in _WHAT:
            raise ValueError(f"SessionStop.reason={self.reason!r}: allowed one of {sorted(_WHAT)}")

    @property
    def terminal(self) -> bool:
        """A rerun would stop the same way, so it reports this stop instead of resuming."""
        return self.reason in _TERMINAL

    def describe(self) -> str:
        """One line for a person: what happened, where, and the detail."""
        return f"{_WHAT[self.reason]} at env step {self.env_step}: {self.detail}"

    def short(self) -> str:
        """``describe`` with only the first of several refusals (the rest are in the report)."""
        parts = self.detail.split("; ")
        more = f" (and {len(parts) - 1} more)" if len(parts) > 1 else ""
        return f"{_WHAT[self.reason]} at env step {self.env_step}: {parts[0]}{more}"

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail, "env_step": self.env_step,
                "terminal": self.terminal}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SessionStop:
        return cls(str(d["reason"]), str(d.get("detail", "")), int(d.get("env_step", 0)))


class RecordedStop(Exception):
    """Raised where a terminally stopped session would run a job again: its rerun ends at
    the journaled stop instead (``stop``)."""

    def __init__(self, stop: SessionStop) -> None:
        super().__init__(stop.describe())
        self.stop = stop


def stop_of(err: BaseException, env_step: int) -> SessionStop | None:
    """The stop an exception of the session loop means, or None (not a session outcome:
    a bug or a divergence, which the caller lets propagate)."""
    if isinstance(err, RecordedStop):
        return err.stop
    detail = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, SafetyViolation):
        spent = bool(err.violations) and all(v.limit in _BUDGET_LIMITS for v in err.violations)
        return SessionStop(BUDGET_EXHAUSTED if spent else SAFETY_REFUSED, detail, env_step)
    if isinstance(err, ActionOutOfRange):
        return SessionStop(ACTION_OUT_OF_RANGE, detail, env_step)
    if isinstance(err, BackendError):
        return SessionStop(BACKEND_FAILED, f"{type(err).__name__}: {detail}", env_step)
    return None


__all__ = ["ACTION_OUT_OF_RANGE", "BACKEND_FAILED", "BUDGET_EXHAUSTED", "FINISHED", "SAFETY_REFUSED",
           "RecordedStop", "SessionStop", "stop_of"]
