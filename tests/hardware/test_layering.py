"""The hardware layer's imports go one way: it may use ``pulsecal.envs`` (the pulse
representation, the simulated device, the env contract) but imports nothing of
``pulsecal.agents`` or ``pulsecal.scripts`` and no learner (torch, stable-baselines3,
sb3-contrib), not even lazily inside a function; and it reads envs only through their
public contract (``calibration_state()``), never through an env's core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HARDWARE = Path(__file__).resolve().parents[2] / "hardware"
FORBIDDEN = ("pulsecal.agents", "pulsecal.scripts", "torch", "stable_baselines3", "sb3_contrib")


def _modules() -> list[Path]:
    # hardware/data holds qibolab platform definitions: data qibolab loads, not our code.
    return sorted(p for p in HARDWARE.rglob("*.py") if "data" not in p.relative_to(HARDWARE).parts)


def _imports(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, at any depth."""
    if package is None:
        package = "pulsecal." + ".".join(path.relative_to(HARDWARE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                found.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
            elif node.module:
                found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(HARDWARE)))
def test_hardware_imports_neither_agents_nor_scripts_nor_learners(path: Path) -> None:
    bad = [f"{path.name}:{line} imports {name}" for line, name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, bad


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(HARDWARE)))
def test_hardware_reads_no_env_internals(path: Path) -> None:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "core":
            bad.append(f"{path.name}:{node.lineno} reads .core")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr"
                and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "core"):
            bad.append(f"{path.name}:{node.lineno} tests hasattr(core, ...)")
    assert not bad, bad


def test_the_checker_resolves_relative_imports_and_sees_lazy_ones(tmp_path: Path) -> None:
    names = [name for _, name in _imports(HARDWARE / "replay" / "session.py")]
    assert "pulsecal.hardware.policy" in names and "pulsecal.hardware.replay.settings" in names
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from pulsecal.agents.runner import load_policy\n    import torch\n"
                    "    from ..policies import x\n")
    assert [name for _, name in _imports(lazy, "pulsecal.hardware.replay")] == [
        "pulsecal.agents.runner", "torch", "pulsecal.hardware.policies"]
