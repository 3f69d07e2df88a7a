"""The lab path needs no torch: ``pulsecal-replay policy=onnx`` with the shipped emulator
policy runs where importing torch, stable-baselines3 or sb3-contrib raises, on the
simulated backend and on qibolab's emulator (its platform from package data), and its
journal is the one the same session writes with torch available."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REFERENCE_POLICY = "pkg://pulsecal.hardware/data/gate_calibration_emulator/policy"
BLOCKED = ("torch", "stable_baselines3", "sb3_contrib")
# Per-run values: when a record was written, by which process, and the id a backend gave
# the job (qibolab's are random); everything else must be the same.
VOLATILE = frozenset({"ts", "pid", "job_id"})

_BLOCKER = f'''
import importlib.abc, sys

BLOCKED = {set(BLOCKED)!r}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the lab path must not import it")
        return None


sys.meta_path.insert(0, Blocker())
'''
# qibolab's emulator draws its shots from NumPy's global generator; both runs seed it alike
# so that the two sessions can be compared record by record.
_SEED_GLOBAL_RNG = """
import numpy
numpy.random.seed(20261206)
"""


def _replay(args: list[str], cwd: Path, *, block_torch: bool, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("QIBOLAB_PLATFORMS", None)  # the shipped platforms, found through package data
    site = tmp_path / ("blocker" if block_torch else "seed-only")
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent(_BLOCKER if block_torch else "") + _SEED_GLOBAL_RNG)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    exe = Path(sys.executable).with_name("pulsecal-replay")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pulsecal.scripts.replay"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env,
                          check=False)


def _journal(folder: Path) -> list[dict[str, Any]]:
    records = []
    for line in (folder / "journal.jsonl").read_text().splitlines():
        record = {k: v for k, v in json.loads(line).items() if k not in VOLATILE}
        records.append(json.loads(json.dumps(record).replace(str(folder), "<folder>")))
    return records


@pytest.mark.parametrize("backend", ["simulated", "qibolab_emulator"])
def test_exported_policy_replays_without_torch(backend: str, tmp_path: Path) -> None:
    if backend == "qibolab_emulator":
        pytest.importorskip("qibolab")
    runs = {}
    for blocked in (True, False):
        folder = tmp_path / ("blocked" if blocked else "torch")
        out = _replay([f"backend={backend}", "policy=onnx", f"policy.folder={REFERENCE_POLICY}",
                       f"folder={folder}", "session_id=lab", "max_steps=2", "plots=false"],
                      cwd=tmp_path, block_torch=blocked, tmp_path=tmp_path)
        assert out.returncode == 0, out.stderr[-4000:]
        assert "report in" in out.stdout
        runs[blocked] = _journal(folder)
    blocked, with_torch = runs[True], runs[False]
    events = [r["event"] for r in blocked]
    assert events.count("action") == 2 and "session_finished" in events
    jobs = [r for r in blocked if r["event"] == "completed"]
    assert jobs and all(r["job_key"] and r["program_hash"] and r["counts"] for r in jobs)
    # The same session: job keys, programs, shots, counts, actions and parameters.
    assert blocked == with_torch
