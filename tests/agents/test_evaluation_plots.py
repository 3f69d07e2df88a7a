"""What the evaluation's plots show: every method visible, plain budgets, steps not spikes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from pulsecal.agents.evaluation import plot_calibration, write_plots
from pulsecal.agents.evaluation.plots import method_offsets


def _rows() -> list[dict[str, Any]]:
    rows = []
    for m, ratio in (("standard", 1.02), ("agent", 1.02), ("cmaes", 8.0)):  # two that coincide
        for b in (600, 1200, 2400):
            for d in range(3):
                rows.append({"task": "calibration", "method": m, "budget": b, "device": d,
                             "ratio": ratio * (1 + 0.01 * d)})
    return rows


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    figs: list[Any] = []
    monkeypatch.setattr(plt, "close", figs.append)  # keep each figure to inspect it
    return figs


def test_offsets_are_distinct_per_method() -> None:
    off = method_offsets(["a", "b", "c", "d"])
    assert len(set(off.values())) == 4 and np.mean(list(off.values())) == pytest.approx(1.0)


def test_every_method_is_visible_with_plain_budget_ticks(tmp_path: Path, figures: list[Any]) -> None:
    plot_calibration(_rows(), tmp_path / "infidelity_vs_shots.png")
    fig = figures[0]
    for ax in fig.axes:
        fig.canvas.draw()
        xs = {line.get_label(): tuple(line.get_xdata()) for line in ax.get_lines() if line.get_label()[0] != "_"}
        medians = {k: v for k, v in xs.items() if not k.endswith("p90")}
        # Methods that agree still sit at distinct x, so none hides another.
        assert len(set(medians.values())) == len(medians) >= 2
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["600", "1,200", "2,400"]
        assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    left = fig.axes[0]
    assert all("10^" not in t.get_text() and "$" not in t.get_text() for t in left.get_yticklabels())


def test_pulse_shapes_hold_the_last_sample(tmp_path: Path, figures: list[Any]) -> None:
    w = np.array([0.1, 0.3, 0.2], dtype=complex)
    write_plots(tmp_path, [], {"drag": w}, 0.5e-9, {"m": (np.array([600.0, 1200.0]), np.array([1e-3, 2e-3]))})
    shapes, drift = figures
    steps = [p for p in shapes.axes[0].patches]
    assert len(steps) == 1
    values, edges = steps[0].get_data()[:2]
    assert list(values) == pytest.approx([0.1, 0.3, 0.2]) and list(edges) == pytest.approx([0, 0.5, 1.0, 1.5])
    assert "interval error" in drift.axes[0].get_title() and "infidelity" in drift.axes[0].get_title()
