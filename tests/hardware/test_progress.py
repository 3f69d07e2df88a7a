"""Session progress on stderr: plain whole lines when piped, a clamped bar on a terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hw_helpers import FakeClock

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.hardware.progress import SessionProgress
from pulsecal.hardware.replay import (
    ReplaySettings,
    miscalibrated_start,
    run_session,
    simulated_backend,
)

GATE_S = 20e-9
LINE = re.compile(r"^s1: step (\d+)/(\d+), shots (\d+)/(\d+), estimated infidelity (\S+)$")


def _session(tmp_path: Path, stream: io.StringIO, max_steps: int, **kw: object) -> object:
    backend = simulated_backend(seed=3, idempotent_submit=False)
    start = miscalibrated_start(backend.device.current_transmon(), GATE_S, amplitude_rel=0.04, beta_rel=0.4,
                                detuning_hz=0.5e6)
    settings = ReplaySettings("s1", 3, tuple(start.as_array()), max_steps=max_steps,  # type: ignore[arg-type]
                              budget_shots=5000, env={"shots_per_probe": 50, "shot_budget": 100_000})
    clock = FakeClock()
    with SessionProgress("s1", stream=stream, **kw) as progress:  # type: ignore[arg-type]
        return run_session(backend, ScriptedPolicy(), tmp_path / "s", settings, clock=clock, sleep=clock.sleep,
                           fsync=False, plots=False, progress=progress)


def test_piped_session_writes_plain_lines_up_to_the_total(tmp_path: Path) -> None:
    err = io.StringIO()  # not a terminal: plain lines
    result = _session(tmp_path, err, max_steps=3)
    text = err.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    steps = [int(m.group(1)) for m in parsed if m]
    assert steps == [0, 1, 2, 3]
    last = parsed[-1]
    assert last is not None
    assert int(last.group(1)) == int(last.group(2)) == 3  # reaches the total, not past it
    assert int(last.group(3)) == result.ledger_shots <= int(last.group(4)) == 5000  # type: ignore[attr-defined]
    assert float(last.group(5)) == pytest.approx(result.steps[-1].infidelity_estimate, rel=1e-2)  # type: ignore[attr-defined]


def test_plain_lines_are_thinned_and_the_last_state_is_always_written() -> None:
    err = io.StringIO()
    now = [0.0]
    with SessionProgress("s1", stream=err, every_steps=4, every_s=1e9, clock=lambda: now[0]) as p:
        for t in range(7):
            p(t, 10, 100 * t, 5000, 0.1)
    steps = [int(m.group(1)) for m in map(LINE.match, err.getvalue().splitlines()) if m]
    assert steps == [0, 4, 6]  # the first, every 4th, and the last on close


def test_plain_lines_follow_the_clock_between_steps() -> None:
    err = io.StringIO()
    now = [0.0]
    p = SessionProgress("s1", stream=err, every_steps=100, every_s=10.0, clock=lambda: now[0])
    for t in range(5):
        now[0] = 6.0 * t
        p(t, 50, 0, None, float("nan"))
    # Lines at t=0 s, then at 12 s and 24 s (10 s passed); 6 s and 18 s are skipped.
    assert [int(line.split()[2].split("/")[0]) for line in err.getvalue().splitlines()] == [0, 2, 4]
    assert "shots 0, estimated infidelity n/a" in err.getvalue()


def test_terminal_bar_never_passes_its_total() -> None:
    err = io.StringIO()
    p = SessionProgress("s1", stream=err, interactive=True)
    for t in (0, 1, 2, 3, 5, 9):  # a caller reporting past the total is clamped
        p(t, 3, 10 * t, 50, 0.01)
    bar = p._bar
    assert bar is not None and bar.n == bar.total == 3
    p.close()
    assert "3/3" in err.getvalue() and "4/3" not in err.getvalue()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="every_steps=0"):
        SessionProgress("s", every_steps=0)
    with pytest.raises(ValueError, match="every_s=0"):
        SessionProgress("s", every_s=0)
