"""The static HTML report: well-formed, every image present, every node with its state,
user strings escaped, unknown or malformed data listed instead of crashing."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pulsecal.agents.graph.experiment import ExperimentResult
from pulsecal.agents.graph.report import (
    NODE_STATES,
    DeviceLayout,
    NodeRecord,
    ReportInput,
    TimelineEvent,
    graph_positions,
    write_report,
)

# Tags HTML allows without a closing tag.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Collects images, node sections and text; records tags that do not nest."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.nodes: dict[str, str] = {}
        self.text: list[str] = []
        self.scripts: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "script" and "src" in a:
            self.scripts.append(a["src"] or "")
        if tag == "link" and "href" in a:
            self.links.append(a["href"] or "")
        if "data-node" in a:
            self.nodes[a["data-node"] or ""] = a.get("data-state") or ""
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(index: Path) -> _Checker:
    c = _Checker()
    c.feed(index.read_text(encoding="utf-8"))
    c.close()
    return c


def _curve_result() -> ExperimentResult:
    x = np.linspace(0.0, 1.0, 21)
    fit = 0.5 - 0.5 * np.cos(np.pi * x / 0.5)
    return ExperimentResult("rabi", "q0", "in_spec", {"q0.pi_amplitude": 0.5}, {"residual": 0.01}, 2100, 0.42,
                            {"kind": "curve", "x": x.tolist(), "y": (fit + 0.02).tolist(), "fit": fit.tolist(),
                             "x_label": "amplitude", "y_label": "P(1)", "vlines": [{"x": 0.5, "label": "π"}]},
                            "π amplitude 0.500")


def small_report(**changes: object) -> ReportInput:
    amps = np.linspace(0.10, 0.20, 5)
    lengths = np.arange(10, 60, 10) * 1e-9
    rng = np.random.default_rng(1)
    chevron = ExperimentResult("chevron", ("q0", "q1"), "in_spec", {}, {}, 2500, 0.5,
                               {"kind": "map", "x": lengths.tolist(), "y": amps.tolist(),
                                "z": rng.random((5, 5)).tolist(), "marker": [30e-9, 0.15], "z_label": "P(11)"})
    iq = ExperimentResult("readout", "q1", "in_spec", {}, {"assignment_fidelity": 0.95}, 400, 0.08,
                          {"kind": "iq", "points": rng.normal(size=(40, 2)).tolist(), "labels": [0, 1] * 20,
                           "boundary": [[-2.0, 2.0], [2.0, -2.0]]})
    odd = ExperimentResult("zz", ("q1", "q2"), "bad_data", {}, {}, 10, 0.01,
                           {"kind": "hologram", "frames": [[1, 2], [3, 4]], "note": "<b>raw</b>"})
    broken = ExperimentResult("ramsey", "q2", "bad_data", {}, {}, 10, 0.01,
                              {"kind": "curve", "x": [1.0, 2.0, 3.0], "y": [1.0, 2.0]})
    nodes = (
        NodeRecord("rabi:q0", "rabi", "q0", "done", _curve_result(), 1),
        NodeRecord("chevron:q0-q1", "chevron", ("q0", "q1"), "done", chevron, 1),
        NodeRecord("readout:q1", "readout", "q1", "done", iq, 1),
        NodeRecord("zz:q1-q2", "zz", ("q1", "q2"), "failed", odd, 3),
        NodeRecord("ramsey:q2", "ramsey", "q2", "failed", broken, 2),
        NodeRecord("rb:q2", "rb", "q2", "blocked"),
        NodeRecord("rb:q3", "rb", "q3", "skipped"),
        NodeRecord("cz:q0-q1", "cz", ("q0", "q1"), "pending"),
    )
    edges = (("rabi:q0", "chevron:q0-q1"), ("readout:q1", "chevron:q0-q1"), ("ramsey:q2", "rb:q2"),
             ("chevron:q0-q1", "cz:q0-q1"), ("readout:q1", "zz:q1-q2"))
    layout = DeviceLayout(("q0", "q1", "q2", "q3"), (("q0", "q1"), ("q1", "q2"), ("q2", "q3"), ("q3", "q0")))
    timeline = (TimelineEvent(0.0, "rabi:q0", "calibrate", "in_spec", 1e-3),
                TimelineEvent(3600.0, "rabi:q0", "check", "out_of_spec"),
                TimelineEvent(3700.0, "rabi:q0", "calibrate", "in_spec", 8e-4),
                TimelineEvent(1800.0, "readout:q1", "check", "in_spec"))
    kw: dict[str, object] = {
        "run_id": "run-1", "device": "ring_4", "nodes": nodes, "edges": edges, "layout": layout,
        "gate_error_1q": {"q0": 1e-3, "q1": 2e-3}, "readout_fidelity": {"q0": 0.97, "q1": 0.95},
        "gate_error_2q": {("q1", "q0"): 1e-2}, "timeline": timeline, "notes": ("test data",),
    }
    kw.update(changes)
    return ReportInput(**kw)  # type: ignore[arg-type]


def test_report_is_well_formed_and_self_contained(tmp_path: Path) -> None:
    index = write_report(tmp_path / "out", small_report())
    assert index == tmp_path / "out" / "index.html"
    page = parse(index)
    assert page.errors == []
    assert page.stack == []
    # graph, device, three drawable nodes, timeline
    assert len(page.images) == 6
    for src in page.images:
        assert "/" not in src and ":" not in src, src  # relative, inside the folder
        png = index.parent / src
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert page.scripts == [] and page.links == []  # nothing fetched from anywhere
    assert "http" not in index.read_text(encoding="utf-8")


def test_every_node_appears_with_its_state(tmp_path: Path) -> None:
    report = small_report()
    page = parse(write_report(tmp_path, report))
    assert page.nodes == {n.name: n.state for n in report.nodes}
    assert set(page.nodes.values()) == set(NODE_STATES)


def test_unknown_and_malformed_data_are_tables_not_crashes(tmp_path: Path) -> None:
    page = parse(write_report(tmp_path, small_report()))
    text = " ".join(page.text)
    assert "data kind 'hologram' has no drawing" in text
    assert "data.y: length 2: allowed the length of data.x (3)" in text
    # the unknown kind's fields are listed, its string escaped (shown as text, not markup)
    assert "array (2, 2): [1, 2, 3, 4]" in text
    assert "<b>raw</b>" in text
    assert not any(p.name.startswith(("node_003", "node_004")) for p in tmp_path.iterdir())


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>&'
    res = ExperimentResult("rabi", "q0", "in_spec", {}, {}, 1, 0.0, {"kind": "curve", "x": [0, 1], "y": [0, 1]},
                           evil)
    nodes = (NodeRecord(evil, evil, "q0", "done", res, 1), NodeRecord('x" onload="y', "e", "q0", "pending"))
    report = small_report(run_id=evil, device='dev"<i>', nodes=nodes, edges=(), timeline=(), notes=(evil,))
    index = write_report(tmp_path, report)
    raw = index.read_text(encoding="utf-8")
    assert "<script>alert" not in raw and "<i>" not in raw and 'onload="y' not in raw
    page = parse(index)
    assert page.errors == []
    assert page.nodes == {evil: "done", 'x" onload="y': "pending"}
    assert evil in " ".join(page.text)
    # the image name of a node is built from its name but safe as a file name
    assert all(p.name.replace("-", "").replace("_", "").replace(".", "").isalnum() for p in tmp_path.iterdir())


def test_a_report_with_nothing_measured_still_renders(tmp_path: Path) -> None:
    report = ReportInput("empty", "d", (NodeRecord("a", "e", "q0", "pending"),), (), DeviceLayout(("q0",)))
    page = parse(write_report(tmp_path, report))
    assert page.errors == [] and page.images == ["graph.png", "device.png"]
    assert report.shots == 0 and report.device_time_s == 0.0


def test_totals_sum_the_results_unless_given() -> None:
    r = small_report()
    assert r.shots == 2100 + 2500 + 400 + 10 + 10
    assert r.device_time_s == pytest.approx(0.42 + 0.5 + 0.08 + 0.01 + 0.01)
    assert small_report(total_shots=7, total_device_time_s=1.5).shots == 7


def test_layered_positions_follow_the_dependencies() -> None:
    names = ["a", "b", "c", "d"]
    pos = graph_positions(names, [("a", "b"), ("b", "c"), ("a", "c")])
    assert [pos[n][0] for n in names] == [0, 1, 2, 0]


def test_layouts_without_positions() -> None:
    grid = DeviceLayout(tuple(f"q{i}" for i in range(6)),
                        (("q0", "q1"), ("q1", "q2"), ("q3", "q4"), ("q4", "q5"), ("q0", "q3"), ("q1", "q4"),
                         ("q2", "q5")))
    assert grid.layout()["q4"] == (1.0, -1.0)
    ring = DeviceLayout(("q0", "q1", "q2", "q3"), (("q0", "q1"), ("q1", "q2"), ("q2", "q3"), ("q3", "q0")))
    xy = ring.layout()
    assert xy["q0"] == pytest.approx((0.0, 1.0)) and xy["q2"] == pytest.approx((0.0, -1.0))


@pytest.mark.parametrize(("changes", "message"), [
    ({"edges": (("rabi:q0", "nope"),)}, "ReportInput.edges=('rabi:q0', 'nope')"),
    ({"edges": (("rabi:q0", "cz:q0-q1"), ("cz:q0-q1", "rabi:q0"))}, "a cycle through ['cz:q0-q1', 'rabi:q0']"),
    ({"gate_error_1q": {"q9": 0.1}}, "ReportInput.gate_error_1q='q9'"),
    ({"readout_fidelity": {"q0": 1.5}}, "ReportInput.readout_fidelity['q0']=1.5: allowed a value in [0, 1]"),
    ({"gate_error_2q": {("q0", "q2"): 0.1}}, "a coupled pair of DeviceLayout.edges"),
])
def test_bad_input_names_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=None) as exc:
        small_report(**changes)
    assert message in str(exc.value)


def test_bad_node_state_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"NodeRecord\('a'\).state='running': allowed one of"):
        NodeRecord("a", "e", "q0", "running")  # type: ignore[arg-type]
