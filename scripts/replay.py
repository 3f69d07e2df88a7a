"""``pulsecal-replay``: a journaled calibration session of a policy on a backend, or one
qubit of a sweep (:func:`pulsecal.agents.pipelines.replay.replay` does the work)."""

from __future__ import annotations

import os
import sys
import warnings

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from pulsecal.agents.pipelines.replay import replay
from pulsecal.hardware.session_lock import EXIT_SESSION_BUSY, SessionBusy
from pulsecal.hardware.sweep import BUSY

# Sessions or sweep qubits that another process holds: refused inside the job, so the
# message is one line (Hydra prefixes an escaping error with a line of its own) and the
# other jobs of a multirun go on; the exit status says it.
_busy: list[str] = []


@hydra.main(version_base="1.3", config_path="pkg://pulsecal.configs", config_name="replay")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        r = replay(cfg)
    except SessionBusy as err:
        print(f"error: {err}", file=sys.stderr)
        _busy.append(str(err))
        return
    if cfg.get("qubit") is not None:  # one qubit of a sweep: a QubitOutcome
        if r.state == BUSY:
            print(f"error: qubit {r.qubit}: {r.error}", file=sys.stderr)
            _busy.append(str(r.error))
            return
        print(f"qubit {r.qubit}: {'skipped, ' if r.skipped else ''}{r.state} after {r.attempts} attempt(s)"
              + (f": {r.error}" if r.error else ""))
        return
    rep = r.report
    print(f"session {rep['session_id']}: {rep['env_steps']} steps, {r.ledger_shots} shots, "
          f"estimated infidelity {rep['estimated_infidelity_initial']:.3g} -> "
          f"{rep['estimated_infidelity_final']:.3g}; report in {r.folder}")


def main() -> None:
    """Console script: Hydra's command line, config errors as one line on stderr (exit
    status 2); a session or sweep qubit another process holds as one line naming its PID
    (exit status 3, ``EXIT_SESSION_BUSY``)."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    # configs/hydra/launcher/ray.yaml shadows the Ray plugin's config of the same name on
    # purpose (hydra/launcher=ray); Hydra 1.3 validates it against the plugin's schema and
    # warns that this matching is deprecated. The validation is welcome, the warning is noise.
    warnings.filterwarnings("ignore", message=r"(?s).*'hydra/launcher/ray' is validated against ConfigStore")
    try:
        _hydra_main()
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if _busy:
        sys.exit(EXIT_SESSION_BUSY)


if __name__ == "__main__":
    main()
