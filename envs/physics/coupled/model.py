"""Coupled transmons: modes, couplings, channels and frames of a multi-qubit model.

Everything an engine needs to know about a multi-mode device is stated here once, so the
fast engine and the reference engines (QuTiP, qiskit-dynamics) start from the same
operators. Conventions (docs/coupled_model.md states them):

- Basis: the tensor product of the modes in the order given, mode 0 most significant
  (index of |n0 n1 …⟩ = n0·d1·d2… + n1·d2… + …), as ``qutip.tensor`` orders it.
- Frames: every mode has a frame frequency g_i (its idle 0–1 frequency unless overridden).
  States, unitaries and superoperators are reported in the product of these frames: what a
  lab's per-qubit numerically controlled oscillators see. In that frame, with t the time
  since the start of the sequence,

    H(t)/ħ = Σ_i [ 2π(f_i(Φ_i(t)) − g_i)·n_i + π·α_i·n_i(n_i − 1) ]
           + Σ_(i,j) 2π·J_ij·( a_i†a_j·e^{+i2π(g_i − g_j)t} + h.c. )
           + Σ_c Σ_k π·Ω_k·x_(l(c),k)·( u_c(t)·e^{−i2π(f_c − g_k)t}·a_k† + h.c. )

  where channel c plays complex samples u_c (|u| ≤ 1) on drive line l(c) at frame
  frequency f_c, x_(l,k) is the fraction of line l's field reaching mode k (x_(l,l) = 1,
  classical crosstalk otherwise) and Ω_k is mode k's Rabi frequency at full scale.
  The single-transmon model of ``..model`` is the one-mode case with g = f_drive.
- Flux: a flux-tunable mode follows the SQUID formula
  f(Φ) + E_C = (f_max + E_C)·(cos²(πΦ) + d²·sin²(πΦ))^{1/4} with E_C = −α, Φ in units of
  Φ0, sweet spot at Φ = 0; flux samples are offsets from the idle bias.
- Dissipation per mode: √((1−p)/T1)·a, √(p/T1)·a† (thermal excited population p) and
  √(2/Tφ)·n with 1/Tφ = 1/T2 − 1/(2·T1). These are invariant under the frame changes
  above, so one dissipator serves every frame.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray

from ..model import _require
from .operators import DriveControl, OperatorModel, RealControl

TWO_PI = 2.0 * math.pi
ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]

ModeKind = Literal["qubit", "coupler"]
ChannelKind = Literal["drive", "flux"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: Frame frequencies an engine accepts, Hz: anything outside is a units mistake.
FRAME_RANGE_HZ = (1e6, 50e9)


def _finite(name: str, value: object) -> float:
    _require(
        isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)
        and math.isfinite(float(value)),
        name, value, "a finite real number",
    )
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FluxTuning:
    """How a mode's frequency follows the flux through its SQUID.

    Attributes:
        asymmetry: junction asymmetry d = (E_J1 − E_J2)/(E_J1 + E_J2), in [0, 1); 0 is a
            symmetric SQUID (frequency reaches 0 near Φ = ±Φ0/2).
        idle_flux: DC bias Φ/Φ0 at idle; the mode's frequency there is its idle frequency.
        max_offset: largest |flux sample| (offset from the idle bias, in Φ0) the channel
            accepts; samples beyond it are refused as a range error.
        low_pass_tau_s: time constant of the flux line's first-order low-pass (0 = none).
        overshoot: amplitude of an exponential overshoot distortion (bias-tee/skin-effect
            model: y = x + overshoot·(x − e^{−dt/τ} smoothed x)); 0 = none.
        overshoot_tau_s: its time constant.
    """

    asymmetry: float = 0.0
    idle_flux: float = 0.0
    max_offset: float = 0.5
    low_pass_tau_s: float = 0.0
    overshoot: float = 0.0
    overshoot_tau_s: float = 20e-9

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _finite(f"flux.{f.name}", getattr(self, f.name))
        _require(0.0 <= self.asymmetry < 1.0, "flux.asymmetry", self.asymmetry, "[0, 1)")
        _require(abs(self.idle_flux) <= 0.5, "flux.idle_flux", self.idle_flux, "[-0.5, 0.5] Φ0")
        _require(0.0 < self.max_offset <= 1.0, "flux.max_offset", self.max_offset, "(0, 1] Φ0")
        _require(self.low_pass_tau_s >= 0.0, "flux.low_pass_tau_s", self.low_pass_tau_s, ">= 0 s")
        _require(abs(self.overshoot) <= 1.0, "flux.overshoot", self.overshoot, "[-1, 1]")
        _require(self.overshoot_tau_s > 0.0, "flux.overshoot_tau_s", self.overshoot_tau_s, "> 0 s")


@dataclass(frozen=True)
class Mode:
    """One transmon (a qubit or a tunable coupler) truncated to ``levels`` levels.

    Attributes:
        name: identifier used in channel names (``q0``, ``c01``).
        frequency_hz: 0–1 frequency; for a flux-tunable mode, at its sweet spot (Φ = 0).
        anharmonicity_hz: α = f12 − f01 (negative for a transmon).
        levels: levels kept (>= 2; 3 by default so leakage exists).
        t1_s, t2_s: relaxation and 0–1 coherence times (T2 <= 2·T1).
        thermal_population: excited population p of the mode in equilibrium, [0, 0.5).
        rabi_max_hz: Ω at full-scale drive |u| = 1 on its own line; ``None`` for a mode with
            no drive line (a coupler).
        flux: ``FluxTuning`` for a flux-tunable mode, ``None`` for a fixed-frequency one.
        kind: ``"qubit"`` (levels 0, 1 form its qubit) or ``"coupler"`` (kept in |0⟩).
        frame_hz: frame frequency g; ``None`` means the idle frequency.
    """

    name: str
    frequency_hz: float
    anharmonicity_hz: float = -300e6
    levels: int = 3
    t1_s: float = 100e-6
    t2_s: float = 100e-6
    thermal_population: float = 0.0
    rabi_max_hz: float | None = 100e6
    flux: FluxTuning | None = None
    kind: ModeKind = "qubit"
    frame_hz: float | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and bool(_NAME.match(self.name)),
                 "mode.name", self.name, "an identifier like 'q0' or 'c01'")
        p = f"modes[{self.name}]"
        _require(
            isinstance(self.levels, int | np.integer) and not isinstance(self.levels, bool)
            and 2 <= int(self.levels) <= 8,
            f"{p}.levels", self.levels, "an integer in [2, 8]",
        )
        f = _finite(f"{p}.frequency_hz", self.frequency_hz)
        _require(FRAME_RANGE_HZ[0] <= f <= FRAME_RANGE_HZ[1], f"{p}.frequency_hz", f,
                 f"[{FRAME_RANGE_HZ[0]:g}, {FRAME_RANGE_HZ[1]:g}] Hz")
        alpha = _finite(f"{p}.anharmonicity_hz", self.anharmonicity_hz)
        _require(alpha < 0.0 and -alpha < f, f"{p}.anharmonicity_hz", alpha,
                 "< 0 and |α| < frequency_hz (a transmon)")
        t1 = _finite(f"{p}.t1_s", self.t1_s)
        t2 = _finite(f"{p}.t2_s", self.t2_s)
        _require(t1 > 0, f"{p}.t1_s", t1, "> 0 s")
        _require(0 < t2 <= 2.0 * t1 * (1 + 1e-12), f"{p}.t2_s", t2, f"(0, 2·t1_s = {2 * t1!r}] s")
        th = _finite(f"{p}.thermal_population", self.thermal_population)
        _require(0.0 <= th < 0.5, f"{p}.thermal_population", th, "[0, 0.5)")
        if self.rabi_max_hz is not None:
            r = _finite(f"{p}.rabi_max_hz", self.rabi_max_hz)
            _require(r > 0, f"{p}.rabi_max_hz", r, "> 0 Hz (or None: no drive line)")
        _require(self.flux is None or isinstance(self.flux, FluxTuning), f"{p}.flux", self.flux,
                 "a FluxTuning or None")
        _require(self.kind in ("qubit", "coupler"), f"{p}.kind", self.kind, "'qubit' or 'coupler'")
        if self.frame_hz is not None:
            g = _finite(f"{p}.frame_hz", self.frame_hz)
            _require(FRAME_RANGE_HZ[0] <= g <= FRAME_RANGE_HZ[1], f"{p}.frame_hz", g,
                     f"[{FRAME_RANGE_HZ[0]:g}, {FRAME_RANGE_HZ[1]:g}] Hz")
        if self.flux is not None:
            idle = float(self.frequency_at(0.0))
            _require(idle > 0.0, f"{p}.flux.idle_flux", self.flux.idle_flux,
                     "a bias where the mode's frequency is above 0")

    @property
    def tphi_s(self) -> float:
        """Pure-dephasing time Tφ from 1/Tφ = 1/T2 − 1/(2·T1); ``inf`` when T2 = 2·T1."""
        rate = 1.0 / self.t2_s - 1.0 / (2.0 * self.t1_s)
        return math.inf if rate <= 0.0 else 1.0 / rate

    def frequency_at(self, offset: float | FloatArray) -> float | FloatArray:
        """0–1 frequency (Hz) at flux offset ``offset`` (Φ0) from the idle bias.

        A fixed-frequency mode returns ``frequency_hz`` whatever the offset.
        """
        if self.flux is None:
            return self.frequency_hz + 0.0 * np.asarray(offset) if np.ndim(offset) else self.frequency_hz
        ec = -self.anharmonicity_hz
        phi = math.pi * (self.flux.idle_flux + np.asarray(offset, dtype=np.float64))
        d = self.flux.asymmetry
        scale = np.sqrt(np.sqrt(np.cos(phi) ** 2 + d * d * np.sin(phi) ** 2))
        out = (self.frequency_hz + ec) * scale - ec
        return float(out) if np.ndim(out) == 0 else out

    @property
    def idle_frequency_hz(self) -> float:
        return float(self.frequency_at(0.0))

    @property
    def frame_frequency_hz(self) -> float:
        return self.idle_frequency_hz if self.frame_hz is None else float(self.frame_hz)

    def replace(self, **changes: object) -> Mode:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Coupling:
    """Capacitive exchange 2π·J·(a†b + ab†) between modes ``a`` and ``b``; J in Hz."""

    a: str
    b: str
    j_hz: float

    def __post_init__(self) -> None:
        j = _finite(f"coupling[{self.a},{self.b}].j_hz", self.j_hz)
        _require(abs(j) <= 1e9, f"coupling[{self.a},{self.b}].j_hz", j, "|J| <= 1 GHz")
        _require(self.a != self.b, "coupling", (self.a, self.b), "two different modes")


@dataclass(frozen=True)
class Crosstalk:
    """A complex fraction ``fraction`` of drive line ``line``'s field reaching mode ``mode``."""

    line: str
    mode: str
    fraction: complex

    def __post_init__(self) -> None:
        fr = complex(self.fraction)
        _require(math.isfinite(fr.real) and math.isfinite(fr.imag) and abs(fr) <= 1.0,
                 f"crosstalk[{self.line}->{self.mode}].fraction", self.fraction, "finite, |x| <= 1")
        _require(self.line != self.mode, "crosstalk", (self.line, self.mode),
                 "a line reaching another mode (a line's own mode is fraction 1)")
        object.__setattr__(self, "fraction", fr)


