"""What a replay session or a sweep qubit ends with, as the console shows it: the exit
code of ``pulsecal-replay`` and the one outcome line."""

from __future__ import annotations

from typing import Any

# What ``pulsecal-replay`` exits with (docs/lab_sessions.md has the table for users). A
# stop reason is ``pulsecal.hardware.replay.stops``'; 3 belongs to a session another
# process holds.
EXIT_CODES: dict[str, int] = {
    "finished": 0,
    "error": 1,  # unexpected: a bug (traceback) or a journal the replay cannot retrace (one line)
    "refused": 2,  # a refused config or command line; nothing was written
    "busy": 3,  # the session (or sweep qubit) is held by another process
    "budget_exhausted": 4,
    "safety_refused": 5,
    "action_out_of_range": 6,
    "backend_failed": 7,  # a job lost beyond the retry policy; rerun to resume
    "verdict_failed": 8,  # finished, but its verification's verdict is ``failed: <reason>``
}


def exit_code(result: Any) -> int:
    """The exit code of a session's ``ReplayResult`` or a sweep qubit's ``QubitOutcome``."""
    from pulsecal.hardware import sweep as sw

    stop = getattr(result, "stop", None)
    reason = stop.reason if stop is not None else getattr(result, "stop_reason", None)
    if reason is not None:
        return EXIT_CODES[reason]
    state = getattr(result, "state", sw.FINISHED)
    verdict = getattr(result, "verdict", None)
    if verdict is not None and not verdict.calibrated:
        return EXIT_CODES["verdict_failed"]
    if state == sw.FINISHED:
        return EXIT_CODES["finished"]
    if state == sw.BUSY:
        return EXIT_CODES["busy"]
    return EXIT_CODES["budget_exhausted"] if state == sw.BUDGET_EXHAUSTED else EXIT_CODES["error"]


def outcome_line(result: Any) -> str:
    """The one line the console prints for a session's ``ReplayResult`` or a sweep
    qubit's ``QubitOutcome``."""
    if hasattr(result, "qubit"):
        return (f"qubit {result.qubit}: {'skipped, ' if result.skipped else ''}{result.state} after "
                f"{result.attempts} attempt(s)" + (f": {result.error}" if result.error else ""))
    rep = result.report
    if result.stop is not None:
        then = ("rerun the same command to resume" if not result.stop.terminal
                else "a rerun reports the same; a new session_id starts afresh")
        return (f"session {rep['session_id']} stopped: {result.stop.short()}; {rep['env_steps']} steps, "
                f"{result.ledger_shots} shots; report in {result.folder} ({then})")
    return (f"session {rep['session_id']}: {rep['env_steps']} steps, {result.ledger_shots} shots, "
            f"estimated infidelity {rep['estimated_infidelity_initial']:.3g} -> "
            f"{rep['estimated_infidelity_final']:.3g}"
            + (f"; verdict {result.verdict.describe()}" if getattr(result, "verdict", None) is not None else "")
            + f"; report in {result.folder}")
