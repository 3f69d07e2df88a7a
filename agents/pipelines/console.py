"""Console-script plumbing shared by the Hydra entry points: config errors end as one
``error: <key>: <problem>`` line on stderr with exit status 2, and a run that failed
validation leaves nothing of Hydra's behind."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from pulsecal.configs.schema import ConfigError


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def remove_created(output_dir: Path, hydra_subdir: str | None, resumed: bool, log_name: str = "train.log") -> None:
    """Undo what Hydra created for a run that failed validation: the run directory if it
    holds only Hydra's own files, else just this invocation's Hydra subdirectory."""
    if not output_dir.is_dir():
        return
    if hydra_subdir and resumed:
        shutil.rmtree(output_dir / hydra_subdir, ignore_errors=True)
    ours = {".hydra", log_name}
    if all(p.name in ours for p in output_dir.iterdir()) and not (output_dir / "config.yaml").exists():
        hydra_dir = output_dir / ".hydra"
        only_hydra = not hydra_dir.exists() or all(
            p.name in ("config.yaml", "hydra.yaml", "overrides.yaml") or p.name.startswith("resume_")
            for p in hydra_dir.iterdir()
        )
        if only_hydra:
            shutil.rmtree(output_dir, ignore_errors=True)


def format_error(err: BaseException) -> str:
    """One line ``error: <key>: <problem>`` for config and composition errors."""
    own: BaseException | None = err
    while own is not None and not isinstance(own, ConfigError):
        # A resolver's refusal arrives inside OmegaConf's error, as its cause or context.
        own = own.__cause__ or own.__context__
    if isinstance(own, ConfigError):
        return f"error: {own.key}: {own.problem}"
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        options = [o for o in (err.options or []) if not o.endswith("_schema")]
        if group:
            return f"error: {group}: unknown option {option!r} (choose from {', '.join(options)})"
        return f"error: {first_line(str(err))}"
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OmegaConfBaseException) and cause.full_key:
            msg = first_line(cause.msg or str(cause))
            if "not in struct" in msg:
                msg = f"unknown key ({msg})"
            return f"error: {cause.full_key}: {msg}"
        cause = cause.__cause__
    return f"error: {first_line(str(err))}"


def run_console(hydra_main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function as a console script: config errors (ours, Hydra's,
    OmegaConf's) end as one ``error: <key>: ...`` line on stderr and exit status 2."""
    # Let config errors reach us instead of Hydra's multi-line report.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        hydra_main()
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        print(format_error(err), file=sys.stderr)
        sys.exit(2)


__all__ = ["first_line", "format_error", "remove_created", "run_console"]
