"""Per-qubit sessions on multi-qubit backends: a session of qubit k plays on qubit k's drive
frame, reads qubit k out, and its default envelope allows that frame only — on qibolab
(dummy platform for plumbing, a two-transmon emulator platform for physics) and on the
OpenPulse/Braket adapter (compiled text uses qubit k's frames and passes the semantic pass);
and a ``qubit=0,1`` multirun sweep on the two-qubit emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.envs.calibration import DragGate
from pulsecal.envs.protocol import Play, PulseSequence
from pulsecal.hardware import ir
from pulsecal.hardware.backend import Capabilities
from pulsecal.hardware.guard import GuardedBackend
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.package_data import emulator_platforms_dir
from pulsecal.hardware.replay import ReplaySettings, default_limits, run_session
from pulsecal.hardware.safety import SafetyEnvelope

from .hw_helpers import FakeClock, shipped_qibolab_backend

PLATFORMS = emulator_platforms_dir()
REPO = Path(__file__).resolve().parents[2]


class Recording:
    """Delegates to a backend and records every program the guard compiles."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.compiled: list[ir.Program] = []

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def validate(self, program: ir.Program) -> list[Any]:
        return self.inner.validate(program)

    def compile(self, program: ir.Program) -> Any:
        self.compiled.append(program)
        return self.inner.compile(program)

    def submit(self, artifact: Any, shots: int, job_key: str) -> Any:
        return self.inner.submit(artifact, shots, job_key)

    def find(self, job_key: str) -> Any:
        return self.inner.find(job_key)

    def result(self, handle: Any, timeout_s: float) -> Any:
        return self.inner.result(handle, timeout_s)


def _frames_and_readout(programs: list[ir.Program]) -> tuple[set[str], set[int]]:
    frames = {f.name for p in programs for f in p.frames}
    readout = {ins.qubit for p in programs for ins in p.instructions if isinstance(ins, ir.Acquire)}
    return frames, readout


# -- capabilities ------------------------------------------------------------------------------------


def test_drive_frame_of_a_qubit_and_clear_errors() -> None:
    a = ir.Frame("a_drive", "pa", 5e9)
    b = ir.Frame("b_drive", "pb", 5.2e9)
    caps = Capabilities({"pa": 1e-9, "pb": 1e-9}, (a, b), qubits=(0, 1), drive_frames={0: "a_drive", 1: "b_drive"})
    assert caps.drive_frame(1) == b and caps.drive_frame(0) == a
    with pytest.raises(ValueError, match=r"qubit=2: allowed one of the backend's qubits \(0, 1\)"):
        caps.drive_frame(2)
    with pytest.raises(ValueError, match=r"no drive frame for this qubit"):
        Capabilities({"pa": 1e-9, "pb": 1e-9}, (a, b), qubits=(0, 1)).drive_frame(0)
    with pytest.raises(ValueError, match=r"drive_frames\[1\]='c': allowed a frame of"):
        Capabilities({"pa": 1e-9, "pb": 1e-9}, (a, b), qubits=(0, 1), drive_frames={1: "c"})
    with pytest.raises(ValueError, match=r"drive_frames\[5\]: allowed a qubit of"):
        Capabilities({"pa": 1e-9, "pb": 1e-9}, (a, b), qubits=(0, 1), drive_frames={5: "a_drive"})
    # One frame drives every qubit listed (the simulated backend).
    assert Capabilities({"pa": 1e-9}, (a,), qubits=(0,)).drive_frame(0) == a


def test_replay_settings_carry_the_qubit_and_old_folders_keep_their_settings() -> None:
    s0 = ReplaySettings("s", 0, (0.5, 0.0, 0.0, 0.0))
    assert "qubit" not in s0.to_json()  # folders written before per-qubit sessions resume
    assert ReplaySettings("s", 0, (0.5, 0.0, 0.0, 0.0), qubit=3).to_json()["qubit"] == 3
    with pytest.raises(ValueError, match=r"ReplaySettings.qubit=-1: allowed an integer >= 0"):
        ReplaySettings("s", 0, (0.5, 0.0, 0.0, 0.0), qubit=-1)


