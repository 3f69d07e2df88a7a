"""``pulsecal-export``: turn a training run into a folder the lab runs without torch.

    pulsecal-export run_dir=runs/2026-01-01_12-00-00_000000
    pulsecal-export run_dir=runs/... out=/mnt/lab/policies/x90_v3 torchscript=true
    python -m pulsecal.scripts.export run_dir=runs/... checkpoint=latest

Arguments are ``key=value`` like the other pulsecal entry points (no Hydra needed: there
is nothing to compose). Keys: ``run_dir`` (required), ``out`` (default
``<run_dir>/export``), ``checkpoint`` (``latest`` or a step number; default the final
model), ``torchscript`` and ``overwrite`` (true/false). An unknown key or a bad value
exits with status 2 and one line, ``error: <key>: <problem>``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_KEYS = ("run_dir", "out", "checkpoint", "torchscript", "overwrite")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class UsageError(ValueError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``key=value`` arguments into typed options; raises :class:`UsageError` naming the key."""
    options: dict[str, Any] = {"out": None, "checkpoint": None, "torchscript": False, "overwrite": False}
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if not sep:
            raise UsageError(arg, "expected key=value")
        if key not in _KEYS:
            raise UsageError(key, f"unknown option: allowed {', '.join(_KEYS)}")
        if key in ("torchscript", "overwrite"):
            if value.lower() not in _BOOLS:
                raise UsageError(key, f"{value!r} is not a boolean: allowed true or false")
            options[key] = _BOOLS[value.lower()]
        elif key == "checkpoint":
            if value not in ("latest", "null", "") and not value.isdigit():
                raise UsageError(key, f"{value!r}: allowed latest or a step number")
            options[key] = None if value in ("null", "") else (value if value == "latest" else int(value))
        else:
            options[key] = value
    if not options.get("run_dir"):
        raise UsageError("run_dir", "required: the pulsecal-train run directory to export")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Export a run; print the folder and what the manifest says about it."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        options = parse_args(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from pulsecal.agents.export import export_run

    try:
        folder = export_run(
            options["run_dir"],
            options["out"],
            checkpoint=options["checkpoint"],
            torchscript=options["torchscript"],
            overwrite=options["overwrite"],
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: run_dir: {err}", file=sys.stderr)
        return 2
    manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    check = manifest["export_check"]
    print(
        f"{folder}: {manifest['algorithm']['name']} for {manifest['env']['id']}, "
        f"max |onnx - sb3| = {check['max_abs_diff']:.2g} on {check['samples']} observations"
    )
    return 0


