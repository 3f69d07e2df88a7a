"""BackendDevice over the simulated backend: exactly-once under injected faults, ledger
against the backend's own shot count, refusals journaled, resume without double-submits,
and physics that survives the whole hardware path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hw_helpers import DRIVE, DT_S, FakeClock, make_device, make_limits

from pulsecal.envs.protocol import Device, Play, PulseSequence, VirtualZ
from pulsecal.envs.pulses import DragPulse, pi_amplitude
from pulsecal.hardware.adapters.simulated import FaultRates, SimulatedBackend
from pulsecal.hardware.device import BackendDevice, JobLost, RetryPolicy
from pulsecal.hardware.journal import Journal, read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.safety import SafetyViolation


def _pi_pulse() -> np.ndarray:
    shape = DragPulse(amplitude=0.5, duration_s=40e-9)
    dev = make_device()
    amp = pi_amplitude(shape, dev.current_transmon().rabi_max_hz, DT_S)
    return shape.replace(amplitude=amp).waveform(DT_S)


def _setup(tmp_path: Path, *, faults: FaultRates | None = None, seed: int = 0,
           idempotent: bool = False, session: str = "s1", **kw: object):
    clock = FakeClock()
    backend = SimulatedBackend(make_device(seed), rng=np.random.default_rng(seed + 1),
                               faults=faults, frame=DRIVE, idempotent_submit=idempotent)
    ledger = ShotLedger(tmp_path / "ledger.json", fsync=False)
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, fsync=False)
    dev = BackendDevice(backend, limits=make_limits(), ledger=ledger, journal=journal,
                        session_id=session, clock=clock, sleep=clock.sleep,
                        retry=RetryPolicy(max_submit_attempts=12, max_result_polls=60), **kw)  # type: ignore[arg-type]
    return dev, backend, ledger, clock


def test_backend_device_is_a_device(tmp_path: Path) -> None:
    dev, backend, _, _ = _setup(tmp_path)
    assert isinstance(dev, Device)
    assert dev.dt_s == DT_S
    dev.advance(2.0)
    assert dev.clock_s == backend.device.clock_s >= 2.0


def test_pi_pulse_through_the_hardware_path(tmp_path: Path) -> None:
    dev, _, _, _ = _setup(tmp_path)
    w = _pi_pulse()
    seqs = [PulseSequence(()), PulseSequence((Play(w),)),
            PulseSequence((Play(w), VirtualZ(np.pi), Play(w)))]  # X then −X: back to |0>
    counts = dev.run(seqs, 400)
    assert counts.shape == (3, 2) and np.all(counts.sum(axis=1) == 400)
    assert counts[0, 1] == 0 and counts[1, 1] > 390 and counts[2, 1] < 10


def test_20_percent_faults_no_lost_no_duplicated_jobs(tmp_path: Path) -> None:
    faults = FaultRates.uniform(0.2)
    dev, backend, ledger, clock = _setup(tmp_path, faults=faults, seed=3)
    w = _pi_pulse()
    rng = np.random.default_rng(5)
    n_jobs = 0
    for _ in range(12):
        seqs = [PulseSequence((Play(w * float(rng.uniform(0.2, 1.0))), VirtualZ(float(rng.uniform(-3, 3))),
                               Play(w * 0.5))) for _ in range(8)]
        counts = dev.run(seqs, 200)
        assert np.all(counts.sum(axis=1) == 200)
        n_jobs += len(seqs)
    # Every job ran exactly once although the backend would happily run a key twice.
    assert backend.stats.executions == n_jobs
    assert set(backend.executions_per_key.values()) == {1}
    assert backend.executed_shots == ledger.used_shots == 200 * n_jobs
    assert all(e.state == "done" for e in ledger.entries.values())
    # The faults really happened, and every kind at least once.
    assert set(backend.stats.faults) == {"submit_error", "lost_response", "find_error", "late_delivery",
                                         "result_timeout", "partial_result", "duplicate_delivery"}
    events = [r["event"] for r in read_journal(tmp_path / "journal.jsonl")]
    assert events.count("completed") == n_jobs
    assert {"retry", "recovered", "partial", "discarded"} <= set(events)
    assert clock.slept_s  # backoff went through the injected sleep
    assert ShotLedger(tmp_path / "ledger.json").used_shots == backend.executed_shots


def test_refusals_are_journaled_and_nothing_runs(tmp_path: Path) -> None:
    dev, backend, ledger, _ = _setup(tmp_path)
    too_loud = np.full(40, 0.95 + 0j)
    with pytest.raises(SafetyViolation, match=r"max_amplitude=0\.95"):
        dev.run([PulseSequence((Play(_pi_pulse()),)), PulseSequence((Play(too_loud),))], 100)
    with pytest.raises(SafetyViolation, match="max_shots_per_job=6000"):
        dev.run([PulseSequence(())], 6000)
    assert backend.stats.submit_calls == 0 and ledger.used_shots == 0
    recs = [r for r in read_journal(tmp_path / "journal.jsonl") if r["event"] == "refused"]
    assert len(recs) == 2
    assert recs[0]["violations"][0]["limit"] == "max_amplitude" and recs[0]["index"] == 1


def test_batch_refused_when_it_would_break_the_day(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = SimulatedBackend(make_device(), rng=np.random.default_rng(0), frame=DRIVE)
    dev = BackendDevice(backend, limits=make_limits(max_shots_per_day=1000), ledger=ShotLedger(),
                        journal=Journal(tmp_path / "j.jsonl", fsync=False), session_id="s",
                        clock=clock, sleep=clock.sleep)
    dev.run([PulseSequence(())] * 3, 200)
    # Each job alone fits (600 + 200 <= 1000); the batch of three does not.
    with pytest.raises(SafetyViolation, match=r"batch of 3: max_shots_per_day=1200"):
        dev.run([PulseSequence(())] * 3, 200)
    assert backend.executed_shots == 600


def test_resumed_session_recovers_instead_of_resubmitting(tmp_path: Path) -> None:
    """A crash after submit and before the result: the same session and step find the job."""
    dev, backend, ledger, _ = _setup(tmp_path, faults=FaultRates(lost_response=1.0))
    seqs = [PulseSequence((Play(_pi_pulse()),))]
    dev.retry = RetryPolicy(max_submit_attempts=1, max_result_polls=1)
    backend.faults = FaultRates(lost_response=1.0, find_error=1.0)
    with pytest.raises(JobLost):
        dev.run(seqs, 100)  # it ran, but nobody could confirm it: shots stay counted
    assert backend.executed_shots == 100 and ledger.used_shots == 100
    backend.faults = FaultRates()
    resumed = BackendDevice(backend, limits=make_limits(), ledger=ShotLedger(tmp_path / "ledger.json"),
                            journal=Journal(tmp_path / "journal.jsonl"), session_id="s1",
                            clock=FakeClock(), sleep=FakeClock().sleep, start_step=0)
    counts = resumed.run(seqs, 100)
    assert counts.sum() == 100
    assert backend.executed_shots == 100 and backend.stats.executions == 1
    events = [r["event"] for r in read_journal(tmp_path / "journal.jsonl")]
    assert "recovered" in events and events[-1] == "completed"


def test_job_never_received_is_released(tmp_path: Path) -> None:
    dev, backend, ledger, _ = _setup(tmp_path, faults=FaultRates(submit_error=1.0))
    dev.retry = RetryPolicy(max_submit_attempts=3)
    with pytest.raises(JobLost, match="out of submit attempts"):
        dev.run([PulseSequence(())], 100)
    assert backend.executed_shots == 0 and ledger.used_shots == 0
    assert read_journal(tmp_path / "journal.jsonl").records[-1]["event"] == "failed"
