"""A sweep (``pulsecal-replay -m ... qubit=...``) tells the shell how it went and leaves
nothing behind when it is refused: a refused qubit removes the folder Hydra made for it
(never one that holds an earlier run's data), and the exit status is the lowest-numbered
unfinished qubit's code with the basic launcher and with joblib alike (both read the
sweep's outcome log back in the launching process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pulsecal.agents.pipelines.sweep import OUTCOMES, sweep_exit_code


def _console(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str) -> int:
    from pulsecal.scripts import replay as script

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["pulsecal-replay", *args, "plots=false", "sweep.plots=false"])
    try:
        script.main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("pulsecal-replay")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from pulsecal.scripts.replay import main; main()"]
    return subprocess.run([*cmd, *args, "plots=false", "sweep.plots=false"], cwd=cwd, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", **env})


def _listing(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


# Refusals that only the qubit's job can make (its composed config, its backend, its
# policy): each must leave nothing behind (no runs/sweep/sweep/{multirun.yaml,q0/.hydra,q1/.hydra}).
REFUSED = [
    (["env.shot_budget=0"], "env.shot_budget"),
    (["budget_shots=0"], "budget_shots"),
    (["env.device=no_such_preset"], "env.device: device preset 'no_such_preset' is unknown"),
    (["miscalibration.amplitude_rel=nan"], "miscalibration.amplitude_rel"),
    (["policy=onnx"], "policy.folder"),
    (["sweep.total_shots=0"], "sweep.total_shots"),
]


@pytest.mark.parametrize(("args", "key"), REFUSED)
def test_a_refused_sweep_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], args: list[str], key: str) -> None:
    before = _listing(tmp_path)
    assert _console(monkeypatch, tmp_path, "-m", "qubit=0,1", *args) == 2
    err = capsys.readouterr().err
    assert f"error: {key}" in err, err  # the key, or what is wrong with the value
    assert _listing(tmp_path) == before


def test_a_refused_rerun_keeps_the_earlier_runs_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """An existing sweep folder and its qubit folders are the earlier run's: a refused
    command on the same sweep removes only its own records and puts back multirun.yaml."""
    assert _console(monkeypatch, tmp_path, "-m", "qubit=0", "max_steps=1") == 0
    q0 = tmp_path / "runs/sweep/sweep/q0"
    assert (q0 / "journal.jsonl").is_file() and (q0 / "status.json").is_file()
    capsys.readouterr()
    before = _listing(tmp_path)
    for args, _ in REFUSED[:2]:
        assert _console(monkeypatch, tmp_path, "-m", "qubit=0,1", "max_steps=1", *args) == 2
        assert _listing(tmp_path) == before


def test_sweep_exit_code_is_the_lowest_unfinished_qubits() -> None:
    assert sweep_exit_code({}) == 0
    assert sweep_exit_code({0: 0, 1: 0}) == 0
    assert sweep_exit_code({3: 7, 1: 4, 0: 0}) == 4


def _run_ids(sweep_dir: Path) -> set[str]:
    return {json.loads(line)["run_id"] for line in (sweep_dir / OUTCOMES).read_text().splitlines()}


def test_basic_launcher_exits_with_the_stop_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-m", "qubit=0,1", "budget_shots=350", "max_steps=2"]
    assert _console(monkeypatch, tmp_path, *args) == 4
    out = capsys.readouterr().out
    assert "qubit 0: budget_exhausted" in out and "qubit 1: budget_exhausted" in out
    # Rerunning replays both recorded stops: the same code, under a second run id.
    assert _console(monkeypatch, tmp_path, *args) == 4
    assert len(_run_ids(tmp_path / "runs/sweep/sweep")) == 2


def test_joblib_launcher_exits_with_the_stop_code(tmp_path: Path) -> None:
    """The jobs run in joblib's worker processes: the code reaches the shell all the same
    (before, this multirun exited 0)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    r = _cli(["-m", "qubit=0,1", "budget_shots=350", "max_steps=2", "hydra/launcher=local"], tmp_path)
    assert r.returncode == 4, r.stderr[-3000:]
    lines = [json.loads(t) for t in (tmp_path / "runs/sweep/sweep" / OUTCOMES).read_text().splitlines()]
    assert sorted(x["qubit"] for x in lines) == [0, 1] and {x["code"] for x in lines} == {4}
    assert os.getpid() not in {x["pid"] for x in lines} and len(_run_ids(tmp_path / "runs/sweep/sweep")) == 1


def test_a_partly_refused_sweep_keeps_the_qubits_that_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """qubit=0,-1: qubit 0 runs, qubit -1 is refused. The command exits 2 and removes only
    the refused qubit's folder; qubit 0's session and the command's multirun.yaml stay."""
    assert _console(monkeypatch, tmp_path, "-m", "qubit=0,-1", "max_steps=1") == 2
    assert "qubit" in capsys.readouterr().err
    root = tmp_path / "runs/sweep/sweep"
    names = {p.name for p in root.iterdir()}
    assert {"multirun.yaml", "outcomes.jsonl", "q0"} <= names and not any(n.startswith("q-") for n in names)
    assert (root / "q0/journal.jsonl").is_file()


@pytest.mark.slow  # starts a private Ray instance twice (~20 s each on 2 cores)
@pytest.mark.filterwarnings(r"ignore:(?s).*is validated against ConfigStore schema")
def test_ray_launcher_exits_with_the_stop_code_and_a_refusal_leaves_nothing(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    home = tmp_path / "home"
    for name in ("a", "b", "home"):
        (tmp_path / name).mkdir()
    ray = ["hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2"]
    env = {"RAY_AUTH_MODE": "disabled", "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    r = _cli(["-m", "qubit=0,1", "budget_shots=350", "max_steps=2", *ray], tmp_path / "a", **env)
    assert r.returncode == 4, r.stderr[-3000:]
    r = _cli(["-m", "qubit=0,1", "env.shot_budget=0", *ray], tmp_path / "b", **env)
    assert r.returncode == 2 and "error: env.shot_budget" in r.stderr, r.stderr[-3000:]
    assert list((tmp_path / "b").iterdir()) == []
