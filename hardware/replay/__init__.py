"""Replay: a closed-loop calibration session of a policy on any backend, resumable after a kill.

The session is the ``GateCalibration`` environment with a ``BackendDevice`` behind it: the
policy acts on the env's observation, the env turns the action into DRAG parameters and
probe sequences, and every sequence becomes one job through the safety envelope, the shot
ledger and the exactly-once retries of ``BackendDevice``. Everything lands in one session
folder::

    session.json     the settings the session started with (a resume must match them)
    journal.jsonl    append-only audit log: BackendDevice's job events (program hash, job
                     key, job id, counts, retries, ...) plus this module's session events
    ledger.json      shots per job key against the budget
    report.json, report.md, *.png    the calibration report (``pulsecal.hardware.report``)

The session calibrates one qubit of the backend (``ReplaySettings.qubit``): the programs
play on its drive frame (``Capabilities.drive_frame``) and acquire it, and the default
envelope allows that frame only. Sessions of one device may share its day ledger
(``device_ledger``, a ``ledger.DeviceDayLedger`` file): each job is charged there before
it is submitted, so the envelope's per-day shot limit bounds all of them together; on
resume the session's entries in it are synced to the session ledger.

Journal events written here (besides BackendDevice's): ``session_started``,
``session_resumed``, ``action`` (env step, the action and the parameters it was applied
to: the audit of every applied action), ``run`` / ``run_done`` (one device call: its
program hashes and, once all its jobs are back, their counts), ``observation`` (what the
env computed from the counts), ``advance``, ``orphaned``, ``released``, ``reconciled``,
``session_finished`` or ``session_stopped`` (reason, detail, env_step, terminal: a session
that could not run to its end, ``stops``). ``BackendDevice``'s records and the session and accounting records
(``session_*``, ``inflight_at_resume``, ``orphaned``, ``released``, ``reconciled``) carry
``process``: a number naming the process that wrote them (the session's first process is 0,
each resume takes the next number no record uses).

Resume. A killed session is restarted with the same folder and settings. The env and the
policy are deterministic given the seed and the counts, so the session runs again from
step 0 and the device answers every call it already finished from the journal (the
``run_done`` counts) instead of running jobs; the policy re-derives the same actions, which
are checked against the journaled ones (a different policy, env or code raises
``ReplayDivergence`` instead of silently mixing two sessions). The first device call
without ``run_done`` — the one in flight at the kill — goes to the live ``BackendDevice``
with the same step number, so its job keys are the same: jobs the backend still knows are
recovered by ``find`` (a vendor queue, a lab server), never submitted twice. Jobs whose
execution died with the killed process (the simulated backend and qibolab run jobs in
process) are run again under the same key.

Shot accounting across kills. Invariant: the ledger never under-counts shots that
physically ran, and after any kill and resume ``ledger.used_shots`` = the shots of the
uninterrupted session + the ``shots`` of this session's ``orphaned`` records, with exactly
one ``orphaned`` record per extra ledger entry. It holds at every crash point because every
write that may leave the ledger and the journal apart is ordered write-ahead and
reconciled on resume:

* ``BackendDevice`` reserves a job's shots, then journals ``submitting`` (fields: step,
  index, job_key, shots, attempt, process), then calls ``Backend.submit``. A job may have
  run in a process only if that process journaled ``submitting`` for its key.
* Before a resumed process submits a key again (``find`` did not recover it), it charges
  the executions that may have died with earlier processes: the key's own ledger entry
  covers one, and ``<key>:orphan:<n>`` covers each further one, n = 1, 2, ... up to the
  number of distinct earlier processes with a ``submitting`` record for the key (a process
  whose ``failed`` record proved the job never ran does not count). Each charge is
  journaled first — ``orphaned`` (step, index, job_key, shots, ledger_key, day, charged,
  process) — and then written to the ledger with ``ShotLedger.charge`` (one write, no limit:
  the shots ran). A kill between the two leaves a record without its ledger entry.
* On resume, before anything else, ``reconciled``: every ``orphaned`` record whose
  ``ledger_key`` the ledger does not count is charged (``reconciled``, action
  ``charged``); every ``<key>:orphan:<n>`` ledger entry without an ``orphaned`` record
  (a session without write-ahead records charged the ledger before journaling) gets one
  (``orphaned`` with ``reconciled: true``); every reservation with no ``submitting`` record provably never
  reached the backend and is released (``released``, journaled before the ledger write; the
  re-run reserves it again). The session folder's ledger holds this session's jobs only.

A journal without ``submitting`` records (no ``write_ahead`` in ``session_started``) cannot
tell which jobs reached the backend, so its session resumes conservatively: one earlier
execution per key the ledger already counted, and no reservation is released.

The simulated backend's device state. A ``SimulatedDevice`` keeps its shot-noise and drift
generators and its clock in the process, so after a kill the backend is rebuilt from the
same seed at clock 0. Its state is a deterministic function of the ordered list of
executions (one ``device.run`` per job, in step and index order; fault injection has its
own generator and never touches counts) and ``advance`` calls. So while the journal answers
finished calls, each of their jobs is re-simulated on the rebuilt device exactly as
``SimulatedBackend.submit`` ran it (``compile`` → payload → ``device.run``, no submit, no
job, no shots counted) and the counts are checked against the journal bit for bit; then
the in-flight call re-runs its jobs in the same order and gets the same counts the killed
process got. A resumed session therefore ends with the same parameters as an
uninterrupted one with the same seed. Real hardware needs none of this: its state is
physical, and the time that passed is simply time that passed.

The package by job: ``settings`` (``ReplaySettings``, ``session.json``, the session's env
class and default envelope), ``trained_env`` (the env a policy was trained in and the
session's env settings), ``journal_state`` (the journal read back), ``replay_device``
(finished device calls from the journal, the rest live), ``orphans`` (shot accounting
across kills), ``stops`` (why a session ended early) and ``session`` (the loop,
``run_session``). The policy it drives is any
``pulsecal.hardware.policy.Policy``; the env is reached through its public
``calibration_state()`` (``pulsecal.envs.contract``) only.
"""

