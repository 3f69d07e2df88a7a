"""``pulsecal-replay``: a journaled calibration session of a policy on a backend, or one
qubit of a sweep (:func:`pulsecal.agents.pipelines.replay.replay` does the work).

It prints one line for the session's outcome (one per qubit in a sweep) and exits with
the code ``EXIT_CODES`` gives it (docs/lab_sessions.md)."""

from __future__ import annotations

import os
import sys
import warnings

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pulsecal.agents.pipelines.console import format_error
from pulsecal.agents.pipelines.replay import replay
from pulsecal.agents.pipelines.replay_outcome import EXIT_CODES, exit_code, outcome_line
from pulsecal.agents.pipelines.sweep import (
    discard_job_record,
    forget_multirun,
    multirun_exit_code,
    record_outcome,
    undo_refused_multirun,
)
from pulsecal.configs.schema import ConfigError
from pulsecal.hardware.replay import ReplayDivergence, SettingsMismatch
from pulsecal.hardware.session_lock import SessionBusy
from pulsecal.hardware.sweep import BUSY

# A sweep qubit's job prints its one line and logs its exit code in the sweep's outcome
# log; the launching process reads its multirun's codes back from there, so the exit
# status is the same with the basic, joblib, Ray or SLURM launcher. A session or qubit
# another process holds is refused inside the job, so the message is one line (Hydra
# prefixes an escaping error with a line of its own) and the other jobs of a multirun go
# on. A refused qubit raises (Hydra stops the multirun after the batch, exit 2) once it has
# removed the folder Hydra made for it.


@hydra.main(version_base="1.3", config_path="pkg://pulsecal.configs", config_name="replay")
def _hydra_main(cfg: DictConfig) -> None:
    if cfg.get("qubit") is not None:  # one qubit of a sweep: a QubitOutcome
        try:
            r = replay(cfg)
        except (ValueError, OmegaConfBaseException, HydraException):
            discard_job_record()
            raise
        if r.state == BUSY:
            print(f"error: qubit {r.qubit}: {r.error}", file=sys.stderr)
        else:
            print(outcome_line(r))
        record_outcome(OmegaConf.to_container(cfg, resolve=True), r, exit_code(r))  # type: ignore[arg-type]
        return
    try:
        r = replay(cfg)
    except SessionBusy as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_CODES["busy"])
    except (SettingsMismatch, ValueError) as err:
        # SystemExit passes through Hydra's job runner, which would otherwise add its own
        # "Error executing job" report to ours.
        print(_refusal(err), file=sys.stderr)
        sys.exit(EXIT_CODES["refused"])
    except ReplayDivergence as err:  # (after SettingsMismatch, one of its kind)
        # The folder's journal does not retrace: nothing more is sent; the folder is kept
        # as it is for inspection.
        print(f"error: {err}: this session's journal does not retrace under this command; the folder is kept "
              "for inspection, and another session_id starts afresh", file=sys.stderr)
        sys.exit(EXIT_CODES["error"])
    code = exit_code(r)
    print(outcome_line(r), file=sys.stderr if code else sys.stdout)
    if code:
        sys.exit(code)


def _refusal(err: BaseException) -> str:
    # Our own refusals are written for the console whole (a settings mismatch takes three
    # lines: what differs, how to continue, how to start fresh); Hydra's and OmegaConf's
    # are cut to the key and the first line.
    if isinstance(err, ValueError | SettingsMismatch) and not isinstance(err, ConfigError | OmegaConfBaseException):
        return f"error: {err}"
    return format_error(err)


def main() -> None:
    """Console script: Hydra's command line, config errors as one line on stderr (exit
    status 2); a session or sweep qubit another process holds as one line naming its PID
    (exit status 3, ``EXIT_SESSION_BUSY``)."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    # configs/hydra/launcher/ray.yaml shadows the Ray plugin's config of the same name on
    # purpose (hydra/launcher=ray); Hydra 1.3 validates it against the plugin's schema and
    # warns that this matching is deprecated. The validation is welcome, the warning is noise.
    warnings.filterwarnings("ignore", message=r"(?s).*'hydra/launcher/ray' is validated against ConfigStore")
    forget_multirun()
    try:
        _hydra_main()
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        undo_refused_multirun()  # a sweep: what its launching process created
        print(_refusal(err), file=sys.stderr)
        sys.exit(EXIT_CODES["refused"])
    # A sweep exits with the code of its lowest-numbered qubit that did not finish.
    code = multirun_exit_code()
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