@dataclass(frozen=True)
class Channel:
    """A control input: a drive channel (complex samples on a line at a frame frequency) or
    a flux channel (real offsets, Φ0, on a tunable mode).

    Names: ``drive:q0`` (q0's line at q0's frame), ``drive:q0@q1`` (q0's line at q1's
    frame: cross-resonance), ``flux:q1`` (a tunable qubit), ``coupler:c01`` (a coupler's flux).
    """

    name: str
    kind: ChannelKind
    line: str  # the drive line's mode, or the flux-tuned mode
    frame: str  # mode whose frame frequency the channel plays at (the line for flux)
    frequency_hz: float


def parse_channel(name: str) -> tuple[str, str, str]:
    """``'drive:q0@q1'`` -> ('drive', 'q0', 'q1'); raises ValueError on a malformed name."""
    # Remembered per name: a device compiles every sequence against its channel names, so
    # the same few names are parsed thousands of times per env step.
    return _parse_channel(name) if isinstance(name, str) else _parse_channel.__wrapped__(name)


@functools.lru_cache(maxsize=4096)
def _parse_channel(name: str) -> tuple[str, str, str]:
    m = re.match(r"^(drive|flux|coupler):([A-Za-z][A-Za-z0-9_]*)(?:@([A-Za-z][A-Za-z0-9_]*))?$", name)
    if not isinstance(name, str) or m is None or (m.group(1) != "drive" and m.group(3)):
        raise ValueError(
            f"channel={name!r} is not a channel name: allowed 'drive:<mode>', "
            "'drive:<mode>@<frame mode>', 'flux:<mode>' or 'coupler:<mode>'"
        )
    kind, line, frame = m.group(1), m.group(2), m.group(3) or m.group(2)
    return kind, line, frame


