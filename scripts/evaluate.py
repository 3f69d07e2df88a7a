"""``pulsecal-evaluate``: agents against the baselines on held-out devices
(:func:`pulsecal.agents.pipelines.evaluate.evaluate` does the work)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pulsecal.agents.pipelines.console import remove_created, run_console
from pulsecal.agents.pipelines.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="pkg://pulsecal.configs", config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        report = evaluate(cfg)
    except (ValueError, FileNotFoundError) as err:
        # A refused config leaves no results/evaluate/<stamp>/ behind (Hydra made it first).
        hc = HydraConfig.get()
        out = Path(hc.runtime.output_dir)
        remove_created(out, hc.output_subdir, False, log_name=f"{hc.job.name}.log")
        if not out.exists():  # and the empty results/evaluate/ Hydra made for it, up to the cwd
            for parent in out.parents:
                if parent == Path.cwd() or Path.cwd() not in parent.parents or any(parent.iterdir()):
                    break
                parent.rmdir()
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"results in {report.out_dir}")
    for v in report.verdicts:
        print(f"  {v['task']:<15} {v['method']:<18} {'PASS' if v['passed'] else 'fail'}  {v['detail']}")


def main() -> None:
    """Console script ``pulsecal-evaluate``: composition errors (a misspelt or mistyped
    key) end as one ``error: <key>: ...`` line, exit status 2."""
    run_console(_hydra_main)


if __name__ == "__main__":
    main()
