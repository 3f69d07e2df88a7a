"""Training's progress bar ends at its total although rollouts overshoot the step count."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from pulsecal.agents.callbacks import ClampedProgressBarCallback


@pytest.mark.parametrize("already_done", [0, 1000])  # a fresh run and a resumed one
def test_bar_is_clamped_to_the_steps_asked_for(already_done: int, monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    cb = ClampedProgressBarCallback()
    model = SimpleNamespace(num_timesteps=already_done)
    cb.model = model  # type: ignore[assignment]
    # SB3's learn() passes total_timesteps including the steps done before (resume).
    cb.on_training_start({"total_timesteps": already_done + 2000}, {})
    assert cb.pbar.total == 2000
    seen = []
    for _ in range(48):  # 48 env steps of 64 envs: 3,072 steps, past the 2,000 asked for
        model.num_timesteps += 64
        cb.on_step()
        seen.append(cb.pbar.n)
    assert seen[0] == 64 and max(seen) == seen[-1] == 2000
    cb.on_training_end()
