"""Flat tops in the fast coupled engine: a run of k identical samples is propagated as one
exponential of the k-fold generator (``fast.merge_runs``). Exact, so checked against the
plain reference (one expm per sample) at 1e-10 on flux, CR + cancellation and direct-drive
pulses, closed and open, runs of 1 to 200 samples, rows with the same and with different
run structures, per-row models, and states through a sequence."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.physics.coupled import CoupledModel, Coupling, Crosstalk, FluxTuning, Mode, fast
from pulsecal.envs.physics.coupled import propagate as prop
from pulsecal.envs.physics.coupled import reference as ref

ATOL = 1e-10


def model(levels: tuple[int, int] = (3, 3), distortion: bool = False) -> CoupledModel:
    """q0 fixed at 4.9 GHz, q1 flux-tunable at 5.3 GHz (optionally with line distortion, which
    smooths a flux plateau so it is no longer a run), J = 6 MHz, CR crosstalk, thermal."""
    flux = FluxTuning(asymmetry=0.3, low_pass_tau_s=1e-9 if distortion else 0.0)
    return CoupledModel((
        Mode("q0", 4.9e9, -300e6, levels=levels[0], t1_s=20e-6, t2_s=15e-6, thermal_population=0.02,
             rabi_max_hz=50e6),
        Mode("q1", 5.3e9, -280e6, levels=levels[1], t1_s=30e-6, t2_s=40e-6, thermal_population=0.01,
             rabi_max_hz=60e6, flux=flux),
    ), (Coupling("q0", "q1", 6e6),), (Crosstalk("q0", "q1", 0.05j),))


def runs(rng: np.random.Generator, lengths: list[int], complex_: bool) -> np.ndarray:
    """Piecewise-constant samples: one random level per run."""
    n = len(lengths)
    vals = rng.uniform(0.05, 0.6, n) * (np.exp(1j * rng.uniform(0, 2 * np.pi, n)) if complex_ else 1.0)
    return np.repeat(vals, lengths)


def run_lengths(rng: np.random.Generator, samples: int) -> list[int]:
    """Random run lengths 1..200 summing to ``samples``, with a run of 1 and a long one."""
    out = [1, min(200, samples // 2)]
    while sum(out) < samples:
        out.append(int(rng.integers(1, 201)))
    out[-1] -= sum(out) - samples
    out = [k for k in out if k > 0]
    rng.shuffle(out)
    return out


def pulses(rng: np.random.Generator, batch: int, samples: int, shared: bool, kind: str) -> dict[str, np.ndarray]:
    """(batch, samples) flat-top controls; ``shared``: every row has the same run boundaries
    (different levels), else each row its own."""
    structure = run_lengths(rng, samples)
    out: dict[str, list[np.ndarray]] = {}
    for _ in range(batch):
        lengths = structure if shared else run_lengths(rng, samples)
        if kind == "flux":
            out.setdefault("flux:q1", []).append(0.25 * runs(rng, lengths, False))
        elif kind == "cr":
            tone = runs(rng, lengths, True)
            out.setdefault("drive:q0@q1", []).append(tone)
            out.setdefault("drive:q1", []).append(-0.2 * tone * np.exp(0.7j))
        else:
            out.setdefault("drive:q1", []).append(0.5 * runs(rng, lengths, True))
    return {k: np.stack(v) for k, v in out.items()}


@pytest.mark.parametrize(("seed", "kind"), [(10, "flux"), (11, "cr"), (12, "drive")])
@pytest.mark.parametrize("shared", [True, False])
def test_closed_flat_tops_match_the_reference(seed, kind, shared):
    rng = np.random.default_rng([seed, shared])
    m = model()
    c = pulses(rng, 4, 400, shared, kind)
    np.testing.assert_allclose(fast.unitaries(m, c), ref.unitaries(m, c), atol=ATOL, rtol=0)


@pytest.mark.parametrize(("seed", "kind"), [(20, "flux"), (21, "cr"), (22, "drive")])
@pytest.mark.parametrize("shared", [True, False])
def test_open_flat_tops_match_the_reference(seed, kind, shared):
    # 2 × 2 levels keeps the reference's per-sample 16 × 16 expm cheap; 3 × 3 is the slow test.
    rng = np.random.default_rng([seed, shared])
    m = model((2, 2))
    c = pulses(rng, 3, 300, shared, kind)
    np.testing.assert_allclose(fast.superoperators(m, c), ref.superoperators(m, c), atol=ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flux", "cr"])
def test_open_flat_tops_match_the_reference_three_levels(kind):
    rng = np.random.default_rng(7)
    m = model()
    c = pulses(rng, 2, 300, False, kind)
    np.testing.assert_allclose(fast.superoperators(m, c), ref.superoperators(m, c), atol=ATOL, rtol=0)


def test_runs_are_merged_per_row_and_padded_with_identities():
    # Row 0: one run of 5; row 1: runs 2, 1, 2; row 2: runs 2, 3. Padding steps are all-zero.
    coef = np.zeros((3, 5, 2))
    coef[:, :, 0] = 1.0
    coef[0, :, 1] = 0.5
    coef[1, :, 1] = [0.0, 0.0, 1.0, 2.0, 2.0]
    coef[2, :, 1] = [-1.0, -1.0, 2.0, 2.0, 2.0]
    got = fast.merge_runs(coef)
    np.testing.assert_array_equal(got[0], [[5.0, 2.5], [0, 0], [0, 0]])
    np.testing.assert_array_equal(got[1], [[2.0, 0.0], [1.0, 1.0], [2.0, 4.0]])
    np.testing.assert_array_equal(got[2], [[2.0, -2.0], [3.0, 6.0], [0, 0]])
    shared = np.repeat(np.array([[[1.0, 0.1]], [[1.0, 0.2]]]), 4, axis=1)  # (2, 4, 2): rows constant
    assert fast.merge_runs(shared).shape == (2, 1, 2)
    no_runs = np.stack([np.ones(5), np.arange(5.0)], axis=1)[None]
    assert fast.merge_runs(no_runs) is no_runs


def test_a_pulse_without_runs_is_unchanged(monkeypatch):
    # Every sample differs: merging must not alter anything (the same kernels on the same
    # steps), closed and open, one model and per-row models.
    rng = np.random.default_rng(3)
    m = model()
    c = {"flux:q1": rng.uniform(-0.2, 0.2, (4, 30)),
         "drive:q0@q1": 0.4 * np.exp(1j * rng.uniform(0, 6.3, (4, 30)))}
    rows = [m.replace_mode("q1", frequency_hz=5.3e9 + 10e6 * b) for b in range(4)]
    merged = [fast.unitaries(m, c), fast.superoperators(m, c), fast.unitaries(rows, c)]
    monkeypatch.setattr(fast, "merge_runs", lambda coef: coef)
    plain = [fast.unitaries(m, c), fast.superoperators(m, c), fast.unitaries(rows, c)]
    for a, b in zip(merged, plain, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)


def test_runs_agree_with_the_per_sample_path_of_the_same_engine(monkeypatch):
    rng = np.random.default_rng(4)
    m = model()
    c = pulses(rng, 16, 250, False, "cr") | pulses(rng, 16, 250, True, "flux")
    merged = fast.superoperators(m, {k: v[:2] for k, v in c.items()}), fast.unitaries(m, c)
    monkeypatch.setattr(fast, "merge_runs", lambda coef: coef)
    plain = fast.superoperators(m, {k: v[:2] for k, v in c.items()}), fast.unitaries(m, c)
    for a, b in zip(merged, plain, strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


def test_substepped_pulses_are_not_merged(monkeypatch):
    # Two frame frequencies: the Hamiltonian turns within a sample, so equal samples are not
    # equal steps; the engine must not reach merge_runs at all.
    m = model()
    c = {"drive:q0@q1": np.full(6, 0.3 + 0j), "drive:q0": np.full(6, 0.1 + 0j)}
    want = ref.unitaries(m, c)

    def refuse(coef: np.ndarray) -> np.ndarray:
        raise AssertionError("merge_runs called on a substepped pulse")

    monkeypatch.setattr(fast, "merge_runs", refuse)
    np.testing.assert_allclose(fast.unitaries(m, c), want, atol=1e-10, rtol=0)


def test_distorted_flux_plateau_stays_exact():
    # The line's low-pass turns a plateau into an exponential approach: few samples are
    # exactly equal, so few merge, and the result is still the reference's.
    rng = np.random.default_rng(5)
    m = model(distortion=True)
    c = pulses(rng, 4, 200, True, "flux")
    np.testing.assert_allclose(fast.unitaries(m, c), ref.unitaries(m, c), atol=ATOL, rtol=0)


def test_per_row_models_and_states_through_flat_tops():
    rng = np.random.default_rng(6)
    m = model((2, 3))
    rows = [m.replace_mode("q1", frequency_hz=5.3e9 + 15e6 * b) for b in range(3)]
    c = pulses(rng, 3, 240, False, "cr") | pulses(rng, 3, 240, False, "flux")
    np.testing.assert_allclose(prop.unitaries(rows, c), prop.unitaries(rows, c, engine="numpy-reference"),
                               atol=ATOL, rtol=0)
    segments = [c, prop.Idle(30e-9), prop.FramePhase("q1", rng.uniform(0, 6.3, 3)), {"drive:q1": c["drive:q1"]}]
    np.testing.assert_allclose(prop.evolve_states(rows, segments),
                               prop.evolve_states(rows, segments, engine="numpy-reference"), atol=ATOL, rtol=0)
