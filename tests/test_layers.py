"""The layering contracts in pyproject.toml (``lint-imports``, run by ``make lint``) hold,
and each of them fails on a violating import.

A violation is planted in a copy of the source tree (the real modules, so the contracts see
the real graph plus one bad import) and ``lint-imports`` runs on that copy with the
project's own contracts: the contract it breaks must be reported broken, and only that one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("envs", "agents", "hardware", "configs", "scripts")
CONTRACTS = [c["name"] for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]]

# Runs import-linter on the tree in the working directory only: the editable install's
# finder (which maps pulsecal.* onto the checkout) is taken off sys.meta_path first.
_RUN = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path_importer_cache.clear()
sys.path.insert(0, ".")
from importlinter.cli import lint_imports_command
sys.exit(lint_imports_command())
"""


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", _RUN, str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def _broken(output: str) -> set[str]:
    lines = [" ".join(line.split()) for line in output.splitlines()]
    text = " ".join(lines)
    return {name for name in CONTRACTS if f"{' '.join(name.split())} BROKEN" in text}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, root / "pulsecal" / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "data", "*.yaml"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_real_tree_keeps_every_contract(tree: Path) -> None:
    proc = _lint(tree)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{len(CONTRACTS)} kept, 0 broken" in proc.stdout


VIOLATIONS = [
    # (file planted, its source, the contract it breaks)
    ("envs/physics/_bad.py", "from pulsecal.envs import pulses\n", CONTRACTS[0]),
    ("envs/physics/_bad.py", "def f():\n    import gymnasium\n", CONTRACTS[0]),
    ("envs/_bad.py", "def f():\n    import torch\n", CONTRACTS[1]),
    ("envs/_bad.py", "from pulsecal.hardware import ir\n", CONTRACTS[1]),
    ("hardware/_bad.py", "def f():\n    from pulsecal.agents import runner\n", CONTRACTS[2]),
    ("hardware/_bad.py", "import stable_baselines3\n", CONTRACTS[2]),
    ("agents/_bad.py", "from pulsecal.scripts import train\n", CONTRACTS[3]),
    ("scripts/_bad.py", "from pulsecal.scripts import train\n", CONTRACTS[4]),
]


@pytest.mark.parametrize(("path", "source", "contract"), VIOLATIONS, ids=[f"{v[0]}:{i}" for i, v in enumerate(VIOLATIONS)])
def test_each_contract_fails_on_a_violating_import(tree: Path, path: str, source: str, contract: str) -> None:
    planted = tree / "pulsecal" / path
    planted.write_text(source)
    try:
        proc = _lint(tree)
    finally:
        planted.unlink()
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert contract in _broken(proc.stdout), proc.stdout[-3000:]