@dataclass(frozen=True)
class ModeParts:
    """Modes in basis order, their exchange couplings and drive crosstalk, on one AWG grid.

    The parts a simulable ``CoupledModel`` and a whole device's model (which may be far too
    large to simulate) both hold; each subclass checks its own limits in ``__post_init__``
    with ``_checked_modes`` first and ``_store_parts`` once its modes are final.

    Attributes:
        modes: the modes in basis order (mode 0 most significant).
        couplings: exchange couplings between pairs of modes (at most one per pair).
        crosstalk: classical drive crosstalk between lines and other modes.
        dt_s: AWG sample time; every channel's samples are piecewise constant on it.
    """

    modes: tuple[Mode, ...]
    couplings: tuple[Coupling, ...] = ()
    crosstalk: tuple[Crosstalk, ...] = ()
    dt_s: float = 1e-9
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)
    # What the error for an unknown mode calls the holder ("the model", "the device").
    _holder: ClassVar[str] = "model"

    def _checked_modes(self, prefix: str) -> tuple[tuple[Mode, ...], list[str]]:
        """The modes as a tuple and their names, refusing no modes, non-``Mode`` entries and
        repeated names; ``prefix`` starts the error's field name."""
        modes = tuple(self.modes)
        _require(len(modes) >= 1 and all(isinstance(m, Mode) for m in modes), f"{prefix}modes",
                 self.modes, "one or more Mode")
        names = [m.name for m in modes]
        _require(len(set(names)) == len(names), f"{prefix}modes", names, "unique mode names")
        return modes, names

    def _store_parts(self, modes: tuple[Mode, ...], names: list[str]) -> None:
        object.__setattr__(self, "modes", modes)
        object.__setattr__(self, "couplings", tuple(self.couplings))
        object.__setattr__(self, "crosstalk", tuple(self.crosstalk))
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    @property
    def dimension(self) -> int:
        return math.prod(m.levels for m in self.modes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modes)

    @property
    def qubits(self) -> tuple[str, ...]:
        """Names of the modes whose levels 0 and 1 form qubits, in basis order."""
        return tuple(m.name for m in self.modes if m.kind == "qubit")

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(f"mode={name!r} is not in the {self._holder}: allowed {list(self.names)}") from None

    def mode(self, name: str) -> Mode:
        return self.modes[self.index(name)]

    def replace(self, **changes: object) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def replace_mode(self, name: str, **changes: object) -> Self:
        i = self.index(name)
        modes = list(self.modes)
        modes[i] = modes[i].replace(**changes)
        return self.replace(modes=tuple(modes))


