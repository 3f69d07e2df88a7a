"""Every env's trajectories against the recorded fingerprints (slow: ~1 min).

The reference in ``data/trajectories.json`` was recorded at 7c413d8, before the
architecture refactor; a refactor that changes behaviour fails here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _checker():
    spec = importlib.util.spec_from_file_location("trajectory_check", HERE / "trajectory_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_trajectories_match_recorded_reference():
    check = _checker()
    reference = json.loads((HERE / "data" / "trajectories.json").read_text())
    compared, differ, _worst, problems = check.compare(reference, check.record())
    assert compared > 100
    assert differ == 0, "\n".join(problems)


def test_compare_flags_a_changed_array():
    check = _checker()
    reference = {"env": {"single": {"exact": {"obs": "abc"}, "close": {"fidelity": [0.5, 0.25]}}}}
    same = json.loads(json.dumps(reference))
    assert check.compare(reference, same)[1] == 0
    changed = json.loads(json.dumps(reference))
    changed["env"]["single"]["exact"]["obs"] = "abd"
    changed["env"]["single"]["close"]["fidelity"] = [0.5, 0.25 + 1e-9]
    compared, differ, worst, _problems = check.compare(reference, changed)
    assert (compared, differ) == (2, 2)
    assert worst == pytest.approx(1e-9)