# -- Braket / OpenPulse ------------------------------------------------------------------------------


def test_braket_session_programs_for_qubit_1_use_its_frames() -> None:
    pytest.importorskip("braket.pulse")
    from pulsecal.hardware.adapters._openqasm import parse_roundtrip, semantic_check
    from pulsecal.hardware.adapters.openpulse import BraketBackend
    from pulsecal.hardware.device import BackendDevice

    backend = BraketBackend()
    caps = backend.capabilities()
    assert caps.drive_frames == {0: "q0_rf_frame", 1: "q1_rf_frame"}
    limits = default_limits(backend, 1)
    assert [f.name for f in limits.allowed_frames] == ["q1_rf_frame"]
    dev = BackendDevice(backend, limits=limits, ledger=ShotLedger(None, fsync=False),
                        journal=_null_journal(), session_id="b", qubit=1)
    assert dev.frame.name == "q1_rf_frame" and dev.dt_s == backend.dt_s
    gate = DragGate(20e-9)
    x = gate.waveforms(np.array([[0.4, 0.3e-9, 0.0, 0.0]]), backend.dt_s)[0]  # (S,) samples
    seq = PulseSequence((Play(np.asarray(x)), Play(np.asarray(x))))
    program = ir.from_sequence(seq, dev.frame, dev.dt_s, shots=100, qubit=dev.qubit)
    art = backend.compile(program)  # parse round trip + semantic pass + trace, or raise
    text = art.payload.source
    assert "q1_rf_frame" in text and "q1_ro_rx_frame" in text and "q0_" not in text
    assert semantic_check(parse_roundtrip(text), backend.props) == []
    # Qubit 1's envelope refuses qubit 0's frame; qubit 0's default envelope refuses qubit 1's.
    env1 = SafetyEnvelope(limits, caps)
    p0 = ir.from_sequence(seq, caps.drive_frame(0), dev.dt_s, shots=100, qubit=0)
    assert any(v.limit == "allowed_frames" for v in env1.check(p0))
    assert env1.check(program) == []
    assert any(v.limit == "allowed_frames"
               for v in SafetyEnvelope(default_limits(backend, 0), caps).check(program))


def _null_journal() -> Any:
    class _J:
        def append(self, event: str, **fields: Any) -> None:
            pass

    return _J()


# -- qibolab --------------------------------------------------------------------------------------------


def test_session_on_dummy_qubit_3_plays_only_its_frame_and_reads_it(tmp_path: Path) -> None:
    pytest.importorskip("qibolab")
    from pulsecal.hardware.adapters.qibolab import QibolabBackend

    rec = Recording(QibolabBackend("dummy"))
    caps = rec.capabilities()
    assert caps.drive_frames[3] == "q3_drive"
    settings = ReplaySettings("dq3", 0, (0.3, 0.2e-9, 0.0, 0.0), max_steps=1,
                              env={"shots_per_probe": 20, "gate_duration_s": 40e-9}, qubit=3)
    clock = FakeClock()
    r = run_session(rec, ScriptedPolicy(), tmp_path / "s", settings, clock=clock, sleep=clock.sleep,
                    fsync=False, plots=False)
    assert len(r.steps) == 2 and rec.compiled
    assert _frames_and_readout(rec.compiled) == ({"q3_drive"}, {3})
    started = next(x for x in read_journal(tmp_path / "s" / "journal.jsonl") if x["event"] == "session_started")
    assert [f["name"] for f in started["limits"]["allowed_frames"]] == ["q3_drive"]
    assert started["settings"]["qubit"] == 3
    # An envelope that does not allow the session qubit's frame is refused up front.
    with pytest.raises(ValueError, match=r"allowed a set holding qubit 3's drive frame 'q3_drive'"):
        run_session(rec, ScriptedPolicy(), tmp_path / "t", settings, limits=default_limits(rec, 0),
                    fsync=False, plots=False)


