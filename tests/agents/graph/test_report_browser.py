"""The demo report in a real headless browser (Debian's chromium): it loads without console
messages, every image decodes, and a screenshot is taken. ``make test-browser`` installs
chromium when it is missing and runs these; set ``PULSECAL_BROWSER_OUT`` to keep the
report and the screenshot (the make target keeps them in demo_out/report_browser/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from pulsecal.agents.graph.experiment import ExperimentResult
from pulsecal.agents.graph.report import DeviceLayout, NodeRecord, ReportInput, write_report

pytestmark = pytest.mark.browser

WINDOW = (1280, 4000)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium or chromium-browser on PATH: `make test-browser` installs Debian's chromium")


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: the tests run as root in a container, where chromium's sandbox cannot start.
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    """The page's console messages in chromium's stderr log (``INFO:CONSOLE(...)] "msg",
    source: ...``). That log does not say the level, so any message counts: the report
    itself never writes to the console."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]\d*\)?\]", line)]


def load(index: Path, tmp: Path) -> tuple[str, list[str]]:
    """The DOM after the page's load event, and its console messages."""
    proc = _run(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                 index.resolve().as_uri()], tmp / "profile-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, console_messages(proc.stderr)


def screenshot(index: Path, png: Path, tmp: Path) -> None:
    proc = _run([f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={png}", "--virtual-time-budget=10000",
                 index.resolve().as_uri()], tmp / "profile-shot")
    assert proc.returncode == 0, proc.stderr[-2000:]


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[tuple[str, str | None]] = []
        self.title = ""
        self._in_title = False
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.loaded.append((a.get("src") or "", a.get("data-loaded")))
        if tag == "body":
            self.body = a
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def images_of(dom: str) -> _Images:
    p = _Images()
    p.feed(dom)
    return p


def _tiny_report() -> ReportInput:
    x = np.linspace(0, 1, 11)
    res = ExperimentResult("rabi", "q0", "in_spec", {}, {}, 100, 0.02,
                           {"kind": "curve", "x": x.tolist(), "y": np.sin(x).tolist()})
    return ReportInput("tiny", "two", (NodeRecord("rabi:q0", "rabi", "q0", "done", res, 1),), (),
                       DeviceLayout(("q0", "q1"), (("q0", "q1"),)), {"q0": 1e-3})


def _out(tmp_path: Path) -> Path:
    keep = os.environ.get("PULSECAL_BROWSER_OUT")
    return Path(keep) if keep else tmp_path / "out"


def test_demo_report_loads_without_errors_and_every_image_shows(tmp_path: Path) -> None:
    from pulsecal.agents.graph.report_demo import build_demo_report

    out = _out(tmp_path)
    if out.exists():
        shutil.rmtree(out)
    index = write_report(out / "report", build_demo_report(0, maintenance_hours=4.0))
    srcs = re.findall(r'<img src="([^"]+)"', index.read_text(encoding="utf-8"))
    assert len(srcs) >= 30  # graph, device, timeline and the measured nodes' figures

    dom, console = load(index, tmp_path)
    assert console == []
    page = images_of(dom)
    assert [s for s, _ in page.loaded] == srcs
    assert [s for s, flag in page.loaded if flag != "1"] == []
    assert page.body.get("data-images-loaded") == f"{len(srcs)}/{len(srcs)}"
    assert page.title.endswith(f"[images {len(srcs)}/{len(srcs)}]")

    png = out / "screenshot.png"
    screenshot(index, png, tmp_path)
    pixels = imread(png)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    # Something was drawn: a blank or failed page is one colour.
    assert float(pixels[..., :3].std()) > 0.05


def test_the_browser_check_sees_a_missing_image_and_a_script_error(tmp_path: Path) -> None:
    """The check above can fail: a deleted PNG is reported not loaded, an exception and a
    console.error show as console messages."""
    index = write_report(tmp_path / "broken", _tiny_report())
    (index.parent / "device.png").unlink()
    page = index.read_text(encoding="utf-8")
    index.write_text(page.replace("</body>", '<script>console.error("planted"); noSuchFunction();</script></body>'),
                     encoding="utf-8")
    dom, console = load(index, tmp_path)
    assert any('"planted"' in m for m in console)
    assert any("noSuchFunction is not defined" in m for m in console)
    imgs = images_of(dom)
    assert dict(imgs.loaded) == {"graph.png": "1", "device.png": "0", "node_000_rabi-q0.png": "1"}
    assert imgs.title.endswith("[images 2/3]")