@dataclass(frozen=True)
class CoupledModel(ModeParts):
    """Any number of coupled transmons with their control channels, on one AWG grid (the
    parts and their attributes as in ``ModeParts``), small enough to simulate."""

    def __post_init__(self) -> None:
        modes, names = self._checked_modes("")
        self._store_parts(modes, names)
        dim = math.prod(m.levels for m in modes)
        _require(dim <= 4096, "modes", names, "a total dimension Π levels <= 4096")
        dt = _finite("dt_s", self.dt_s)
        _require(1e-12 <= dt <= 1e-6, "dt_s", dt, "[1e-12, 1e-6] s")
        check_links(modes, self.couplings, self.crosstalk)

    # -- structure ------------------------------------------------------------------------

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(m.levels for m in self.modes)

    @property
    def channels(self) -> dict[str, Channel]:
        return _channels(self)

    def channel(self, name: str) -> Channel:
        parse_channel(name)
        chans = self.channels
        if name not in chans:
            raise ValueError(f"channel={name!r} is not a channel of this model: allowed {sorted(chans)}")
        return chans[name]

    def computational_indices(self) -> NDArray[np.intp]:
        """Basis indices of the 2^n qubit states (qubits in {0, 1}, couplers in 0), in the
        order of the qubits' binary number (first qubit most significant)."""
        return _computational_indices(self)


