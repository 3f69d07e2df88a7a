"""What the session report's and the sweep summary's plots say: axis labels, legends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_rgba

from pulsecal.hardware.report import measurement_axis
from pulsecal.hardware.sweep_summary import QubitRow, SweepSummary, _plot

P = {"amplitude": 0.5, "beta_s": 1e-10, "detuning_hz": 0.0, "phase": 0.0}


def _row(q: int, status: str, shots: int) -> QubitRow:
    return QubitRow(q, status, f"s-q{q}", 1, P, P, 3e-3, 1e-4, None, None, 6, shots, 0, status == "finished")


def test_measurement_axis_follows_the_env_version() -> None:
    label, ideal = measurement_axis("pulsecal/GateCalibration-v0")
    assert "P(1)" in label and ideal == 0.5
    label, ideal = measurement_axis("pulsecal/GateCalibration-v1")
    assert "signed signal" in label and "P(1)" not in label and ideal == 0.0


def test_sweep_summary_legend_matches_the_bars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figs: list[Any] = []
    monkeypatch.setattr(plt, "close", figs.append)  # keep the figure to inspect it
    rows = (_row(0, "finished", 2100), _row(1, "failed", 700), _row(2, "finished", 2000),
            _row(3, "budget_exhausted", 1500), _row(4, "incomplete", 900))
    _plot(SweepSummary(tmp_path, rows, None), tmp_path / "summary.png", 2.0)
    ax = figs[0].axes[1]
    bar_colour = {round(p.get_x() + p.get_width() / 2): p.get_facecolor() for p in ax.patches}
    legend = ax.get_legend()
    entries = {t.get_text(): h.get_facecolor() for t, h in zip(legend.get_texts(), legend.legend_handles,
                                                               strict=True)}
    assert sorted(entries) == sorted({r.status for r in rows})
    for r in rows:
        assert bar_colour[r.qubit] == pytest.approx(entries[r.status])
    assert to_rgba(entries["finished"]) != to_rgba(entries["failed"])