@pytest.fixture(scope="module")
def emulator_2q() -> Any:
    pytest.importorskip("qibolab")
    with shipped_qibolab_backend("pulsecal_emulator_2q") as backend:
        yield backend


def test_two_qubit_emulator_drives_and_reads_the_addressed_qubit(emulator_2q: Any) -> None:
    from pulsecal.hardware.adapters.qibolab import emulator_transmon

    state = np.random.get_state()  # noqa: NPY002  (the emulator samples shots from it)
    np.random.seed(7)  # noqa: NPY002
    try:
        caps = emulator_2q.capabilities()
        assert caps.qubits == (0, 1) and caps.drive_frames == {0: "q0_drive", 1: "q1_drive"}
        unit = ir.Gaussian(40e-9, 10e-9, 1.0).samples(1e-9)
        p1: dict[tuple[int, int], float] = {}
        for drive in (0, 1):
            rabi_hz = emulator_transmon(emulator_2q.platform, emulator_2q.platform_qubit(drive)).rabi_max_hz
            amp = 1 / (2 * rabi_hz * float(np.sum(unit.real)) * 1e-9)  # a π pulse on that qubit
            f = caps.drive_frame(drive)
            for read in (0, 1):
                g = GuardedBackend(emulator_2q, default_limits(emulator_2q, drive), ShotLedger(None, fsync=False))
                prog = ir.Program((ir.FramePlay(f.name, ir.Gaussian(40e-9, 10e-9, amp)), ir.Acquire(read)), (f,), 100,
                                  (read,))
                h = g.submit(prog, 100, f"pi-{drive}-{read}")
                p1[drive, read] = g.result(h, 10.0).counts.get("1", 0) / 100
        # A π pulse on qubit k's frame flips qubit k (its readout), not the other one.
        assert p1[0, 0] > 0.9 and p1[1, 1] > 0.9 and p1[0, 1] < 0.1 and p1[1, 0] < 0.1, p1
    finally:
        np.random.set_state(state)  # noqa: NPY002


@pytest.mark.slow
def test_qubit_multirun_sweep_on_the_two_qubit_emulator(tmp_path: Path) -> None:
    """``pulsecal-replay -m backend=qibolab_emulator qubit=0,1``: each session calibrates its
    own qubit (~45 s CPU). The qubits' Rabi rates are 50 and 40 MHz, so the calibrated π
    amplitudes must differ by 50/40: a session driving the wrong qubit could not get that."""
    pytest.importorskip("qibolab")
    env = {**os.environ, "QIBOLAB_PLATFORMS": str(PLATFORMS), "HYDRA_FULL_ERROR": "1"}
    cmd = [sys.executable, "-m", "pulsecal.scripts.replay", "-m", "backend=qibolab_emulator",
           "backend.platform=pulsecal_emulator_2q", "qubit=0,1", "policy=scripted", "max_steps=2", "plots=false",
           f"sweep.dir={tmp_path / 'sweep'}", "sweep.name=emu2q", "sweep.params_store=null", "sweep.plots=false",
           "hydra/launcher=basic"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    rows = {q["qubit"]: q for q in summary["qubits"]}
    assert [rows[q]["status"] for q in (0, 1)] == ["finished", "finished"]
    for q in (0, 1):
        assert rows[q]["estimated_infidelity"] < rows[q]["estimated_infidelity_initial"] / 3
        started = next(x for x in read_journal(tmp_path / "sweep" / f"q{q}" / "journal.jsonl")
                       if x["event"] == "session_started")
        assert [f["name"] for f in started["limits"]["allowed_frames"]] == [f"q{q}_drive"]
    ratio = rows[1]["final_params"]["amplitude"] / rows[0]["final_params"]["amplitude"]
    assert ratio == pytest.approx(50 / 40, rel=0.03)
    day = json.loads((tmp_path / "sweep" / "device_day_ledger.json").read_text())
    assert sum(day["per_day"].values()) == rows[0]["shots"] + rows[1]["shots"]