def check_links(modes: tuple[Mode, ...], couplings: tuple[Coupling, ...], crosstalk: tuple[Crosstalk, ...],
                prefix: str = "") -> None:
    """Couplings and crosstalk name modes of ``modes`` (at most one coupling per pair; crosstalk
    from a mode with a drive line); ``prefix`` starts each error's field name."""
    by_name = {m.name: m for m in modes}
    names = list(by_name)
    pairs: set[frozenset[str]] = set()
    for c in couplings:
        _require(isinstance(c, Coupling), f"{prefix}couplings", c, "Coupling")
        for end in (c.a, c.b):
            _require(end in by_name, f"{prefix}coupling[{c.a},{c.b}]", end, f"a mode in {names}")
        key = frozenset((c.a, c.b))
        _require(key not in pairs, f"{prefix}couplings", (c.a, c.b), "at most one coupling per pair")
        pairs.add(key)
    for x in crosstalk:
        _require(isinstance(x, Crosstalk), f"{prefix}crosstalk", x, "Crosstalk")
        _require(x.line in by_name and by_name[x.line].rabi_max_hz is not None,
                 f"{prefix}crosstalk[{x.line}->{x.mode}].line", x.line, "a mode with a drive line")
        _require(x.mode in by_name, f"{prefix}crosstalk[{x.line}->{x.mode}].mode", x.mode,
                 f"a mode in {names}")


@functools.lru_cache(maxsize=256)
def _channels(model: CoupledModel) -> dict[str, Channel]:
    out: dict[str, Channel] = {}
    for m in model.modes:
        if m.rabi_max_hz is not None:
            for frame in model.modes:
                name = f"drive:{m.name}" if frame is m else f"drive:{m.name}@{frame.name}"
                out[name] = Channel(name, "drive", m.name, frame.name, frame.frame_frequency_hz)
        if m.flux is not None:
            name = f"{'flux' if m.kind == 'qubit' else 'coupler'}:{m.name}"
            out[name] = Channel(name, "flux", m.name, m.name, m.frame_frequency_hz)
    return out


@functools.lru_cache(maxsize=256)
def _computational_indices(model: CoupledModel) -> NDArray[np.intp]:
    dims = model.dims
    qubit_pos = [i for i, m in enumerate(model.modes) if m.kind == "qubit"]
    idx = []
    for bits in range(2 ** len(qubit_pos)):
        levels = [0] * len(dims)
        for k, pos in enumerate(qubit_pos):
            levels[pos] = (bits >> (len(qubit_pos) - 1 - k)) & 1
        idx.append(int(np.ravel_multi_index(levels, dims)))
    out = np.asarray(idx, dtype=np.intp)
    out.setflags(write=False)
    return out


# -- operators ----------------------------------------------------------------------------


def _local(model: CoupledModel, i: int, op: ComplexArray) -> ComplexArray:
    mats = [np.eye(d, dtype=np.complex128) for d in model.dims]
    mats[i] = op
    out: np.ndarray = mats[0]
    for m in mats[1:]:
        out = np.kron(out, m)
    return out


def annihilation(model: CoupledModel, name: str) -> ComplexArray:
    """a_i embedded in the full space, (D, D)."""
    i = model.index(name)
    d = model.dims[i]
    return _local(model, i, np.diag(np.sqrt(np.arange(1, d, dtype=np.float64)), 1).astype(np.complex128))


def number(model: CoupledModel, name: str) -> FloatArray:
    """Diagonal of n_i in the full space, (D,)."""
    i = model.index(name)
    grids = np.indices(model.dims).reshape(len(model.dims), -1)
    return grids[i].astype(np.float64)


@functools.lru_cache(maxsize=256)
def level_numbers(model: CoupledModel) -> FloatArray:
    """(n_modes, D): the level of each mode in each basis state (read-only)."""
    out = np.indices(model.dims).reshape(len(model.dims), -1).astype(np.float64)
    out.setflags(write=False)
    return out


def static_hamiltonian_rad_s(model: CoupledModel, frame_hz: float) -> ComplexArray:
    """The idle Hamiltonian (rad/s) in a frame where every mode rotates at ``frame_hz``:
    Σ 2π(f_i − frame)·n_i + π·α_i·n_i(n_i−1) + Σ 2π·J·(a†b + h.c.); (D, D), time-independent."""
    n = level_numbers(model)
    diag = np.zeros(model.dimension)
    for i, m in enumerate(model.modes):
        diag += TWO_PI * (m.idle_frequency_hz - frame_hz) * n[i] + math.pi * m.anharmonicity_hz * n[i] * (n[i] - 1)
    h: np.ndarray = np.diag(diag).astype(np.complex128)
    for c in model.couplings:
        x = annihilation(model, c.a).conj().T @ annihilation(model, c.b)
        h += TWO_PI * c.j_hz * (x + x.conj().T)
    return h


