"""The report's maintenance section: a row per qubit, the truth samples and the shots per hour drawn, the
per-qubit table counting what the run did."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report import parse, small_report

from pulsecal.agents.graph.report import write_report
from pulsecal.agents.graph.report_maintenance import (
    MaintenanceEvent,
    MaintenanceTimeline,
    maintenance_section,
)


def _timeline(**changes: object) -> MaintenanceTimeline:
    events = [MaintenanceEvent(600.0 * k, "q0" if k % 2 else "q1", f"fine_amplitude_2:{'q0' if k % 2 else 'q1'}",
                               "check", "out_of_spec" if k % 3 == 0 else "in_spec", 1350) for k in range(1, 11)]
    args: dict[str, object] = dict(
        strategy="graph", start_clock_s=0.0, hours=2.0, qubits=("q0", "q1"), events=tuple(events),
        recalibrations=((1800.0, "q1", "fine_amplitude_2:q1"), (5400.0, "q0", "fine_amplitude_2:q0")),
        samples=tuple((300.0 * k, {"q0": (5e-4, 4e-4, 4.2e-4), "q1": (6e-4 + 1e-5 * k, 5e-4, 4.5e-4)})
                      for k in range(24)),
        shots_per_hour=(6750, 6750))
    args.update(changes)
    return MaintenanceTimeline(**args)  # type: ignore[arg-type]


def _rows(index: Path | str) -> list[list[str]]:
    html = index.read_text() if isinstance(index, Path) else index
    section = html[html.index("<h2>Maintenance</h2>"):]
    table = section[section.index("<table>"):section.index("</table>")]
    return [[c.split("</td>")[0] for c in r.split("<td>")[1:]] for r in table.split("<tr>")[2:]]


def test_maintenance_section_has_its_figure_and_counts(tmp_path: Path) -> None:
    index = write_report(tmp_path / "r", small_report(maintenance=_timeline()))
    page = parse(index)
    assert not page.errors
    assert "maintenance.png" in page.images
    assert (tmp_path / "r" / "maintenance.png").stat().st_size > 10_000
    # q0: checks at 600, 1800, ... (odd k: 1, 3, 5, 7, 9), out of spec at k = 3 and 9
    assert _rows(index) == [["q0", "5", "2", "1", "6750", "0.0005", "0.00042"],
                            ["q1", "5", "1", "1", "6750", "0.000715", "0.00045"]]
    assert "13500 shots (6750 per hour)" in index.read_text()


@pytest.mark.slow
def test_without_maintenance_there_is_no_section_and_no_stale_figure(tmp_path: Path) -> None:
    write_report(tmp_path / "r", small_report(maintenance=_timeline()))
    index = write_report(tmp_path / "r", small_report())
    assert "<h2>Maintenance</h2>" not in index.read_text()
    assert not (tmp_path / "r" / "maintenance.png").exists()


def test_a_backend_run_without_truth_still_draws(tmp_path: Path) -> None:
    lines = maintenance_section(_timeline(samples=()), tmp_path)
    assert (tmp_path / "maintenance.png").stat().st_size > 10_000
    assert _rows("\n".join(lines))[0][-2:] == ["n/a", "n/a"]


def test_bad_timeline_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"MaintenanceTimeline\.hours"):
        _timeline(hours=0)
    with pytest.raises(ValueError, match=r"MaintenanceTimeline\.events: qubit 'q9'"):
        _timeline(events=(MaintenanceEvent(0.0, "q9", "x:q9", "check", "in_spec"),))
