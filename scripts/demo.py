"""``make demo`` / ``pulsecal-demo``: the product's main job on the embedded simulated device
(:func:`pulsecal.agents.pipelines.demo.demo` does the work).

    python -m pulsecal.scripts.demo train.total_timesteps=20000 evaluate.n_devices=10
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pulsecal.agents.pipelines.common import PipelineError
from pulsecal.agents.pipelines.console import run_console
from pulsecal.agents.pipelines.demo import demo
from pulsecal.configs.schema import ConfigError


@hydra.main(version_base="1.3", config_path="pkg://pulsecal.configs", config_name="demo")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        demo(cfg)
    except (PipelineError, ConfigError) as err:
        # SystemExit passes through Hydra's job runner without its multi-line report.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Console script ``pulsecal-demo``: Hydra's command line, config errors as one line."""
    run_console(_hydra_main)


if __name__ == "__main__":
    main()
