"""``pulsecal-calibrate``: a calibration graph on a multi-qubit device
(:func:`pulsecal.agents.pipelines.calibrate.calibrate` does the work).

    pulsecal-calibrate device=ring_8 graph=bringup run_id=ring8_a

Exit status: 0 when every node is calibrated or in spec, 1 when some failed or were
blocked (the run still went on with the rest), 2 for a refused config, 3 when another
process holds the run (``EXIT_SESSION_BUSY``)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pulsecal.agents.pipelines.calibrate import calibrate, exit_code
from pulsecal.agents.pipelines.console import run_console
from pulsecal.configs.schema import ConfigError
from pulsecal.hardware.session_lock import EXIT_SESSION_BUSY, SessionBusy


@hydra.main(version_base="1.3", config_path="pkg://pulsecal.configs", config_name="calibrate")
def _hydra_main(cfg: DictConfig) -> None:
    # SystemExit passes through Hydra's job runner without its multi-line report.
    try:
        report = calibrate(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except SessionBusy as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_SESSION_BUSY)
    code = exit_code(report)
    if code:
        sys.exit(code)


def main() -> None:
    """Console script ``pulsecal-calibrate``: Hydra's command line, config errors as one line."""
    run_console(_hydra_main)


if __name__ == "__main__":
    main()
