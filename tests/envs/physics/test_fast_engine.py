"""The numba engine itself: extreme parameters, batch shapes, generated code, cache fallback."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.physics import (
    Transmon,
    _fast_codegen,
    gate_fidelity,
    jit,
    superoperators,
    unitaries,
)

from .conftest import random_waveforms


@pytest.mark.parametrize("levels", [2, 3, 4, 5, 6])
@pytest.mark.parametrize(
    "params",
    [
        {"anharmonicity_hz": -400e6, "rabi_max_hz": 500e6, "detuning_hz": 50e6, "dt_s": 3e-9},
        {"anharmonicity_hz": -120e6, "rabi_max_hz": 20e6, "detuning_hz": -1e3, "dt_s": 0.1e-9},
        {"anharmonicity_hz": -300e6, "rabi_max_hz": 100e6, "detuning_hz": 0.0, "dt_s": 1e-9,
         "t1_s": 0.5e-6, "t2_s": 0.2e-6},
    ],
    ids=["strong", "weak", "lossy"],
)
def test_matches_reference_across_parameter_space(levels: int, params: dict) -> None:
    tr = Transmon(levels=levels, **params)
    w = random_waveforms(np.random.default_rng(levels), 21, 20)
    w[0] = 1.0  # full scale throughout
    w[1] = 0.0  # idle
    u = unitaries(tr, w)
    u_ref = unitaries(tr, w, engine="numpy-reference")
    assert np.max(np.abs(u - u_ref)) < 1e-11
    f = gate_fidelity(u, "X", kind="unitary")
    assert np.max(np.abs(f - gate_fidelity(u_ref, "X", kind="unitary"))) < 1e-12
    s = superoperators(tr, w)
    s_ref = superoperators(tr, w, engine="numpy-reference")
    assert np.max(np.abs(s - s_ref)) < 1e-11


@pytest.mark.parametrize("batch", [1, 7, 15, 16, 17, 33])
def test_batch_sizes_around_the_simd_block(batch: int) -> None:
    tr = Transmon()
    w = random_waveforms(np.random.default_rng(batch), batch, 9)
    assert np.max(np.abs(unitaries(tr, w) - unitaries(tr, w, engine="numpy-reference"))) < 1e-12
    s = superoperators(tr, w)
    assert np.max(np.abs(s - superoperators(tr, w, engine="numpy-reference"))) < 1e-12


def test_single_pulse_shapes() -> None:
    tr = Transmon()
    assert unitaries(tr, np.zeros(5)).shape == (3, 3)
    assert superoperators(tr, np.zeros(5)).shape == (9, 9)
    assert unitaries(tr, np.zeros((4, 5))).shape == (4, 3, 3)


def test_generated_kernel_is_up_to_date() -> None:
    from pathlib import Path

    path = Path(_fast_codegen.__file__).with_name("_fast_mm9.py")
    assert path.read_text() == _fast_codegen.module_source(), (
        "regenerate with: python -m pulsecal.envs.physics._fast_codegen"
    )


def test_jit_works_without_a_writable_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    real = numba.njit

    def no_cache(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", no_cache)

    def f(x: float) -> float:
        return 2.0 * x

    with pytest.warns(RuntimeWarning, match="numba cache unavailable"):
        g = jit.jit(f)
    assert g(1.5) == 3.0


@pytest.mark.parametrize(
    ("levels", "anharmonicity_hz", "rabi_max_hz", "samples", "seed"),
    [
        (4, -259999998.0, 5e6, 14, 0),  # found by the property test: 1.08e-12 before
        (5, -400e6, 100e6, 24, 5),  # drift energies 0, 0, α, 3α, 6α: ~40 rad per sample
        (6, -400e6, 5e6, 24, 6),
    ],
)
def test_closed_kernel_stays_unitary_with_many_squarings(
        levels: int, anharmonicity_hz: float, rabi_max_hz: float, samples: int, seed: int) -> None:
    """Strong anharmonicity on many levels at dt = 4 ns makes ||H·dt|| tens of rad, so the
    general-N kernel squares 4-6 times; squaring cos/sin as 2C² − I grows the unitarity
    error up to 4x per squaring (the first case reached 1.08e-12), squaring C − iS as a
    unitary 2x. The deeper cases guard the Gershgorin shift, which alone moved such
    errors around (up to 3e-12 on 5 levels) instead of bounding them."""
    tr = Transmon(levels=levels, anharmonicity_hz=anharmonicity_hz, rabi_max_hz=rabi_max_hz,
                  detuning_hz=40e6 if levels == 5 else 0.0, dt_s=4e-9)
    w = random_waveforms(np.random.default_rng(seed), 5, samples)
    u = unitaries(tr, w)
    assert np.max(np.abs(u @ np.swapaxes(u.conj(), 1, 2) - np.eye(levels))) < 3e-13
    assert np.max(np.abs(u - unitaries(tr, w, engine="numpy-reference"))) < 1e-10


def test_cached_dissipator_is_the_textbook_sum_to_the_bit() -> None:
    """``model.lindbladians`` reuses one dissipator per (levels, T1, Tφ); it must equal the
    sum written with ``np.kron`` exactly, so that every engine sees the same generator."""
    from pulsecal.envs.physics import collapse_operators, lindbladians
    from pulsecal.envs.physics.model import hamiltonians_rad_s

    for t in (Transmon(levels=2), Transmon(levels=3, t1_s=30e-6, t2_s=20e-6),
              Transmon(levels=4, t1_s=50e-6, t2_s=100e-6)):
        n = t.levels
        eye = np.eye(n, dtype=np.complex128)
        diss = np.zeros((n * n, n * n), dtype=np.complex128)
        for c in collapse_operators(t):
            cdc = c.conj().T @ c
            diss += np.kron(c.conj(), c) - 0.5 * np.kron(eye, cdc) - 0.5 * np.kron(cdc.T, eye)
        w = np.array([0.0, 0.3 - 0.2j])
        h = hamiltonians_rad_s(t, w)
        gen = -1j * (np.stack([np.kron(eye, x) for x in h]) - np.stack([np.kron(x.T, eye) for x in h]))
        np.testing.assert_array_equal(lindbladians(t, w), gen + diss)


def test_generated_level_kernels_are_up_to_date() -> None:
    from pathlib import Path

    from pulsecal.envs.physics import _fast_levels_codegen

    path = Path(_fast_levels_codegen.__file__).with_name("_fast_levels.py")
    assert path.read_text() == _fast_levels_codegen.module_source(), (
        "regenerate with: python -m pulsecal.envs.physics._fast_levels_codegen"
    )


def _random_transmon(rng: np.random.Generator, levels: int, dt_s: float) -> Transmon:
    """A transmon anywhere in the range the engine serves: weak to strong drive relative to
    the anharmonicity, detuned, lossy to nearly closed."""
    t1 = float(rng.uniform(0.5e-6, 100e-6))
    return Transmon(levels=levels, anharmonicity_hz=float(rng.uniform(-400e6, -100e6)),
                    rabi_max_hz=float(rng.uniform(20e6, 300e6)),
                    detuning_hz=float(rng.uniform(-50e6, 50e6)),
                    dt_s=dt_s, t1_s=t1,
                    t2_s=float(rng.uniform(0.2, 2.0)) * t1)


@pytest.mark.parametrize("levels", [2, 3, 4, 5, 6])
def test_level_kernels_match_reference_on_random_transmons_per_row(levels: int) -> None:
    """Each of 19 pulses (more than one SIMD block, the last one part-filled) on its own
    random transmon, plus a batch on one of them: the generated kernels of every level
    count against per-sample eigh / expm."""
    rng = np.random.default_rng(100 + levels)
    dt_s = float(rng.uniform(0.1e-9, 3e-9))
    rows = tuple(_random_transmon(rng, levels, dt_s) for _ in range(19))
    w = random_waveforms(rng, 19, 12)
    w[3] = 1.0
    w[4, 5:] = 0.0
    for t in (rows, rows[0]):
        u = unitaries(t, w)
        assert np.max(np.abs(u - unitaries(t, w, engine="numpy-reference"))) < 1e-11
        assert np.max(np.abs(u @ np.swapaxes(u.conj(), 1, 2) - np.eye(levels))) < 1e-12
        s = superoperators(t, w)
        assert np.max(np.abs(s - superoperators(t, w, engine="numpy-reference"))) < 1e-11


@pytest.mark.parametrize("levels", [2, 4, 5, 6])
def test_open_level_kernel_sparse_products_equal_dense(levels: int) -> None:
    """The powers of X read only its structural non-zeros when every model lies in the
    pattern (all transmons do); the dense products, the fallback for a model that does
    not, give the same superoperators."""
    from pulsecal.envs.physics import _fast_open_levels, fast
    from pulsecal.envs.physics.real_basis import hermitian_basis

    rng = np.random.default_rng(levels)
    tr = _random_transmon(rng, levels, 2e-9)
    assert fast._in_sparsity(tr)
    l0, l1, mu = fast._open_params(tr)  # type: ignore[misc]
    w = random_waveforms(rng, 5, 8)
    _, rot_j, rot_k, rot_s, rot_a = hermitian_basis(levels)
    outs = []
    for sparse in (True, False):
        out = np.empty((5, levels**2, levels**2))
        _fast_open_levels.open_kernel(np.zeros(5, dtype=np.int64), l0, l1, mu, rot_j, rot_k,
                                      rot_s, rot_a, np.ascontiguousarray(w.real),
                                      np.ascontiguousarray(w.imag), out, sparse)
        outs.append(out)
    assert np.max(np.abs(outs[0] - outs[1])) < 1e-13
    ref = fast.superoperators_real([tr], w)
    assert ref is not None
    np.testing.assert_array_equal(outs[0], ref)


def test_general_kernels_serve_seven_levels() -> None:
    """7 to 12 levels have no generated kernels: the general-N ones in fast.py run them."""
    rng = np.random.default_rng(7)
    tr = _random_transmon(rng, 7, 1e-9)
    w = random_waveforms(rng, 3, 6)
    assert np.max(np.abs(unitaries(tr, w) - unitaries(tr, w, engine="numpy-reference"))) < 1e-11
    s = superoperators(tr, w)
    assert np.max(np.abs(s - superoperators(tr, w, engine="numpy-reference"))) < 1e-11
