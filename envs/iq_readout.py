"""Single-shot dispersive readout in the IQ plane, and the optimal discriminator it admits.

A lab does not see counts: each shot of a dispersive readout is one point (I, Q), the
integrated resonator signal, and a discriminator turns points into outcomes. This module
is that layer for the simulated multi-qubit device (``SimulatedMultiQubitDevice.run_iq``;
docs/readout.md):

- per qubit, a blob centre for each of |0⟩, |1⟩, |2⟩ and one isotropic Gaussian noise σ
  per quadrature (``IQQubit``; ``IQQubit.from_snr`` with SNR = |c1 − c0| / σ);
- an integration window τ during which the qubit relaxes: level k decays to k − 1 at rate
  k / T1 (the harmonic-oscillator scaling a transmon's Γ21 ≈ 2·Γ10 follows), so a shot's
  noiseless point is the time-average of the centres it visited, Σ_k f_k c_k with f_k the
  fraction of τ spent in level k — a |1⟩ that decays at t lands on the segment between
  c1 and c0 at (t/τ) c1 + (1 − t/τ) c0;
- readout crosstalk (``IQCrosstalk``): a measured neighbour's excitation shifts a
  qubit's point by a fixed vector, in proportion to the fraction of τ the neighbour spent
  excited (the neighbour's state pulls the shared feedline / resonator);
- excitation during the window (thermal 0 → 1) and measurement-induced transitions are
  not modelled.

The reference a fitted discriminator is scored against (``optimal_two_state``): with
isotropic equal noise and decay only along the c0 → c1 segment, the likelihood ratio of
|1⟩ to |0⟩ depends only on the projection onto that axis and grows along it, so the
Bayes discriminator for equal priors is a threshold on the projection. Without decay it is
the perpendicular bisector, F = 1 − ½ erfc(SNR / (2√2)); with decay the threshold that
maximises F is found numerically over a Gauss–Legendre quadrature of the decay-time
distribution (``decay_quadrature``). ``line_fidelity`` gives the exact assignment errors
of any line, so a fitted discriminator is scored without shot noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.special import erfc

from ._validation import finite, require

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

LEVELS = 3  # |0⟩, |1⟩, |2⟩; population above |2⟩ reads as |2⟩
_MAX_TAU_S = 100e-6


def _point(name: str, value: object) -> tuple[float, float]:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    require(ok, name, value, "an (I, Q) pair of finite numbers")
    assert isinstance(value, Sequence)
    return finite(f"{name}[0]", value[0]), finite(f"{name}[1]", value[1])


@dataclass(frozen=True)
class IQQubit:
    """One qubit's single-shot readout.

    Attributes:
        centres: (I, Q) of the noiseless point of |0⟩, |1⟩ and |2⟩ (two entries: |2⟩ reads
            at |1⟩'s centre), in arbitrary units of the integrated signal.
        sigma: noise standard deviation per quadrature, > 0, same units.
        tau_s: integration window, in (0, 100e-6] s.
    """

    centres: tuple[tuple[float, float], ...]
    sigma: float = 1.0
    tau_s: float = 1.5e-6

    def __post_init__(self) -> None:
        c = self.centres
        require(isinstance(c, Sequence) and len(c) in (2, 3), "IQQubit.centres", c,
                "two or three (I, Q) pairs (|0⟩, |1⟩[, |2⟩])")
        pts = tuple(_point(f"IQQubit.centres[{i}]", p) for i, p in enumerate(c))
        if len(pts) == 2:
            pts = (*pts, pts[1])
        s = finite("IQQubit.sigma", self.sigma)
        require(s > 0, "IQQubit.sigma", self.sigma, "> 0")
        t = finite("IQQubit.tau_s", self.tau_s)
        require(0 < t <= _MAX_TAU_S, "IQQubit.tau_s", self.tau_s, f"(0, {_MAX_TAU_S}] s")
        d = math.hypot(pts[1][0] - pts[0][0], pts[1][1] - pts[0][1])
        require(d > 0, "IQQubit.centres", c, "|1⟩'s centre different from |0⟩'s")
        object.__setattr__(self, "centres", pts)
        object.__setattr__(self, "sigma", s)
        object.__setattr__(self, "tau_s", t)

    @classmethod
    def from_snr(cls, snr: float, *, tau_s: float = 1.5e-6, sigma: float = 1.0, angle_rad: float = 0.0,
                 centre0: tuple[float, float] = (0.0, 0.0), two_distance: float = 0.8,
                 two_angle_rad: float = 1.75) -> IQQubit:
        """Blobs at SNR ``snr`` = |c1 − c0| / σ: c1 − c0 points at ``angle_rad``, and c2 lies
        ``two_distance`` · |c1 − c0| from c1, turned by ``two_angle_rad`` from the c0 → c1
        direction (|2⟩ usually reads closer to |1⟩ than to |0⟩)."""
        snr_ = finite("IQQubit.snr", snr)
        require(0 < snr_ <= 100, "IQQubit.snr", snr, "(0, 100]")
        s = finite("IQQubit.sigma", sigma)
        require(s > 0, "IQQubit.sigma", sigma, "> 0")
        r2 = finite("IQQubit.two_distance", two_distance)
        require(0 < r2 <= 10, "IQQubit.two_distance", two_distance, "(0, 10]")
        a, a2 = finite("IQQubit.angle_rad", angle_rad), finite("IQQubit.two_angle_rad", two_angle_rad)
        c0 = _point("IQQubit.centre0", centre0)
        d = snr_ * s
        c1 = (c0[0] + d * math.cos(a), c0[1] + d * math.sin(a))
        c2 = (c1[0] + r2 * d * math.cos(a + a2), c1[1] + r2 * d * math.sin(a + a2))
        return cls((c0, c1, c2), s, tau_s)

    @property
    def centre_array(self) -> FloatArray:
        """(3, 2) centres of |0⟩, |1⟩, |2⟩."""
        return np.asarray(self.centres, dtype=np.float64)

    @property
    def separation(self) -> float:
        """|c1 − c0|."""
        c = self.centre_array
        return float(np.hypot(*(c[1] - c[0])))

    @property
    def snr(self) -> float:
        """|c1 − c0| / σ."""
        return self.separation / self.sigma

    def replace_snr(self, snr: float) -> IQQubit:
        """The same centres' directions and c0, with c1 and c2 moved so that SNR = ``snr``."""
        snr_ = finite("IQQubit.snr", snr)
        require(0 < snr_ <= 100, "IQQubit.snr", snr, "(0, 100]")
        c = self.centre_array
        k = snr_ / self.snr
        c1 = c[0] + k * (c[1] - c[0])
        c2 = c1 + k * (c[2] - c[1])
        return IQQubit((tuple(c[0]), tuple(c1), tuple(c2)), self.sigma, self.tau_s)


@dataclass(frozen=True)
class IQCrosstalk:
    """While ``source`` is excited, ``target``'s IQ point moves by ``shift`` (I, Q), in
    proportion to the fraction of the window the source spends excited."""

    source: str
    target: str
    shift: tuple[float, float]

    def __post_init__(self) -> None:
        where = f"IQCrosstalk[{self.source}->{self.target}].shift"
        object.__setattr__(self, "shift", _point(where, self.shift))
        require(self.source != self.target, "IQCrosstalk", (self.source, self.target), "two different qubits")


@dataclass(frozen=True)
class IQReadout:
    """A device's single-shot readout: one ``IQQubit`` per readable qubit, plus crosstalk
    between qubits measured together."""

    qubits: Mapping[str, IQQubit] = field(default_factory=dict)
    crosstalk: tuple[IQCrosstalk, ...] = ()

    def __post_init__(self) -> None:
        for q, r in self.qubits.items():
            require(isinstance(r, IQQubit), f"IQReadout.qubits[{q}]", r, "an IQQubit")
        object.__setattr__(self, "qubits", dict(self.qubits))
        object.__setattr__(self, "crosstalk", tuple(self.crosstalk))
        for x in self.crosstalk:
            require(isinstance(x, IQCrosstalk), "IQReadout.crosstalk", x, "an IQCrosstalk")

    def qubit(self, name: str) -> IQQubit:
        try:
            return self.qubits[name]
        except KeyError:
            raise ValueError(f"IQReadout.qubits: {name!r} has no IQ readout: allowed "
                             f"{sorted(self.qubits)}") from None

    def sample(self, measured: Sequence[str], levels: IntArray, t1_s: Sequence[float],
               rng: np.random.Generator) -> FloatArray:
        """IQ points of shots that start the window in ``levels``.

        Args:
            measured: the k qubits, in the order of ``levels``' last axis.
            levels: (..., k) integer level of each qubit at the start of the window
                (values above 2 read as 2).
            t1_s: (k,) each qubit's T1 during the window (``inf``: no decay).
            rng: the generator of decay times and noise.

        Returns:
            (..., k, 2) points (I, Q).
        """
        lv = np.minimum(np.asarray(levels, dtype=np.int64), LEVELS - 1)
        k = len(measured)
        require(lv.ndim >= 1 and lv.shape[-1] == k, "levels", lv.shape, f"(..., {k}) for measured {list(measured)}")
        require(len(t1_s) == k, "t1_s", t1_s, f"{k} values")
        fracs = np.empty((*lv.shape, LEVELS))
        out = np.empty((*lv.shape, 2))
        for j, q in enumerate(measured):
            iq = self.qubit(q)
            t1 = float(t1_s[j])
            require(t1 > 0, f"t1_s[{j}]", t1, "> 0 s (inf for no decay)")
            fracs[..., j, :] = level_fractions(lv[..., j], iq.tau_s, t1, rng)
            out[..., j, :] = fracs[..., j, :] @ iq.centre_array
        pos = {q: j for j, q in enumerate(measured)}
        for x in self.crosstalk:
            if x.source in pos and x.target in pos:
                excited = 1.0 - fracs[..., pos[x.source], 0]
                out[..., pos[x.target], :] += excited[..., None] * np.asarray(x.shift)
        sig = np.array([self.qubit(q).sigma for q in measured])
        out += rng.standard_normal(out.shape) * sig[:, None]
        return out


def level_fractions(levels: IntArray, tau_s: float, t1_s: float, rng: np.random.Generator) -> FloatArray:
    """(...,) starting levels in {0, 1, 2} -> (..., 3) fractions of the window ``tau_s``
    spent in |0⟩, |1⟩, |2⟩, with |2⟩ → |1⟩ at rate 2/T1 and |1⟩ → |0⟩ at 1/T1."""
    lv = np.asarray(levels)
    out = np.zeros((*lv.shape, LEVELS))
    # Both decay times are drawn for every shot so that the stream does not depend on
    # the levels' order; exponential(inf) is inf (no decay).
    t21 = rng.exponential(0.5 * t1_s, size=lv.shape)
    t10 = rng.exponential(t1_s, size=lv.shape)
    in2 = np.where(lv == 2, np.minimum(t21, tau_s), 0.0)
    in1 = np.where(lv >= 1, np.minimum(t10, tau_s - in2), 0.0)
    out[..., 2] = in2 / tau_s
    out[..., 1] = in1 / tau_s
    out[..., 0] = 1.0 - out[..., 1] - out[..., 2]
    return out


def sample_outcomes(probabilities: FloatArray, shots: int, rng: np.random.Generator) -> IntArray:
    """(B, m) probabilities of m joint outcomes -> (B, shots) outcome indices, each shot
    drawn independently (inverse CDF of one uniform per shot)."""
    p = np.asarray(probabilities, dtype=np.float64)
    require(p.ndim == 2, "probabilities", p.shape, "(B, m)")
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random((p.shape[0], shots))
    idx = np.stack([np.searchsorted(c, row, side="right") for c, row in zip(cdf, u, strict=True)]) \
        if p.shape[0] else np.zeros((0, shots), dtype=np.int64)
    return np.minimum(idx, p.shape[1] - 1).astype(np.int64)


def outcome_levels(index: IntArray, k: int, n: int = LEVELS) -> IntArray:
    """Joint outcome indices (first qubit most significant, base ``n``) -> (..., k) levels."""
    idx = np.asarray(index, dtype=np.int64)
    digits = [(idx // n ** (k - 1 - j)) % n for j in range(k)]
    return np.stack(digits, axis=-1)


# -- the optimal discriminator ------------------------------------------------------------------


def bisector_fidelity(snr: float) -> float:
    """Assignment fidelity of the perpendicular bisector between two isotropic Gaussian
    blobs at distance d = snr · σ, no decay: 1 − ½ erfc(d / (2√2 σ)) (both errors equal)."""
    s = finite("snr", snr)
    require(s >= 0, "snr", snr, ">= 0")
    return 1.0 - 0.5 * float(erfc(s / (2.0 * math.sqrt(2.0))))


def decay_quadrature(tau_s: float, t1_s: float, nodes: int = 400) -> tuple[FloatArray, FloatArray]:
    """The distribution of the fraction f ∈ [0, 1] of the window a |1⟩ shot spends in |1⟩:
    (f, weight) with a point mass e^{−τ/T1} at f = 1 (no decay in the window) and
    Gauss–Legendre nodes on the density (τ/T1) e^{−fτ/T1} over [0, 1]. Weights sum to 1."""
    r = tau_s / t1_s
    if r == 0:
        return np.ones(1), np.ones(1)
    x, w = np.polynomial.legendre.leggauss(nodes)
    f = 0.5 * (x + 1.0)
    wf = 0.5 * w * r * np.exp(-f * r)
    return np.concatenate([f, [1.0]]), np.concatenate([wf, [math.exp(-r)]])


def _phi(z: FloatArray | float) -> FloatArray:
    """Standard normal CDF."""
    return np.asarray(0.5 * erfc(-np.asarray(z) / math.sqrt(2.0)))


def line_fidelity(iq: IQQubit, t1_s: float, angle_rad: float, threshold: float,
                  nodes: int = 400) -> tuple[float, float, float]:
    """Exact (fidelity, P(1|0), P(0|1)) of the discriminator "read 1 iff
    I cos θ + Q sin θ > threshold" on pure |0⟩ and |1⟩ preparations of ``iq`` (decay
    during the window with ``t1_s``, no crosstalk)."""
    u = np.array([math.cos(angle_rad), math.sin(angle_rad)])
    c = iq.centre_array
    p0, p1 = float(c[0] @ u), float(c[1] @ u)
    p10 = float(1.0 - _phi((threshold - p0) / iq.sigma))
    f, w = decay_quadrature(iq.tau_s, t1_s, nodes)
    p01 = float(w @ _phi((threshold - (p0 + f * (p1 - p0))) / iq.sigma))
    return 1.0 - 0.5 * (p10 + p01), p10, p01


@dataclass(frozen=True)
class OptimalDiscriminator:
    """The Bayes discriminator of |0⟩ vs |1⟩ (equal priors) for one qubit's IQ model:
    read 1 iff I cos θ + Q sin θ > threshold."""

    angle_rad: float
    threshold: float
    fidelity: float
    p1_given_0: float
    p0_given_1: float


def optimal_two_state(iq: IQQubit, t1_s: float = math.inf, nodes: int = 400) -> OptimalDiscriminator:
    """The optimal two-state discriminator of ``iq`` with T1 ``t1_s`` during the window
    (module docstring): the axis c0 → c1, the threshold maximising the fidelity."""
    t1 = float(t1_s)
    require(t1 > 0 and not math.isnan(t1), "t1_s", t1_s, "> 0 s (inf for no decay)")
    c = iq.centre_array
    v = c[1] - c[0]
    theta = math.atan2(v[1], v[0])
    u = v / np.hypot(*v)
    p0, p1 = float(c[0] @ u), float(c[1] @ u)
    if math.isinf(t1):
        thr = 0.5 * (p0 + p1)
    else:
        res = minimize_scalar(lambda x: -line_fidelity(iq, t1, theta, x, nodes)[0], bounds=(p0, p1),
                              method="bounded", options={"xatol": 1e-9 * (p1 - p0)})
        thr = float(res.x)
    fid, p10, p01 = line_fidelity(iq, t1, theta, thr, nodes)
    return OptimalDiscriminator(theta, thr, fid, p10, p01)


def line_read_one(iq: IQQubit, t1_s: float, angle_rad: float, threshold: float,
                  nodes: int = 120) -> FloatArray:
    """Exact P(read 1 | the window starts in |L⟩), L = 0, 1, 2, of the discriminator "read 1
    iff I cos θ + Q sin θ > threshold" (no crosstalk). |2⟩ by a nested quadrature over its
    two decay times (|2⟩ → |1⟩ at 2/T1, then |1⟩ → |0⟩ at 1/T1)."""
    u = np.array([math.cos(angle_rad), math.sin(angle_rad)])
    p = iq.centre_array @ u
    s = iq.sigma

    def above(mean: FloatArray) -> FloatArray:
        return 1.0 - _phi((threshold - mean) / s)

    out = np.empty(3)
    out[0] = float(above(np.asarray(p[0])))
    f, w = decay_quadrature(iq.tau_s, t1_s, nodes)
    out[1] = float(w @ above(p[0] + f * (p[1] - p[0])))
    # |2⟩: fraction a in |2⟩ (rate 2/T1 over the window), then b of the rest in |1⟩.
    fa, wa = decay_quadrature(iq.tau_s, 0.5 * t1_s, nodes)
    rest = 1.0 - fa
    x, w = np.polynomial.legendre.leggauss(nodes)
    fb = np.concatenate([0.5 * (x + 1.0), [1.0]])  # fraction of the rest spent in |1⟩
    r = rest * iq.tau_s / t1_s  # (na,) the rest's length in units of T1
    wb = np.concatenate([0.5 * w[None, :] * r[:, None] * np.exp(-0.5 * (x[None, :] + 1.0) * r[:, None]),
                         np.exp(-r)[:, None]], axis=1)
    mean = fa[:, None] * p[2] + rest[:, None] * (fb[None, :] * p[1] + (1.0 - fb[None, :]) * p[0])
    total = float(wa @ np.sum(wb * above(mean), axis=1))
    out[2] = total
    return out


def prepared_fidelity(iq: IQQubit, t1_s: float, angle_rad: float, threshold: float,
                      populations: FloatArray) -> float:
    """Exact assignment fidelity of a line on imperfect preparations: ``populations`` (2, 3)
    the level populations of the prepared |0⟩ and |1⟩ (e.g. ``level_probabilities`` of the
    device), 1 − ½(P(1 | prep 0) + P(0 | prep 1))."""
    pops = np.asarray(populations, dtype=np.float64)
    require(pops.shape == (2, 3), "populations", pops.shape, "(2, 3): prepared |0⟩, |1⟩ over levels 0, 1, 2")
    r1 = line_read_one(iq, t1_s, angle_rad, threshold)
    return 1.0 - 0.5 * (float(pops[0] @ r1) + 1.0 - float(pops[1] @ r1))


def optimal_prepared(iq: IQQubit, t1_s: float, populations: FloatArray) -> tuple[float, float]:
    """(threshold, fidelity) of the best threshold on the c0 → c1 axis for imperfect
    preparations: the reference of a discriminator fitted on those preparations."""
    c = iq.centre_array
    v = c[1] - c[0]
    theta = math.atan2(v[1], v[0])
    u = v / np.hypot(*v)
    p0, p1 = float(c[0] @ u), float(c[1] @ u)
    res = minimize_scalar(lambda x: -prepared_fidelity(iq, t1_s, theta, x, populations), bounds=(p0, p1),
                          method="bounded", options={"xatol": 1e-6 * (p1 - p0)})
    return float(res.x), prepared_fidelity(iq, t1_s, theta, float(res.x), populations)