def line_raising_rad_s(model: CoupledModel, line: str) -> ComplexArray:
    """R_l = Σ_k π·Ω_k·x_(l,k)·a_k† (rad/s, (D, D)): a drive sample v on line l adds
    v·R_l + v*·R_l† to the Hamiltonian (in a frame where every mode rotates alike)."""
    own = model.mode(line)
    if own.rabi_max_hz is None:
        raise ValueError(f"line={line!r} has no drive line (rabi_max_hz is None)")
    out: ComplexArray = math.pi * own.rabi_max_hz * annihilation(model, line).conj().T
    for x in model.crosstalk:
        if x.line == line:
            k = model.mode(x.mode)
            if k.rabi_max_hz is None:
                continue  # a mode with no drive line has no dipole scale: stated as not driven
            out = out + math.pi * k.rabi_max_hz * x.fraction * annihilation(model, x.mode).conj().T
    return out


def collapse_operators(model: CoupledModel) -> list[ComplexArray]:
    """Every mode's √((1−p)/T1)·a, √(p/T1)·a† (p > 0) and √(2/Tφ)·n (Tφ finite); (D, D) each."""
    ops: list[ComplexArray] = []
    for i, m in enumerate(model.modes):
        a = annihilation(model, m.name)
        p = m.thermal_population
        ops.append(math.sqrt((1.0 - p) / m.t1_s) * a)
        if p > 0.0:
            ops.append(math.sqrt(p / m.t1_s) * a.conj().T)
        if math.isfinite(m.tphi_s):
            ops.append(math.sqrt(2.0 / m.tphi_s) * np.diag(level_numbers(model)[i]).astype(np.complex128))
    return ops


def thermal_state(model: CoupledModel) -> ComplexArray:
    """Product of each mode's thermal state p|1⟩⟨1| + (1−p)|0⟩⟨0|, (D, D)."""
    rho: np.ndarray = np.ones(1)
    for m in model.modes:
        v = np.zeros(m.levels)
        v[0], v[1] = 1.0 - m.thermal_population, m.thermal_population
        rho = np.kron(rho, v)
    return np.diag(rho).astype(np.complex128)


@dataclass(frozen=True)
class _SquidShift:
    """x = f(idle + offset) − f(idle) in Hz: the transfer of a flux channel's samples."""

    mode: Mode

    def __call__(self, offsets: FloatArray) -> FloatArray:
        m = self.mode
        return np.asarray(m.frequency_at(offsets), dtype=np.float64) - m.idle_frequency_hz


@dataclass(frozen=True)
class _FluxLine:
    """The flux line's distortion of a mode, as ``RealControl.distortion``."""

    tuning: FluxTuning

    def __call__(self, samples: FloatArray, dt_s: float) -> FloatArray:
        from .controls import distort_flux

        return distort_flux(self.tuning, samples, dt_s)


@functools.lru_cache(maxsize=128)
def compile_model(model: CoupledModel) -> OperatorModel:
    """The operator form of ``model`` (common frame at mode 0's frame frequency)."""
    frame = model.modes[0].frame_frequency_hz
    chans = model.channels
    raising = {line: line_raising_rad_s(model, line) for line in {c.line for c in chans.values() if c.kind == "drive"}}
    drives = {n: DriveControl(raising[c.line], c.frequency_hz, c.line) for n, c in chans.items() if c.kind == "drive"}
    reals: dict[str, RealControl] = {}
    numbers = level_numbers(model)
    for n, c in chans.items():
        if c.kind != "flux":
            continue
        m = model.mode(c.line)
        assert m.flux is not None
        op = np.diag(TWO_PI * numbers[model.index(m.name)]).astype(np.complex128)
        reals[n] = RealControl(op, m.flux.max_offset, _SquidShift(m), _FluxLine(m.flux), m.name, True)
    return OperatorModel(
        dims=model.dims,
        names=model.names,
        qubit_levels=tuple((0, 1) if m.kind == "qubit" else None for m in model.modes),
        frame_hz=frame,
        mode_frames_hz=tuple(m.frame_frequency_hz for m in model.modes),
        h_static=static_hamiltonian_rad_s(model, frame),
        drives=drives,
        reals=reals,
        collapse=tuple(collapse_operators(model)),
        dt_s=model.dt_s,
        shiftable=True,
        source=model,
    )
