"""What a run directory records so a result can be traced and replayed: the resolved
config, the command line, the seed, package versions and the git revision, plus the
PNG learning curve drawn from the evaluation history.

Plain text, JSON and PNG only; nothing here is pickled.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pulsecal.agents.persistence import free_name, write_json_atomic, write_text_atomic

PACKAGES = (
    "pulsecal",
    "numpy",
    "scipy",
    "gymnasium",
    "stable-baselines3",
    "sb3-contrib",
    "torch",
    "hydra-core",
    "omegaconf",
    "optuna",
    "qutip",
)


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision(where: Path | None = None) -> str:
    """``git describe --always --dirty`` of the source tree, or ``unknown``."""
    cwd = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def write_provenance(
    run_dir: Path,
    config_yaml: str,
    seed: int,
    argv: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``config.yaml``, ``command.txt`` and ``provenance.json`` into ``run_dir``.

    A resumed run writes ``config-r1.yaml`` etc. next to the originals.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = list(sys.argv if argv is None else argv)
    paths = {
        "config": free_name(run_dir / "config.yaml"),
        "command": free_name(run_dir / "command.txt"),
        "provenance": free_name(run_dir / "provenance.json"),
    }
    write_text_atomic(paths["config"], config_yaml)
    write_text_atomic(paths["command"], " ".join(_quote(a) for a in argv) + "\n")
    write_json_atomic(
        paths["provenance"],
        {
            "argv": argv,
            "seed": seed,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "platform": platform.platform(),
            "git_revision": git_revision(),
            "packages": package_versions(),
            **(extra or {}),
        },
    )
    return paths


def _quote(arg: str) -> str:
    return shlex.quote(arg)


def plot_learning_curve(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path | None:
    """PNG of evaluated infidelity (mean, median, best) and leakage against env steps."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in history]
    fig, (ax_f, ax_l) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for key, style in (("infidelity_mean", "o-"), ("infidelity_median", "s--"), ("infidelity_best", "^:")):
        values = [row.get(key, float("nan")) for row in history]
        ax_f.plot(steps, values, style, label=key.replace("infidelity_", ""))
    ax_f.set_yscale("log")
    ax_f.set_ylabel("true infidelity 1 − F (held-out devices)")
    ax_f.legend()
    ax_f.grid(True, which="both", alpha=0.3)
    leakage = [row.get("leakage_mean", float("nan")) for row in history]
    ax_l.plot(steps, leakage, "o-", color="tab:red")
    if any(v > 0 for v in leakage):
        ax_l.set_yscale("log")
    ax_l.set_ylabel("leakage")
    ax_l.set_xlabel("environment steps")
    ax_l.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
