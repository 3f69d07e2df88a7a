"""``pulsecal-calibrate`` end to end in real processes: a run, refusals, kill and resume, the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PLATFORM = REPO / "hardware" / "data" / "qibolab_platforms" / "pulsecal_emulator_2q_coupled"

# Four chained slow nodes per qubit and one per pair on two_transmons_cz: 9 nodes, each
# waiting sleep_s of wall time, so a test can kill the run between nodes.
SLOW_GRAPH = """
crosstalk_distance: 1
qubit_nodes:
{qubit_nodes}
coupler_nodes:
  - name: pair
    experiment: {{_target_: graph_fakes.SlowIdle, sleep_s: {sleep_s}, max_excited: 0.3, shots: 50}}
    depends_on: [d]
"""


def _slow_graph(config_dir: Path, sleep_s: float, hold_while: Path | None = None) -> None:
    hold = f"hold_while: '{hold_while}', " if hold_while else ""
    entries = []
    for i, name in enumerate("abcd"):
        dep = f"\n    depends_on: [{'abcd'[i - 1]}]" if i else ""
        entries.append(f"  - name: {name}\n    experiment: {{_target_: graph_fakes.SlowIdle, sleep_s: {sleep_s}, "
                       f"{hold}shots: 50}}{dep}")
    (config_dir / "graph").mkdir(parents=True, exist_ok=True)
    (config_dir / "graph" / "slow.yaml").write_text(SLOW_GRAPH.format(qubit_nodes="\n".join(entries), sleep_s=sleep_s))


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONPATH=str(HERE))
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _cmd(tmp_path: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "pulsecal.scripts.calibrate", "--config-dir", str(tmp_path / "cfg"),
            f"out_dir={tmp_path / 'runs'}", "progress=false", *overrides]


def _run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(tmp_path, *overrides), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=120)


def _journal(folder: Path) -> list[dict[str, object]]:
    path = folder / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _wait_for(pred: object, timeout_s: float = 60.0) -> None:
    t0 = time.monotonic()
    while not pred():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_cli_runs_the_bringup_graph_and_exports_qibolab(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    r = _run(tmp_path, "graph=idle", "priors=null", "device=two_transmons_cz", "run_id=e2e", f"export_qibolab={PLATFORM}")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "runs" / "e2e"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "journal.jsonl", "ledger.json",
                                                         "qibolab_parameters.json", "report", "report.json",
                                                         "store.json"]
    assert (folder / "report" / "index.html").is_file() and (folder / "report" / "graph.png").is_file()
    report = json.loads((folder / "report.json").read_text())
    assert report["counts"]["calibrated"] == 3 and report["shots"] == 3 * 400
    # q0 and q1 are coupled: never one group; the pair after both
    assert report["groups"] == [["idle:q0"], ["idle:q1"], ["idle_pair:q0-q1"]]
    assert report["clock_s"] == pytest.approx(3 * 400 * 200e-6)
    ledger = json.loads((folder / "ledger.json").read_text())
    assert sum(e["shots"] for e in ledger["jobs"].values()) == 1200
    store = json.loads((folder / "store.json").read_text())
    assert [v["node"] for v in store["versions"]] == ["idle:q0", "idle:q1", "idle_pair:q0-q1"]
    # the idle populations have no place in parameters.json: listed, not dropped
    assert sorted(report["qibolab_export"]["not_mapped"]) == ["q0-q1.idle_excited_population",
                                                              "q0.idle_excited_population",
                                                              "q1.idle_excited_population"]
    assert json.loads((folder / "qibolab_parameters.json").read_text()) == json.loads(
        (PLATFORM / "parameters.json").read_text())
    # one progress line per node with node, target, status and shots
    lines = [x for x in r.stderr.splitlines() if x.startswith("e2e: [")]
    assert lines[0] == "e2e: [1/3] idle q0 calibrated, shots 400 (run 400), clock 0.080 s"
    assert len(lines) == 3 and "3 calibrated; 1200 shots" in r.stdout


def test_bad_config_is_refused_in_one_line_before_any_file(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    r = _run(tmp_path, "device=nope")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[0]], r.stderr
    assert r.stderr.startswith("error: device: unknown option 'nope' (choose from "), r.stderr
    r = _run(tmp_path, "graph.qubit_nodes.0.retries=-1")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: graph.qubit_nodes[0].retries: -1: allowed an integer >= 0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg"]  # no run folder, no Hydra log


@pytest.mark.parametrize(("override", "message"), [
    ("graph.qubit_nodes.0.experiment.max_excited=2", "graph.qubit_nodes[0].experiment: "),
    ("graph.qubit_nodes.0.experiment._target_=pulsecal.nope.X", "graph.qubit_nodes[0].experiment._target_: "),
    ("graph.crosstalk_distance=-1", "graph.crosstalk_distance: -1: allowed an integer >= 0"),
    ("budget_shots=-5", "budget_shots: -5: allowed an integer >= 0 or null"),
    ("device.spectators=all", "device.spectators: 'all'"),
    ("run_id=../x", "run_id: '../x'"),
    ("start_from=/nonexistent", "start_from: '/nonexistent': no qibolab parameters.json there"),
    ("hours=-1", "hours: -1"),
    ("hours=1000", "hours: 1000"),
    ("+hours=1 maintain.tick_s=0", "maintain.tick_s: 0.0: allowed a number > 0 and <= 86400"),
    ("+hours=1 maintain.strategy=nope", "maintain.strategy: 'nope': allowed one of ['graph', 'fixed']"),
])
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, override: str, message: str) -> None:
    from hydra import compose, initialize_config_module

    from pulsecal.agents.pipelines.calibrate import calibrate
    from pulsecal.configs.schema import ConfigError

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        cfg = compose("calibrate", overrides=[f"out_dir={tmp_path / 'runs'}",
                                              *(o.removeprefix("+") for o in override.split())])
    with pytest.raises(ConfigError) as err:
        calibrate(cfg)
    assert str(err.value).startswith(message), str(err.value)
    assert not (tmp_path / "runs").exists()


def test_kill_and_resume_runs_every_node_once(tmp_path: Path) -> None:
    _slow_graph(tmp_path / "cfg", sleep_s=0.25)
    folder = tmp_path / "runs" / "k"
    args = ("graph=slow", "device=two_transmons_cz", "run_id=k")
    p = subprocess.Popen(_cmd(tmp_path, *args), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: sum(r["event"] == "node_end" for r in _journal(folder)) >= 3)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    before = _journal(folder)
    finished_before = [r["node"] for r in before if r["event"] == "node_end"]
    assert 3 <= len(finished_before) < 9 and not any(r["event"] == "run_end" for r in before)
    r = _run(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    journal = _journal(folder)
    ends = [rec["node"] for rec in journal if rec["event"] == "node_end"]
    assert sorted(ends) == sorted(set(ends)) and len(ends) == 9  # every node's result exactly once
    second = journal[len(before):]
    assert second[0]["event"] == "run_start" and second[0]["epoch"] == 2
    rerun = {rec["node"] for rec in second if rec["event"] in ("node_start", "op")}
    assert not rerun & set(finished_before)  # no finished node ran again
    report = json.loads((folder / "report.json").read_text())
    assert report["counts"]["calibrated"] == 9 and report["resumed"] == len(finished_before)
    # the ledger counts every journaled experiment run once, over both processes
    ops = [rec for rec in journal if rec["event"] == "op"]
    ledger = json.loads((folder / "ledger.json").read_text())
    assert sum(e["shots"] for e in ledger["jobs"].values()) == sum(o["result"]["shots"] for o in ops)
    assert report["shots"] == sum(o["result"]["shots"] for o in ops)
    store = json.loads((folder / "store.json").read_text())
    nodes = [v["node"] for v in store["versions"]]
    assert len(set(nodes) - {"priors"}) == 9
    # the spec-sheet priors: drawn once for the new run, not again on its resume
    assert nodes.count("priors") == 1 and nodes[0] == "priors"


def test_a_second_process_on_the_same_run_is_refused(tmp_path: Path) -> None:
    # The first run's nodes wait while the hold file exists, so it is still running when the
    # second process starts, however long that start takes on a loaded machine.
    hold = tmp_path / "hold"
    hold.touch()
    _slow_graph(tmp_path / "cfg", sleep_s=0.0, hold_while=hold)
    folder = tmp_path / "runs" / "busy"
    args = ("graph=slow", "device=two_transmons_cz", "run_id=busy")
    p = subprocess.Popen(_cmd(tmp_path, *args), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(r["event"] == "node_start" for r in _journal(folder)))
        n_before = len(_journal(folder))
        r = _run(tmp_path, *args)
        assert r.returncode == 3, r.stderr
        assert f"held by PID {p.pid}" in r.stderr
        assert len(_journal(folder)) >= n_before  # the refused process wrote nothing
        assert not any(rec["event"] == "run_start" and rec.get("epoch") == 2 for rec in _journal(folder))
        assert p.poll() is None  # the holder was alive throughout, so the refusal was for it
    finally:
        hold.unlink(missing_ok=True)
        p.kill()
        p.wait(timeout=30)


def _compose(tmp_path: Path, *overrides: str) -> object:
    from hydra import compose, initialize_config_module

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        return compose("calibrate", overrides=[f"out_dir={tmp_path / 'runs'}", "progress=false", *overrides])


def test_priors_are_recorded_once_from_the_design_and_not_redrawn_on_resume(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.calibrate import calibrate
    from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset

    args = ("graph=idle", "graph.qubits=[q0,q1]", "device.spectators=none", "run_id=p", "seed=3")
    calibrate(_compose(tmp_path, *args), stream=open(os.devnull, "w"))  # type: ignore[arg-type]
    store_path = tmp_path / "runs" / "p" / "store.json"
    first = json.loads(store_path.read_text())["versions"]
    assert first[0]["node"] == "priors" and first[0]["experiment"] == "spec_sheet"
    model = get_multi_qubit_preset("ring_8").params.model
    values = first[0]["values"]
    for q in get_multi_qubit_preset("ring_8").coupling_map.qubits:
        assert abs(values[f"{q}.frequency_hz"] - model.mode(q).frequency_hz) <= 20e6  # type: ignore[union-attr]
        assert values[f"{q}.drag_beta"] == 0.0
    calibrate(_compose(tmp_path, *args), stream=open(os.devnull, "w"))  # type: ignore[arg-type]
    again = json.loads(store_path.read_text())["versions"]
    assert [v["node"] for v in again].count("priors") == 1
    assert again[0] == first[0]
    # another run_id with another seed draws other priors
    calibrate(_compose(tmp_path, "graph=idle", "graph.qubits=[q0]", "run_id=p2", "seed=4"),  # type: ignore[arg-type]
              stream=open(os.devnull, "w"))
    other = json.loads((tmp_path / "runs" / "p2" / "store.json").read_text())["versions"][0]
    assert other["values"]["q0.frequency_hz"] != values["q0.frequency_hz"]


def test_priors_settings_are_checked(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.calibrate import calibrate
    from pulsecal.configs.schema import ConfigError

    for override, message in (("priors=guess", "priors: 'guess': allowed one of ['spec_sheet'] or null"),
                              ("priors_amplitude_factor=0.5", "priors_amplitude_factor: 0.5: allowed 1 to 10")):
        with pytest.raises(ConfigError) as err:
            calibrate(_compose(tmp_path, override))  # type: ignore[arg-type]
        assert str(err.value).startswith(message), str(err.value)


@pytest.mark.slow
def test_bringup_chain_on_one_qubit_reaches_calibrated(tmp_path: Path) -> None:
    """The whole single-qubit chain from spec-sheet priors on q0 of ring_8 (~20 s)."""
    from pulsecal.agents.pipelines.calibrate import calibrate

    report = calibrate(_compose(tmp_path, "graph.qubits=[q0]", "device.spectators=none",  # type: ignore[arg-type]
                                "run_id=b"), stream=open(os.devnull, "w"))
    assert {n: o.outcome for n, o in report.outcomes.items()} == {
        f"{t}:q0": "calibrated" for t in ("idle", "spectroscopy", "rabi", "readout", "ramsey", "t1",
                                          "fine_amplitude", "drag", "drag_train", "fine_amplitude_2", "rb1q")}
    folder = tmp_path / "runs" / "b"
    summary = json.loads((folder / "report.json").read_text())
    ev = summary["evaluation"]
    assert ev["truth_only"] is True
    # the chain's pulses are near the coherence limit (bench_nodes: ~1.0-1.1x)
    assert 0.9 < ev["qubits"]["q0"]["mean_error_over_limit"] < 1.5
    html = (folder / "report" / "index.html").read_text()
    assert 'src="graph.png"' in html and 'src="device.png"' in html
    pngs = sorted(p.name for p in (folder / "report").glob("node_*.png"))
    assert any("rabi-q0" in n for n in pngs) and any("rb1q-q0" in n for n in pngs), pngs


@pytest.mark.slow  # ~17 s: two processes (Hydra start-up) and 3 nodes' bring-up
def test_maintenance_runs_after_the_bringup_and_prints_every_hour(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    args = ("graph=idle", "priors=null", "device=two_transmons_cz", "run_id=m", "hours=2", "maintain.tick_s=900")
    r = _run(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "runs" / "m"
    hours = [ln for ln in r.stderr.splitlines() if " maintain graph: hour " in ln]
    assert [ln.split(": hour ")[1].split(":")[0] for ln in hours] == ["1/2", "2/2"], r.stderr
    summary = json.loads((folder / "report.json").read_text())["maintenance"]
    assert summary["ticks_done"] == 8 and summary["settings"]["hours"] == 2.0
    # idle's timeout is 1 h: each of the 3 nodes is checked once, at the first tick past
    # 1 h of age (4500 s), with its cheap 100 shots; the next look would be past 2 h
    assert summary["checks"] == 3 and summary["shots"] == 300
    assert "maintained 2 h (graph): 3 checks" in r.stdout
    recs = [json.loads(x) for x in (folder / "maintenance.jsonl").read_text().splitlines()]
    assert sum(1 for x in recs if x["event"] == "tick_end") == 8
    # a second process on the finished run resumes it: no tick and no check again
    again = _run(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert "8 ticks finished before this process" in again.stdout
    assert json.loads((folder / "report.json").read_text())["maintenance"]["checks"] == 3
