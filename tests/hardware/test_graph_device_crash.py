"""Crash points of the graph's job path (``BackendGraphDevice``, group commit): one fsynced
``intent`` per batch, unsynced per-job records and ledger reservations, and what a resumed
run finds (``graph_device.resume_jobs``; docs/concurrency.md, "The job journal and ledger
after a crash"). A kill is a ``BaseException`` raised inside the backend; a power cut is
the unsynced records and reservations removed from the files, with the intent written in
another boot."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pulsecal.envs.protocol import Measure, Play, PulseSequence
from pulsecal.hardware.graph_device import BackendGraphDevice
from pulsecal.hardware.journal import Journal, read_journal
from pulsecal.hardware.ledger import DONE, RESERVED, ShotLedger
from pulsecal.hardware.simulated_session import simulated_backend

SHOTS = 50


class Kill(BaseException):
    """The process dies here (nothing after it runs, nothing catches it)."""


class Recording:
    """A backend that records every submitted key and can die inside the n-th submit,
    before or after the job ran."""

    def __init__(self, inner: Any, *, die_at: int | None = None, after_run: bool = True) -> None:
        self.inner, self.die_at, self.after_run = inner, die_at, after_run
        self.submitted: list[str] = []
        self.name = inner.name

    def submit(self, artifact: Any, shots: int, job_key: str) -> Any:
        if self.die_at is not None and len(self.submitted) == self.die_at and not self.after_run:
            raise Kill()
        self.submitted.append(job_key)
        h = self.inner.submit(artifact, shots, job_key)
        if self.die_at is not None and len(self.submitted) == self.die_at + 1 and self.after_run:
            raise Kill()
        return h

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _device(backend: Any, folder: Path) -> BackendGraphDevice:
    return BackendGraphDevice(backend, ledger=ShotLedger(folder / "jobs_ledger.json"),
                              journal=Journal(folder / "jobs.jsonl"), session_id="run")


def _batch(n: int) -> list[PulseSequence]:
    return [PulseSequence([Play(np.full(8, 0.05 * (i + 1), dtype=complex), channel="drive:q0"), Measure(("q0",))])
            for i in range(n)]


def _records(folder: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in read_journal(folder / "jobs.jsonl") if r["event"] == event]


def test_a_batch_costs_one_fsync_of_the_job_journal_and_none_of_the_ledger(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    device = _device(simulated_backend(), tmp_path)
    device.run(_batch(1), SHOTS)  # the ledger file's first write creates it whole (fsync, rename)
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    counts = device.run(_batch(5), SHOTS)
    assert counts.shape == (5, 2) and (counts.sum(axis=1) == SHOTS).all()
    assert synced == ["jobs.jsonl"]  # the intent, before the first submit
    events = [r["event"] for r in read_journal(tmp_path / "jobs.jsonl")]
    assert events == ["intent", "submitting", "submitted", "completed", "intent"] + \
        ["submitting", "submitted"] * 5 + ["completed"] * 5
    assert [j["job_key"] for j in _records(tmp_path, "intent")[1]["jobs"]] == \
        [r["job_key"] for r in _records(tmp_path, "submitting")[1:]]
    # the unsynced records and reservations are on disk for a reader (and a kill) at once
    assert ShotLedger(tmp_path / "jobs_ledger.json").used_shots == 6 * SHOTS


def test_a_kill_inside_submit_leaves_orphans_counted_and_never_submitted_again(tmp_path: Path) -> None:
    first = Recording(simulated_backend(), die_at=1, after_run=True)  # dies in job 1's submit, after it ran
    with pytest.raises(Kill):
        _device(first, tmp_path).run(_batch(3), SHOTS)
    old = [j["job_key"] for j in _records(tmp_path, "intent")[0]["jobs"]]
    assert first.submitted == old[:2]

    again = Recording(simulated_backend())
    device = _device(again, tmp_path)
    # jobs 0 and 1 may have run (a submitting record each): counted, journaled once as
    # orphans; job 2 was never sent (this boot, no submitting record): released
    assert device.resumed_jobs.orphaned == tuple(old[:2]) and device.resumed_jobs.released == (old[2],)
    assert device.resumed_jobs.next_step == 1
    ledger = device.ledger
    assert ledger.used_shots == 2 * SHOTS and all(ledger.entry(k).state == RESERVED for k in old[:2])  # type: ignore[union-attr]
    assert [r["backend_knows"] for r in _records(tmp_path, "orphaned")] == [False, False]
    device.run(_batch(3), SHOTS)  # the node re-runs: new keys, none of the killed process's
    assert not set(again.submitted) & set(old) and len(again.submitted) == 3
    assert ledger.used_shots == 5 * SHOTS
    # a second resume finds the orphans settled: nothing journaled twice
    third = _device(Recording(simulated_backend()), tmp_path)
    assert third.resumed_jobs.orphaned == () and third.resumed_jobs.next_step == 2
    assert len(_records(tmp_path, "orphaned")) == 2 and len(_records(tmp_path, "released")) == 1


def test_a_kill_before_the_first_send_of_a_batch_counts_nothing(tmp_path: Path) -> None:
    with pytest.raises(Kill):
        _device(Recording(simulated_backend(), die_at=0, after_run=False), tmp_path).run(_batch(2), SHOTS)
    # job 0 was reserved and journaled as submitting, then the process died before the
    # backend saw it: the resume cannot tell, so it counts it; job 1 provably never left
    device = _device(Recording(simulated_backend()), tmp_path)
    keys = [j["job_key"] for j in _records(tmp_path, "intent")[0]["jobs"]]
    assert device.resumed_jobs.orphaned == (keys[0],) and device.resumed_jobs.released == (keys[1],)
    assert device.ledger.used_shots == SHOTS


def test_a_kill_between_a_reservation_and_its_submitting_record_releases_it(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pulsecal.hardware.device import BackendDevice

    log = BackendDevice._log

    def dying_log(self: BackendDevice, event: str, *args: Any, **kw: Any) -> None:
        if event == "submitting":
            raise Kill()  # the reservation is written, the record is not
        log(self, event, *args, **kw)

    monkeypatch.setattr(BackendDevice, "_log", dying_log)
    backend = Recording(simulated_backend())
    with pytest.raises(Kill):
        _device(backend, tmp_path).run(_batch(2), SHOTS)
    monkeypatch.setattr(BackendDevice, "_log", log)
    keys = [j["job_key"] for j in _records(tmp_path, "intent")[0]["jobs"]]
    assert backend.submitted == [] and ShotLedger(tmp_path / "jobs_ledger.json").entry(keys[0]).state == RESERVED  # type: ignore[union-attr]
    device = _device(Recording(simulated_backend()), tmp_path)
    assert device.resumed_jobs.released == tuple(keys) and device.resumed_jobs.orphaned == ()
    assert device.ledger.used_shots == 0


def _power_cut(folder: Path) -> None:
    """What a power cut right after the batch's last submit may leave: the fsynced intent
    only (every unsynced record and reservation lost), written in another boot."""
    lines = (folder / "jobs.jsonl").read_text().splitlines()
    intent = json.loads(lines[0])
    assert intent["event"] == "intent"
    intent["boot_id"] = "another-boot"
    (folder / "jobs.jsonl").write_text(json.dumps(intent) + "\n")
    (folder / "jobs_ledger.json").unlink()


def test_a_power_cut_that_lost_the_unsynced_records_counts_the_whole_batch(tmp_path: Path) -> None:
    first = Recording(simulated_backend(), die_at=2, after_run=True)
    with pytest.raises(Kill):
        _device(first, tmp_path).run(_batch(4), SHOTS)
    _power_cut(tmp_path)
    again = Recording(simulated_backend())
    device = _device(again, tmp_path)
    keys = [j["job_key"] for j in _records(tmp_path, "intent")[0]["jobs"]]
    # no record tells which jobs left: every job of the intent may have run (3 did)
    assert device.resumed_jobs.restored == tuple(keys) == device.resumed_jobs.orphaned
    assert device.ledger.used_shots == 4 * SHOTS >= len(first.submitted) * SHOTS
    device.run(_batch(4), SHOTS)
    assert not set(again.submitted) & set(keys)


def test_a_finished_batch_leaves_nothing_to_settle_and_a_lost_confirmation_keeps_the_job_counted(
        tmp_path: Path) -> None:
    device = _device(simulated_backend(), tmp_path)
    device.run(_batch(2), SHOTS)
    keys = [r["job_key"] for r in _records(tmp_path, "completed")]
    resumed = _device(simulated_backend(), tmp_path).resumed_jobs
    assert (resumed.orphaned, resumed.released, resumed.restored, resumed.next_step) == ((), (), (), 1)
    assert all(ShotLedger(tmp_path / "jobs_ledger.json").entry(k).state == DONE for k in keys)  # type: ignore[union-attr]
    # a power cut that lost the completed records (the journal's tail) but not the intent
    # or the submitting records: the jobs ran, so they stay counted, as orphans
    lines = (tmp_path / "jobs.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "jobs.jsonl").write_text("".join(x for x in lines if '"completed"' not in x))
    again = _device(simulated_backend(), tmp_path)
    assert again.resumed_jobs.orphaned == tuple(keys) and again.ledger.used_shots == 2 * SHOTS


# -- single-shot IQ (run_iq) ---------------------------------------------------------------------


def _fake_iq_platform(sigma: float, decay: float) -> Any:
    """qibolab's dummy platform with its controller replaced by one that answers as a real
    instrument does (``AcquisitionType.INTEGRATION``, ``AveragingMode.SINGLESHOT``: an
    (nshots, 2) array of I, Q per acquisition id): Gaussian blobs of width ``sigma``
    around (0, 0) for |0⟩ and (2, 1) for |1⟩ (prepared by any drive pulse), and |1⟩ decaying
    to |0⟩ with probability ``decay`` before the readout."""
    qibolab = pytest.importorskip("qibolab")
    from qibolab._core.instruments.abstract import Controller

    class FakeIQController(Controller):
        address: str = "fake"

        @property
        def sampling_rate(self) -> float:
            return 1.0

        def connect(self) -> None:
            pass

        def disconnect(self) -> None:
            pass

        def play(self, configs: Any, sequences: Any, options: Any, sweepers: Any) -> dict[Any, Any]:
            assert options.acquisition_type is qibolab.AcquisitionType.INTEGRATION
            assert options.averaging_mode is qibolab.AveragingMode.SINGLESHOT
            rng = np.random.default_rng(7)
            out = {}
            for seq in sequences:
                excited = any(isinstance(p, qibolab.Pulse) and "drive" in str(ch) for ch, p in seq)
                for _, acq in seq.acquisitions:
                    ones = excited & (rng.random(options.nshots) >= decay)
                    centre = np.where(ones[:, None], [2.0, 1.0], [0.0, 0.0])
                    out[acq.id] = centre + sigma * rng.standard_normal((options.nshots, 2))
            return out

    platform = qibolab.create_platform("dummy")
    dummy = platform.instruments["dummy"]
    platform.instruments["dummy"] = FakeIQController(channels=dummy.channels)
    return platform


def test_run_iq_classifies_readout_on_a_qibolab_platform_of_real_instruments(tmp_path: Path) -> None:
    from scipy.stats import norm

    from pulsecal.agents.graph.readout import ReadoutClassification
    from pulsecal.hardware.adapters.qibolab import QibolabBackend

    sigma, decay = 0.8, 0.04
    backend = QibolabBackend(_fake_iq_platform(sigma, decay), qubits=[0])
    device = _device(backend, tmp_path)
    assert device.iq_refusal() is None
    r = ReadoutClassification(shots=2000, cheap_shots=500).run(
        device, "q0", {"q0.frequency_hz": device.params.model.mode("q0").frame_hz, "q0.pi_amplitude": 0.5},
        np.random.default_rng(0))
    # the optimal line between the blobs misassigns Φ(-d/2σ) of each; |1⟩ also decays
    overlap = float(norm.cdf(-np.hypot(2.0, 1.0) / (2 * sigma)))
    expected = 1 - 0.5 * (overlap + (overlap * (1 - decay) + (1 - overlap) * decay))
    assert r.status != "bad_data" and abs(r.quality["assignment_fidelity"] - expected) < 0.015
    # every IQ job went through the intent, the guard's reservation and the journal
    completed = _records(tmp_path, "completed")
    assert len(completed) == 2 and all(np.asarray(c["iq"]).shape == (2000, 1, 2) for c in completed)
    assert _records(tmp_path, "intent")[0]["acquisition"] == "iq"
    assert device.ledger.used_shots == 4000 and device.clock_s > 0


def test_run_iq_is_refused_by_name_with_the_reason_on_qibolabs_dummy_and_a_counts_backend(tmp_path: Path) -> None:
    qibolab = pytest.importorskip("qibolab")
    from pulsecal.hardware.adapters.qibolab import QibolabBackend

    dummy = _device(QibolabBackend("dummy", qubits=[0]), tmp_path / "dummy")
    with pytest.raises(ValueError, match=rf"has no run_iq on backend 'qibolab:dummy': qibolab "
                                         rf"{re.escape(qibolab.__version__)}'s dummy platform"):
        dummy.run_iq(_batch(2), SHOTS)
    simulated = _device(simulated_backend(), tmp_path / "sim")
    with pytest.raises(ValueError, match=r"has no run_iq on backend .*discriminated counts only"):
        simulated.run_iq(_batch(1), SHOTS)
    assert not (tmp_path / "dummy" / "jobs.jsonl").exists() and not (tmp_path / "sim" / "jobs.jsonl").exists()


def test_only_the_guard_calls_backend_submit_iq() -> None:
    root = Path(__file__).resolve().parents[2] / "hardware"
    offenders = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py") if p.name != "guard.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if ".submit_iq(" in line.split("#")[0] and "def submit_iq" not in line]
    assert offenders == []


def test_run_iq_on_qibolabs_emulator_is_refused_with_what_its_integration_returns(tmp_path: Path) -> None:
    qibolab = pytest.importorskip("qibolab")
    from pulsecal.agents.graph.readout import ReadoutClassification
    from pulsecal.hardware.adapters.qibolab import qibolab_backend

    device = _device(qibolab_backend("pulsecal_emulator"), tmp_path)
    with pytest.raises(ValueError, match=rf"qibolab {re.escape(qibolab.__version__)}'s emulator answers "
                                         r"AcquisitionType.INTEGRATION with the sampled state as I and Q = 0"):
        ReadoutClassification().run(device, "q0", {"q0.frequency_hz": 5e9, "q0.pi_amplitude": 0.5},
                                    np.random.default_rng(0))
    assert not (tmp_path / "jobs.jsonl").exists()
