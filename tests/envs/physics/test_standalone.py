"""The physics kernel stands alone: imported as a package of its own (not as
``pulsecal.envs.physics``), every module loads without anything else of pulsecal and
without Gymnasium, SB3, torch or Hydra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pulsecal.envs.physics as physics

_CHECK = """
import importlib, importlib.util, pkgutil, sys
root = sys.argv[1]
spec = importlib.util.spec_from_file_location("physics_alone", root + "/__init__.py",
                                              submodule_search_locations=[root])
mod = importlib.util.module_from_spec(spec)
sys.modules["physics_alone"] = mod
spec.loader.exec_module(mod)
for m in pkgutil.iter_modules([root]):
    if m.name != "engine_dynamics":  # the optional qiskit-dynamics extra
        importlib.import_module("physics_alone." + m.name)
heavy = ("gymnasium", "torch", "stable_baselines3", "sb3_contrib", "hydra")
print(sorted(m for m in sys.modules if m.startswith("pulsecal") or m.split(".")[0] in heavy))
"""


def test_physics_imports_nothing_else_of_pulsecal_nor_rl_or_config_libraries() -> None:
    root = str(Path(physics.__file__).parent)
    out = subprocess.run([sys.executable, "-c", _CHECK, root], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "[]"