from pulsecal.envs.contract import probes_from_json

from ..policy import Policy
from ..simulated_session import (
    miscalibrated_start,
    simulated_backend,
    simulated_truth,
    start_values,
)
from .journal_state import JournalState
from .loop import ReplayResult, StepRecord
from .orphans import OrphanAccounting
from .replay_device import FastForward, ReplayDevice, simulated_fast_forward
from .session import run_session
from .settings import (
    DEFAULT_ENV_ID,
    ENV_FAMILY,
    SESSION_FORMAT,
    WRITE_AHEAD,
    ReplayDivergence,
    ReplaySettings,
    SettingsMismatch,
    default_limits,
    is_two_qubit,
    session_env_class,
)
from .stops import SessionStop
from .trained_env import (
    SESSION_ENV_KEYS,
    SessionEnv,
    TrainedEnv,
    check_device_class,
    env_to_kwargs,
    merge_session_env,
    trained_env,
    trained_env_of_export,
    trained_env_of_run,
)

__all__ = [
    "DEFAULT_ENV_ID", "ENV_FAMILY", "SESSION_ENV_KEYS", "SESSION_FORMAT", "WRITE_AHEAD", "FastForward",
    "JournalState", "OrphanAccounting", "Policy", "ReplayDevice", "ReplayDivergence", "ReplayResult",
    "ReplaySettings", "SessionEnv", "SessionStop", "SettingsMismatch", "StepRecord", "TrainedEnv",
    "check_device_class", "default_limits", "env_to_kwargs", "is_two_qubit",
    "merge_session_env", "miscalibrated_start", "probes_from_json", "run_session", "session_env_class",
    "simulated_backend", "simulated_fast_forward", "simulated_truth", "start_values", "trained_env", "trained_env_of_export",
    "trained_env_of_run",
]
