"""CZ calibration sessions on qibolab's emulator (``pulsecal_emulator_2q_cz``): the shipped
platform is two_transmons_cz's nominal model, the session's wiring and envelope on it, the
scripted session's CZ error re-measured from the emulator's counts, a real subprocess
killed mid-session and resumed, and the ``pulsecal-replay`` config (docs/lab_sessions.md,
"CZ sessions on qibolab's emulator")."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qibolab")

from hw_helpers import numpy_global_seed
from replay_2q_emulator_worker import START, KeySeeded, session, settings
from replay_2q_kill import check_resumed_journal, journal_lines, kill_twice

from pulsecal.agents.pipelines.replay_outcome import exit_code
from pulsecal.agents.policies import ScriptedCZPolicy
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.replay.cz_error import measured_cz_error
from pulsecal.hardware.replay.two_qubit import (
    run_two_qubit_session,
    session_channels,
    two_qubit_limits,
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[KeySeeded]:
    # Its jobs seed NumPy's global generator: put it back for the tests after these.
    with numpy_global_seed(0):
        yield KeySeeded()


def test_the_cz_platform_is_two_transmons_cz_nominal_model(emulator: KeySeeded) -> None:
    platform = emulator.inner.platform
    ham = platform.config("hamiltonian")
    model = get_multi_qubit_preset("two_transmons_cz").params.model
    modes = {m.name: m for m in model.modes}
    for q, name in ((0, "q0"), (1, "q1")):
        mode, qubit = modes[name], ham.qubits[q]
        assert qubit.frequency == mode.frequency_hz and qubit.anharmonicity == mode.anharmonicity_hz
        assert qubit.t1[(0, 1)] == pytest.approx(mode.t1_s * 1e9) and qubit.t2[(0, 1)] == pytest.approx(mode.t2_s * 1e9)
        assert qubit.t1[(1, 2)] == pytest.approx(qubit.t1[(0, 1)] / 2)
        assert platform.config(platform.qubits[q].drive).rabi_frequency == mode.rabi_max_hz
        assert platform.config(platform.qubits[q].drive).frequency == mode.frequency_hz
    assert next(iter(ham.pairs.values())).coupling == model.couplings[0].j_hz
    # The emulator's SQUID formula is the preset's frequency_at across the CZ's flux range.
    for phi in (0.0, 0.05, 0.1533, 0.2, 0.3):
        assert ham.qubits[1].detuned_frequency(phi) == pytest.approx(modes["q1"].frequency_at(phi), rel=1e-12)
    assert platform.qubits[0].flux is None and platform.qubits[1].flux is not None
    assert {c: f.name for c, f in session_channels(emulator.capabilities()).items()} == {
        "drive:q0": "q0_drive", "drive:q1": "q1_drive", "flux:q1": "q1_flux"}


def test_a_flux_pulse_over_the_limit_stops_the_emulator_session_before_any_flux_job(tmp_path: Path,
                                                                                   emulator: KeySeeded) -> None:
    folder = tmp_path / "flux"
    limits = two_qubit_limits(emulator, max_flux_amplitude=0.1)
    before = emulator.executed_shots
    result = run_two_qubit_session(emulator, ScriptedCZPolicy(), folder, settings(), limits=limits, fsync=False)
    assert result.stop is not None and result.stop.reason == "safety_refused" and exit_code(result) == 5
    assert result.stop.env_step == 0 and "q1_flux" in result.stop.detail
    # Only the seven reference sequences (no flux pulse) reached the emulator.
    assert emulator.executed_shots - before == result.ledger_shots == 7 * 400
    started = next(r for r in read_journal(folder / "journal.jsonl") if r["event"] == "session_started")
    assert started["channels"] == ["drive:q0", "drive:q1", "flux:q1"]
    rep = json.loads((folder / "report.json").read_text())
    assert rep["outcome"] == "safety_refused" and rep["backend"]["name"] == "qibolab:pulsecal_emulator_2q_cz"
    assert "truth_initial" not in rep  # the emulator's state is not pulsecal's to report


def test_measured_cz_error_names_a_bad_input(emulator: KeySeeded) -> None:
    with pytest.raises(ValueError, match=r"params=.*allowed 4 finite numbers"):
        measured_cz_error(emulator, [0.15, 52e-9, 0.0], 100)
    with pytest.raises(ValueError, match=r"shots=0: allowed an integer in \[1, 1000000\]"):
        measured_cz_error(emulator, START, 0)


def test_emulator_seed_makes_the_emulators_counts_repeat() -> None:
    from pulsecal.envs import cz_calibration_core as core
    from pulsecal.hardware.adapters.qibolab import qibolab_backend
    from pulsecal.hardware.guard import GuardedBackend
    from pulsecal.hardware.ledger import ShotLedger
    from pulsecal.hardware.program_compiler import from_sequence

    seq = core.probe_sequences(core.CZPulse(), np.asarray(START))[6]  # |11⟩, one CZ: mostly leaked

    def counts(seed: int | None) -> dict[str, int]:
        b = qibolab_backend("pulsecal_emulator_2q_cz", emulator_seed=seed)
        g = GuardedBackend(b, two_qubit_limits(b), ShotLedger(None, fsync=False))
        prog = from_sequence(seq, session_channels(b.capabilities()), b.dt_s, shots=500)
        return dict(g.result(g.submit(prog, 500, "seeded"), 60.0).counts)

    with numpy_global_seed(0):
        first, again, other = counts(5), counts(5), counts(6)
    assert first == again and first != other and 0 < first["01"] < 500, (first, other)
    with pytest.raises(ValueError, match=r"emulator_seed=-1: allowed None or an integer in \[0, 2\*\*32\)"):
        qibolab_backend("pulsecal_emulator_2q_cz", emulator_seed=-1)


@pytest.mark.slow  # six steps on the emulator and 30 probes at 20,000 shots: ~2.5 min under load
def test_the_scripted_session_improves_the_emulators_measured_cz_error_5x(tmp_path: Path) -> None:
    with numpy_global_seed(11):
        result, b = session(tmp_path / "s", fsync=False)
        np.random.seed(11)  # noqa: NPY002  (the re-measurement's shots, on the plain backend)
        start = measured_cz_error(b.inner, result.steps[0].params, 20_000)
        final = measured_cz_error(b.inner, result.steps[-1].params, 20_000)
    assert result.stop is None and len(result.steps) == 7
    assert result.ledger_shots == b.executed_shots == 14_000
    assert start.cz_error > 0.5 and start.leakage > 0.3  # 5 mΦ0 past the crossing: most of |11⟩ is in |02⟩
    assert final.cz_error < start.cz_error / 5, (start, final)
    assert final.leakage < 0.01 and final.conditional_phase_error_rad < 0.3, final


@pytest.mark.slow  # an uninterrupted 3-step session and a killed one on the emulator: ~2.5 min under load
def test_a_killed_emulator_cz_session_resumes_to_the_same_gate(tmp_path: Path) -> None:
    with numpy_global_seed(0):
        ref, _ = session(tmp_path / "ref", max_steps=3, fsync=False)
    folder = tmp_path / "killed"
    kills = kill_twice("replay_2q_emulator_worker.py", folder, journal_lines(tmp_path / "ref" / "journal.jsonl"), "3")
    assert kills == 2  # both kills landed mid-session
    with numpy_global_seed(0):
        result, _ = session(folder, max_steps=3)
    assert result.resumed and result.stop is None
    # Re-run jobs sample as they did the first time (KeySeeded), so the gates agree exactly.
    assert result.steps[-1].params == ref.steps[-1].params
    check_resumed_journal(folder, env_steps=3, device_calls=5, ref_ledger_shots=ref.ledger_shots,
                          max_in_flight=8 * kills)


@pytest.mark.slow  # one step through pulsecal-replay on the emulator: ~40 s
def test_pulsecal_replay_runs_the_emulator_cz_session_and_exits_5_on_a_flux_refusal(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("pulsecal-replay")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), "replay_experiment=cz_session_emulator", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)

    ok = run("max_steps=1")
    assert ok.returncode == 0, ok.stderr
    assert "session cz_emulator: 1 steps, 6000 shots" in ok.stdout
    rep = json.loads((tmp_path / "runs/replay/cz_emulator/report.json").read_text())
    assert rep["backend"]["name"] == "qibolab:pulsecal_emulator_2q_cz" and rep["outcome"] == "finished"
    assert math.isfinite(rep["estimated_infidelity_final"])
    refused = run("session_id=flux", "+backend.limits.max_flux_amplitude=0.1")
    assert refused.returncode == 5, refused.stderr
    assert "max_flux_amplitude=0.1583, allowed <= 0.1" in refused.stderr
