"""The verdict of a replay session: verification jobs through the guard, the ledger and the
journal, in report.json/report.md and the exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hw_helpers import FakeClock

from pulsecal.agents.pipelines.replay_outcome import EXIT_CODES, exit_code, outcome_line
from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.envs.verification import VerificationSettings
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.replay import (
    ReplaySettings,
    miscalibrated_start,
    run_session,
    simulated_backend,
    simulated_truth,
)

GATE_S = 20e-9
ENV_SHOTS = 6 * 50 * 7  # the reset and 6 steps of 6 probes × 50 shots
# One stage of the default (trusted) verification and its RB cross-check.
VERIFY = VerificationSettings().shots + VerificationSettings().rb_check_shots


def _settings(budget_shots: int | None = None, session: str = "v1", **changes: object) -> ReplaySettings:
    b = simulated_backend(seed=3)
    t = b.device.current_transmon()
    start = miscalibrated_start(t, GATE_S, amplitude_rel=0.04, beta_rel=0.4, detuning_hz=0.5e6)
    args: dict[str, object] = {"verification": {}, "stated_coherence": (t.t1_s, min(t.t2_s, 2 * t.t1_s))}
    args.update(changes)
    return ReplaySettings(session, 3, tuple(start.as_array()), max_steps=6, budget_shots=budget_shots,  # type: ignore[arg-type]
                          env={"shots_per_probe": 50, "shot_budget": 100_000}, **args)  # type: ignore[arg-type]


def _run(folder: Path, settings: ReplaySettings, fault_rate: float = 0.0):
    backend = simulated_backend(seed=settings.seed, fault_rate=fault_rate, idempotent_submit=False)
    clock = FakeClock()
    result = run_session(backend, ScriptedPolicy(), folder, settings, clock=clock, sleep=clock.sleep,
                         fsync=False, truth=simulated_truth(backend, GATE_S), plots=False)
    return result, backend


def test_a_verified_session_reports_its_verdict_and_pays_its_shots_through_the_ledger(tmp_path: Path) -> None:
    result, _ = _run(tmp_path / "s", _settings())
    v = result.verdict
    assert v is not None and v.calibrated, v.describe()
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep["verdict"]["status"] == "calibrated" and rep["verdict"]["reason"] is None
    lo, hi = rep["verdict"]["error_interval"]
    assert lo <= rep["verdict"]["error_estimate"] <= hi <= 1.5 * rep["verdict"]["coherence_limit"]
    # The truth (simulated backend) is below the threshold the verdict vouches for.
    assert 1 - rep["truth"]["final"]["fidelity"] <= 1.5 * rep["verdict"]["coherence_limit"]
    # The checks ran on the backend as jobs of the session: in the ledger and the journal.
    assert result.ledger_shots == ENV_SHOTS + VERIFY
    done = [r for r in read_journal(tmp_path / "s" / "journal.jsonl") if r["event"] == "run_done"]
    assert sum(int(r["shots"]) * len(r["program_hashes"]) for r in done) == ENV_SHOTS + VERIFY
    # After the 7 calls of the calibration: the readout references, the amplitude and DRAG
    # checks, the pole and equator identity trains, the Ramsey checks (both quadratures) in
    # 4 batches; one stage (the verdict is clear); then the RB cross-check in 4 batches.
    s = VerificationSettings()
    nb = s.noise_batches
    assert [(len(r["program_hashes"]), r["shots"]) for r in done[7:]] == [
        (2, s.reference_shots), (8, s.shots_per_check), (4, s.trains_shots)] + [
        (8, s.shots_per_check // nb)] * nb + [(2 * s.rb_sequences // nb, s.rb_shots)] * nb
    md = (tmp_path / "s" / "report.md").read_text()
    assert "- outcome: finished — verdict calibrated: 1−F = " in md
    assert exit_code(result) == EXIT_CODES["finished"]
    assert "; verdict calibrated: " in outcome_line(result)


def _truncate_journal(src: Path, dst: Path, keep: int) -> None:
    dst.mkdir()
    lines = (src / "journal.jsonl").read_bytes().split(b"\n")
    (dst / "journal.jsonl").write_bytes(b"\n".join(lines[:keep]) + b"\n")
    (dst / "session.json").write_bytes((src / "session.json").read_bytes())


def test_a_session_resumed_inside_its_verification_spends_its_shots_once(tmp_path: Path) -> None:
    settings = _settings()
    ref, _ = _run(tmp_path / "ref", settings)
    lines = (tmp_path / "ref" / "journal.jsonl").read_text().splitlines()
    # Cut right after the first verification call (the references) finished.
    keep = [i for i, line in enumerate(lines) if '"run_done"' in line][7] + 1
    _truncate_journal(tmp_path / "ref", tmp_path / "cut", keep)
    resumed, backend = _run(tmp_path / "cut", settings)
    assert resumed.resumed and resumed.verdict == ref.verdict
    # Only the calls after it (8 amplitude and DRAG checks × 32 shots, 4 trains × 256, the 8
    # Ramsey checks in 4 batches, the RB cross-check's 32 sequences) ran on the fresh backend
    # and into the fresh ledger (the cut folder has the journal, not the ledger file).
    s = VerificationSettings()
    assert backend.stats.executions == 8 + 4 + 8 * s.noise_batches + 2 * s.rb_sequences
    assert resumed.ledger_shots == (8 * s.shots_per_check + 4 * s.trains_shots + 8 * s.shots_per_check
                                    + s.rb_check_shots) == VERIFY - 2 * s.reference_shots
    assert ref.ledger_shots == ENV_SHOTS + VERIFY
    assert json.loads((tmp_path / "cut" / "report.json").read_text())["verdict"] == ref.verdict.to_dict()


def test_a_failed_verdict_is_reported_with_its_reason_and_exit_code(tmp_path: Path) -> None:
    # The ledger's budget leaves the verification 100 shots: it runs nothing and fails.
    result, _ = _run(tmp_path / "s", _settings(budget_shots=ENV_SHOTS + 100))
    assert result.stop is None and result.verdict is not None
    assert result.verdict.reason == "budget_too_small" and result.ledger_shots == ENV_SHOTS
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep["verdict"]["status"] == "failed" and rep["verdict"]["reason"] == "budget_too_small"
    assert rep["outcome"] == "finished"
    assert "- outcome: finished — **verdict failed: budget_too_small" in (tmp_path / "s" / "report.md").read_text()
    assert exit_code(result) == EXIT_CODES["verdict_failed"] == 8
    assert "; verdict failed: budget_too_small" in outcome_line(result)


def test_a_stale_t1_fails_as_decay_faster_than_coherence(tmp_path: Path) -> None:
    t = simulated_backend(seed=3).device.current_transmon()
    result, _ = _run(tmp_path / "s", _settings(stated_coherence=(20 * t.t1_s, 20 * min(t.t2_s, 2 * t.t1_s))))
    assert result.verdict is not None and result.verdict.reason == "decay_faster_than_coherence"
    assert exit_code(result) == EXIT_CODES["verdict_failed"]


def test_verification_settings_are_checked_and_left_out_of_session_json_when_unset() -> None:
    with pytest.raises(ValueError, match="stated_coherence"):
        _settings(stated_coherence=None)
    with pytest.raises(ValueError, match="shots_per_chek"):
        _settings(verification={"shots_per_chek": 8})
    with pytest.raises(ValueError, match="t2_s"):
        _settings(stated_coherence=(1e-4, 3e-4))
    plain = _settings(verification=None, stated_coherence=None).to_json()
    assert "verification" not in plain and "stated_coherence" not in plain
    assert _settings().to_json()["verification"] == {}


def test_the_console_config_runs_a_verified_session(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_module

    from pulsecal.agents.pipelines.replay import replay

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        cfg = compose(config_name="replay", overrides=["backend=simulated", "policy=scripted",
                                                       f"folder={tmp_path / 'c'}", "max_steps=3",
                                                       "verify=true", "plots=false"])
    result = replay(cfg)
    assert result.verdict is not None and result.report["verdict"]["status"] in ("calibrated", "failed")
    assert result.ledger_shots == result.report["env_shots"] + result.verdict.shots_used
    # Three steps leave an amplitude residual near the threshold (1.8× the limit): one stage
    # cannot put its interval above it, the second (pooled) does; a failed gate runs no RB.
    assert result.verdict.reason == "residual_error"
    assert result.verdict.shots_used == 2 * VerificationSettings().shots
