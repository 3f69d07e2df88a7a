"""``pulsecal-evaluate``: agents against the baselines on held-out devices
(:func:`pulsecal.agents.pipelines.evaluate.evaluate` does the work)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pulsecal.agents.pipelines.console import run_console
from pulsecal.agents.pipelines.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="pkg://pulsecal.configs", config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        report = evaluate(cfg)
    except (ValueError, FileNotFoundError) as err:
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
