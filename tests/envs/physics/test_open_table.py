"""The Chebyshev tables of the open-system kernel for 2, 4, 5 and 6 levels
(``_fast_open_table``): against the Taylor kernel they replace, through the public entry
point, and every way back to the Taylor kernel (small call, unconverged series, amplitude
out of range)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from pulsecal.envs.physics import (
    Transmon,
    _fast_open_levels,
    _fast_open_table,
    fast,
    superoperators,
)
from pulsecal.envs.physics.real_basis import hermitian_basis

from .conftest import random_waveforms

LEVELS = (2, 4, 5, 6)


def _model(rng: np.random.Generator, levels: int, dt_s: float = 1e-9) -> Transmon:
    """A random transmon whose series converges on [0, 1]: drive up to 150 MHz at 1 ns."""
    t1 = float(rng.uniform(1e-6, 100e-6))
    return Transmon(levels=levels, anharmonicity_hz=float(rng.uniform(-400e6, -150e6)),
                    rabi_max_hz=float(rng.uniform(20e6, 150e6)),
                    detuning_hz=float(rng.uniform(-30e6, 30e6)), dt_s=dt_s, t1_s=t1,
                    t2_s=float(rng.uniform(0.2, 2.0)) * t1)


def _taylor(models: list[Transmon], w: np.ndarray, gidx: np.ndarray) -> np.ndarray:
    """The Taylor kernel on the same call, as ``superoperators_real`` runs it without tables."""
    params = [fast._open_params(t) for t in models]
    l0, l1, mu = (np.concatenate(a) for a in zip(*params, strict=True))
    _, rot_j, rot_k, rot_s, rot_a = hermitian_basis(models[0].levels)
    out = np.empty((w.shape[0], l0.shape[1], l0.shape[1]))
    _fast_open_levels.open_kernel(gidx, l0, l1, mu, rot_j, rot_k, rot_s, rot_a,
                                  np.ascontiguousarray(w.real), np.ascontiguousarray(w.imag),
                                  out, all(fast._in_sparsity(t) for t in models))
    return out


@pytest.fixture
def table_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the calls of the table kernel (one entry per call: its batch)."""
    calls: list[int] = []
    kernel = _fast_open_table.table_kernel

    def counted(gidx: np.ndarray, *args: object) -> None:
        calls.append(len(gidx))
        kernel(gidx, *args)

    monkeypatch.setattr(_fast_open_table, "table_kernel", counted)
    yield calls


@pytest.mark.parametrize("levels", LEVELS)
def test_table_matches_taylor_on_random_amplitudes(levels: int) -> None:
    """One sample at real drive, so E(a) itself: the truncated series against the Taylor
    kernel at 40 random amplitudes in [0, 1], on three random models. Measured: 1e-15 to
    1.2e-14, the Taylor values' own rounding (the table tolerance is 1e-14 of c_0)."""
    rng = np.random.default_rng(40 + levels)
    for _ in range(3):
        tr = _model(rng, levels)
        tab = _fast_open_table.table(tr)
        assert tab is not None
        assert 6 <= tab.shape[0] <= _fast_open_table.MAX_TERMS
        a = rng.uniform(0.0, 1.0, 40)
        a[:2] = (0.0, 1.0)
        x = 2.0 * a / _fast_open_table.AMPLITUDE_MAX - 1.0
        cheb = np.polynomial.chebyshev.chebvander(x, tab.shape[0] - 1)
        table_e = np.einsum("bk,kij->bij", cheb, tab)
        taylor_e = _taylor([tr], a[:, None].astype(np.complex128), np.zeros(40, dtype=np.int64))
        # The table has no global gain: E = e^{−μ}·exp(L0 + a·L1) in the Taylor kernel's terms.
        taylor_e *= np.exp(-fast._open_params(tr)[2][0])  # type: ignore[index]
        assert np.max(np.abs(table_e - taylor_e)) < 5e-14


