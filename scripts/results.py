"""``make results`` / ``pulsecal-results``: train the agents and write docs/results.md
(:func:`pulsecal.agents.pipelines.results.results` does the work).

    python -m pulsecal.scripts.results --quick         # tiny budgets, into a temp folder
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pulsecal.agents.pipelines.common import PipelineError
from pulsecal.agents.pipelines.console import run_console
from pulsecal.agents.pipelines.results import quick_argv, results
from pulsecal.configs.schema import ConfigError

_ARGV: list[str] = []


@hydra.main(version_base="1.3", config_path="pkg://pulsecal.configs", config_name="results")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        results(cfg, _ARGV)
    except (PipelineError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Console script ``pulsecal-results``: Hydra's command line plus ``--quick``."""
    global _ARGV
    _ARGV = list(sys.argv)
    sys.argv = [sys.argv[0], *quick_argv(sys.argv[1:])]
    run_console(_hydra_main)


if __name__ == "__main__":
    main()
