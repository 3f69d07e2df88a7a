"""Progress of a replay session on stderr: a tqdm bar on a terminal, plain lines when piped.

``run_session`` calls its optional ``progress`` hook once per env step (step 0 is the
reset's measurement) with the step, the steps the session may take, the shots its ledger
counts, its ledger budget and the env's current error estimate. ``SessionProgress`` is
that hook for a person watching: on a terminal it draws one tqdm bar; when stderr is a
file or a pipe it writes a whole line every ``every_steps`` steps or ``every_s`` seconds
and at the end, with no carriage returns, so logs stay readable. The bar's position is
clamped to its total, so it never shows more steps than the session can take.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO


class ProgressHook(Protocol):
    """What ``run_session`` reports after each env step."""

    def __call__(self, step: int, total_steps: int, shots: int, budget_shots: int | None,
                 estimate: float) -> None: ...


def _estimate(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "n/a"


def _shots(shots: int, budget: int | None) -> str:
    # Not clamped: a ledger past its budget (orphaned re-runs after a kill) is shown as it is.
    return f"{shots}" if budget is None else f"{shots}/{budget}"


class SessionProgress:
    """A ``ProgressHook`` writing to ``stream`` (default stderr); close it (or use ``with``).

    Args:
        label: names the session in every line (e.g. its id, or ``q3`` in a sweep).
        stream: where to write; None: ``sys.stderr`` at the time of each write.
        interactive: draw a tqdm bar; None: when ``stream`` is a terminal.
        every_steps: plain mode writes a line every this many steps, >= 1.
        every_s: ... or when this many seconds passed since the last line, > 0.
        clock: monotonic seconds (inject a fake in tests).
    """

    def __init__(self, label: str, *, stream: TextIO | None = None, interactive: bool | None = None,
                 every_steps: int = 1, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(f"SessionProgress.every_steps={every_steps!r}: allowed an integer >= 1")
        if not (isinstance(every_s, int | float) and math.isfinite(every_s) and every_s > 0):
            raise ValueError(f"SessionProgress.every_s={every_s!r}: allowed a finite number > 0")
        self.label = label
        self._stream = stream
        self._interactive = interactive
        self.every_steps = every_steps
        self.every_s = float(every_s)
        self._clock = clock
        self._bar: Any = None
        self._last_line_at: float | None = None
        self._pending: str | None = None  # plain mode: the latest state not yet written

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def _is_interactive(self) -> bool:
        if self._interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            self._interactive = bool(isatty()) if callable(isatty) else False
        return self._interactive

    def __call__(self, step: int, total_steps: int, shots: int, budget_shots: int | None,
                 estimate: float) -> None:
        total = max(int(total_steps), 0)
        done = min(max(int(step), 0), total)  # clamped: a bar never passes its total
        if self._is_interactive():
            self._draw(done, total, shots, budget_shots, estimate)
            return
        line = (f"{self.label}: step {done}/{total}, shots {_shots(shots, budget_shots)}, "
                f"estimated infidelity {_estimate(estimate)}")
        now = self._clock()
        due = (done == total or done % self.every_steps == 0 or self._last_line_at is None
               or now - self._last_line_at >= self.every_s)
        if due:
            self._write(line, now)
        else:
            self._pending = line

    def _draw(self, done: int, total: int, shots: int, budget: int | None, estimate: float) -> None:
        from tqdm.auto import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.label, unit="step", file=self.stream, leave=True)
        elif self._bar.total != total:
            self._bar.total = total
        self._bar.n = done  # absolute, not incremental: a replayed step is not counted twice
        self._bar.set_postfix_str(f"shots {_shots(shots, budget)}, est. infidelity {_estimate(estimate)}",
                                  refresh=False)
        self._bar.refresh()

    def _write(self, line: str, now: float) -> None:
        print(line, file=self.stream, flush=True)
        self._last_line_at = now
        self._pending = None

    def close(self) -> None:
        """End the display: close the bar, or write the last state if no line showed it."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._pending is not None:
            self._write(self._pending, self._clock())

    def __enter__(self) -> SessionProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ProgressHook", "SessionProgress"]