@pytest.mark.parametrize("levels", LEVELS)
def test_table_kernel_matches_taylor_on_random_pulses(levels: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole pulses with random phases (the rotations between samples) through the table
    kernel, on one model and on a model per pulse, 40 pulses (the last SIMD block
    part-filled): the Taylor kernel's superoperators to 3e-13. The per-sample
    differences above add up over 30 samples: measured up to 1.6e-13 on 5 and 6 levels,
    where the Taylor kernel itself is 1e-13 to 2e-13 from per-sample expm."""
    monkeypatch.setitem(_fast_open_table.MIN_SAMPLES, levels, 0)
    rng = np.random.default_rng(400 + levels)
    models = [_model(rng, levels) for _ in range(5)]
    w = random_waveforms(rng, 40, 30)
    w[3] = 1.0
    w[4, 7:] = 0.0
    _, rot_j, rot_k, rot_s, rot_a = hermitian_basis(levels)
    for gidx in (np.zeros(40, dtype=np.int64), rng.integers(0, 5, 40)):
        used = sorted(set(gidx.tolist()))
        uniq = [models[g] for g in used]
        local = np.searchsorted(used, gidx)
        out = np.empty((40, levels**2, levels**2))
        assert _fast_open_table.run(uniq, w, local,
                                    np.concatenate([fast._open_params(t)[2] for t in uniq]),  # type: ignore[index]
                                    (rot_j, rot_k, rot_s, rot_a), out)
        assert np.max(np.abs(out - _taylor(uniq, w, local))) < 3e-13


@pytest.mark.parametrize("levels", LEVELS)
def test_public_entry_point_uses_the_table_and_matches(levels: int,
                                                        table_calls: list[int]) -> None:
    """``superoperators`` on a call big enough for the table: it runs, and agrees with the
    Taylor kernel (1e-13) and per-sample expm (the engine's 1e-11)."""
    rng = np.random.default_rng(4000 + levels)
    tr = _model(rng, levels)
    samples = _fast_open_table.MIN_SAMPLES[levels] // 16
    w = random_waveforms(rng, 16, samples)
    s = superoperators(tr, w)
    assert table_calls == [16]
    real = _taylor([tr], w, np.zeros(16, dtype=np.int64))
    order, coef = fast._gather(hermitian_basis(levels)[0])
    taylor = np.empty(real.shape, dtype=np.complex128)
    _fast_open_levels.to_column_stacking(real, order, coef, taylor)
    assert np.max(np.abs(s - taylor)) < 1e-13
    assert np.max(np.abs(s[:3] - superoperators(tr, w[:3], engine="numpy-reference"))) < 1e-11


@pytest.mark.parametrize("levels", LEVELS)
def test_small_call_runs_the_taylor_kernel_unchanged(levels: int,
                                                      table_calls: list[int]) -> None:
    """Below the break-even the table is neither built nor used, even when it is cached:
    the result is the Taylor kernel's to the bit, and a call takes the same path whatever
    ran before it."""
    rng = np.random.default_rng(7 + levels)
    tr = _model(rng, levels)
    assert _fast_open_table.table(tr) is not None  # cached now
    samples = _fast_open_table.MIN_SAMPLES[levels] // 16 - 1
    w = random_waveforms(rng, 9, samples)  # one part-filled block of 16 lanes
    real = fast.superoperators_real([tr], w)
    assert table_calls == []
    np.testing.assert_array_equal(real, _taylor([tr], w, np.zeros(9, dtype=np.int64)))


def test_same_call_same_bits_with_or_without_a_cached_table(table_calls: list[int]) -> None:
    """The choice depends on the call alone: building the table inside the call or reading
    it from the cache gives the same superoperators to the bit."""
    rng = np.random.default_rng(11)
    tr = _model(rng, 4)
    w = random_waveforms(rng, 32, 20)
    _fast_open_table.table.cache_clear()
    first = fast.superoperators_real([tr], w)
    second = fast.superoperators_real([tr], w)
    assert table_calls == [32, 32]
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("levels", LEVELS)
def test_unconverged_series_has_no_table_and_stays_exact(levels: int,
                                                          table_calls: list[int]) -> None:
    """Strong drive over a long sample (500 MHz at 10 ns): the series needs more terms than
    the table may keep. There is no table, the call runs the Taylor kernel to the bit and
    matches per-sample expm; the truncated series would be far off, so this fails if an
    unconverged table were ever used."""
    tr = Transmon(levels=levels, anharmonicity_hz=-300e6, rabi_max_hz=500e6, dt_s=10e-9,
                  t1_s=20e-6, t2_s=15e-6)
    assert _fast_open_table.table(tr) is None
    l0, l1, _ = fast._open_params(tr)  # type: ignore[misc]
    coef = _fast_open_table.coefficients(
        _fast_open_table.taylor_at_nodes(l0, l1, levels, fast._in_sparsity(tr)))
    norms = np.abs(coef).max(axis=(1, 2))
    assert norms[_fast_open_table.MAX_TERMS] > 1e-10 * norms[0]
    rng = np.random.default_rng(3)
    w = random_waveforms(rng, 32, 40)
    real = fast.superoperators_real([tr], w)
    assert table_calls == []
    np.testing.assert_array_equal(real, _taylor([tr], w, np.zeros(32, dtype=np.int64)))
    assert np.max(np.abs(superoperators(tr, w[:2])
                         - superoperators(tr, w[:2], engine="numpy-reference"))) < 1e-11


def test_one_unconverged_model_sends_the_whole_call_to_taylor(table_calls: list[int]) -> None:
    """A call mixing a model with a table and one without runs the Taylor kernel for all."""
    rng = np.random.default_rng(5)
    good = _model(rng, 4)
    bad = Transmon(levels=4, rabi_max_hz=500e6, dt_s=10e-9, t1_s=20e-6, t2_s=15e-6)
    assert _fast_open_table.table(bad) is None
    w = random_waveforms(rng, 64, 20)
    gidx = np.arange(64, dtype=np.int64) % 2
    real = fast.superoperators_real([good, bad], w, gidx)
    assert table_calls == []
    np.testing.assert_array_equal(real, _taylor([good, bad], w, gidx))


def test_truncation_rule_keeps_every_term_above_the_floor() -> None:
    """``converged_terms`` on a synthetic decay: it keeps exactly the coefficients above
    the tolerance, and refuses a series that is still above it past ``MAX_TERMS``."""
    decay = 2.0 * 10.0 ** -np.arange(_fast_open_table.NODES, dtype=float)
    decay[0] = 1.0
    coef = decay[:, None, None] * np.ones((1, 3, 3))
    assert _fast_open_table.converged_terms(coef) == 15  # c_14 = 2e-14 is the last one kept
    slow = 0.5 ** np.arange(_fast_open_table.NODES, dtype=float)
    assert _fast_open_table.converged_terms(slow[:, None, None] * np.ones((1, 3, 3))) is None
    # A coefficient above the floor after a dip (not yet converged) is kept too.
    bumped = coef.copy()
    bumped[20] = 1e-12
    assert _fast_open_table.converged_terms(bumped) == 21


def test_truncating_a_converged_table_early_is_detectable() -> None:
    """Dropping the last two kept terms of a converged table costs far more than the
    1e-13 the tests above allow: they would catch a table cut short."""
    rng = np.random.default_rng(9)
    tr = _model(rng, 4)
    tab = _fast_open_table.table(tr)
    assert tab is not None
    a = np.linspace(0.0, 1.0, 33)
    x = 2.0 * a / _fast_open_table.AMPLITUDE_MAX - 1.0
    cheb = np.polynomial.chebyshev.chebvander(x, tab.shape[0] - 1)
    full = np.einsum("bk,kij->bij", cheb, tab)
    cut = np.einsum("bk,kij->bij", cheb[:, :-2], tab[:-2])
    assert np.max(np.abs(full - cut)) > 1e-12


def test_amplitude_outside_the_interval_runs_taylor(table_calls: list[int]) -> None:
    """``superoperators_real`` does not validate: a sample with |u| > 1 + slack is outside
    the table's interval, so the Taylor kernel runs."""
    rng = np.random.default_rng(13)
    tr = _model(rng, 4)
    w = random_waveforms(rng, 32, 20)
    w[5, 3] = 1.01
    real = fast.superoperators_real([tr], w)
    assert table_calls == []
    np.testing.assert_array_equal(real, _taylor([tr], w, np.zeros(32, dtype=np.int64)))
