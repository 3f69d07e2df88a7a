"""``pulsecal-train``: Hydra-configured training of an SB3 agent on a pulsecal env
(:func:`pulsecal.agents.pipelines.train.train` does the work)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pulsecal.agents.pipelines.console import format_error, remove_created, run_console
from pulsecal.agents.pipelines.train import train
from pulsecal.configs.schema import ConfigError


@hydra.main(version_base="1.3", config_path="pkg://pulsecal.configs", config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    try:
        return float(train(cfg)["objective"])
    except ConfigError as err:
        hc = HydraConfig.get()
        remove_created(Path(hc.runtime.output_dir), hc.output_subdir, bool(cfg.get("resume")))
        # SystemExit passes through Hydra's job runner, which would otherwise add its own
        # "Error executing job" report to our one line.
        print(format_error(err), file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Console script: Hydra's command line, errors as one line on stderr."""
    run_console(_hydra_main)


if __name__ == "__main__":
    main()
