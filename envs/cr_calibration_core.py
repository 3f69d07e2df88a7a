"""The echoed cross-resonance (ECR) gate: its pulses, its probe sequences, their analysis,
and the batched core of ``pulsecal/CRCalibration-v0`` (docs/cr_calibration.md).

What is shared by the env and the textbook baseline (``agents.baselines.ecr_textbook``):

- ``ECRKnobs``: the four calibrated parameters (CR amplitude and phase, target
  cancellation-tone amplitude and phase) and ``ECRShape`` (half-pulse length, rise).
- ``ecr_sequence``: CR(+) with its cancellation tone, π on the control, CR(−) with the
  negated tone. With ZX angle π/4 per half this is Qiskit's ECR,
  RZX(−π/4)·(X⊗I)·RZX(π/4), up to local Z phases.
- ``tomography_sequences`` / ``bloch_from_counts``: CR Hamiltonian tomography, the target's
  Bloch components after one CR half with the control in |0⟩ and in |1⟩.
- ``ecr_truth``: the simulation truth of a setting (fidelity to ECR after the best virtual
  Z, leakage, coherence limit), for evaluation only.

The core measures only through ``Device.run``; the truth goes into ``info`` and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from ._validation import finite, require
from .multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from .multi_qubit_model import DeviceModel
from .multi_qubit_presets import MultiQubitSampler, get_multi_qubit_preset
from .physics.coupled import metrics
from .protocol import Barrier, Measure, Play, PulseSequence
from .rb2q import RB2QSettings, end_of_episode_verdict
from .vector import BatchedCore, InfoColumns

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

CONTROL, TARGET = "q0", "q1"
CR_CHANNEL = f"drive:{CONTROL}@{TARGET}"
BASES = ("x", "y", "z")
#: Bloch vector of the target after one ideal half (RZX(π/4)) from |0⟩: control |0⟩ gives
#: (0, −sin π/4, cos π/4), control |1⟩ (0, +sin π/4, cos π/4); either sign of ZX is the
#: same ECR up to a virtual Z on the target, so the reward uses |ZX| only.
HALF_ANGLE = math.pi / 4


@dataclass(frozen=True)
class ECRShape:
    """The pulse shape of one CR half (flat-top Gaussian square) and the single-qubit gates.

    Attributes:
        half_samples: AWG samples of one CR half, rises included, in [16, 1000].
        rise_samples: samples of each Gaussian edge (σ = rise/2), in [1, half_samples/2].
        x_samples: samples of the control's π pulse and of the target's (π/2) pre-rotations,
            Gaussian pulses, in [4, 200].
        x_drag: DRAG coefficient β of those Gaussian pulses, in samples, in [−5, 5]: the
            quadrature is β·dI/dn. 0 (default) is the plain Gaussian. Without DRAG the
            20-sample π on the control has 1 − F ≈ 4e-3 from the |2⟩ level's phase
            error, more than the ECR's coherence limit; ``drag_for`` gives the
            first-order β from an anharmonicity (docs/cr_calibration.md, "Error budget").
    """

    half_samples: int = 120
    rise_samples: int = 16
    x_samples: int = 20
    x_drag: float = 0.0

    def __post_init__(self) -> None:
        for name, lo, hi in (("half_samples", 16, 1000), ("x_samples", 4, 200)):
            v = getattr(self, name)
            require(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi, f"ECRShape.{name}", v,
                    f"an integer in [{lo}, {hi}]")
        require(isinstance(self.rise_samples, int) and 1 <= self.rise_samples <= self.half_samples // 2,
                "ECRShape.rise_samples", self.rise_samples, f"an integer in [1, {self.half_samples // 2}]")
        v = finite("ECRShape.x_drag", self.x_drag)
        require(-5.0 <= v <= 5.0, "ECRShape.x_drag", v, "[-5, 5]")

    def envelope(self, n: int | None = None) -> FloatArray:
        """(n,) unit-height flat-top envelope with Gaussian edges (``half_samples`` default)."""
        n = self.half_samples if n is None else n
        r = min(self.rise_samples, n // 2)
        t = np.arange(n) + 0.5
        w = np.ones(n)
        if r > 0:
            s = r / 2.0
            lead = t < r
            w[lead] = np.exp(-0.5 * ((t[lead] - r) / s) ** 2)
            tail = t > n - r
            w[tail] = np.exp(-0.5 * ((t[tail] - (n - r)) / s) ** 2)
        return w


@dataclass(frozen=True)
class ECRKnobs:
    """The calibrated parameters of an ECR gate.

    Attributes:
        cr_amp: |u| of the CR drive (``drive:q0@q1``), in [0, 1].
        cr_phase_rad: its phase.
        cancel_amp: |u| of the target cancellation tone (``drive:q1``), in [0, 1].
        cancel_phase_rad: its phase.
    """

    cr_amp: float
    cr_phase_rad: float = 0.0
    cancel_amp: float = 0.0
    cancel_phase_rad: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cr_amp", "cancel_amp"):
            v = finite(f"ECRKnobs.{name}", getattr(self, name))
            require(0.0 <= v <= 1.0, f"ECRKnobs.{name}", v, "[0, 1]")
        for name in ("cr_phase_rad", "cancel_phase_rad"):
            finite(f"ECRKnobs.{name}", getattr(self, name))

    def as_array(self) -> FloatArray:
        return np.array([self.cr_amp, self.cr_phase_rad, self.cancel_amp, self.cancel_phase_rad])

    @classmethod
    def from_array(cls, a: FloatArray) -> ECRKnobs:
        return cls(float(a[0]), float(a[1]), float(a[2]), float(a[3]))


def cr_half_plays(knobs: ECRKnobs, shape: ECRShape, sign: float = 1.0, n: int | None = None) -> tuple[Play, Play]:
    """The two simultaneous plays of one CR half (both at the target's frame, so the engine
    needs no substeps): the CR drive and the cancellation tone, both negated for ``sign=-1``."""
    env = shape.envelope(n)
    cr = sign * knobs.cr_amp * np.exp(1j * knobs.cr_phase_rad) * env
    ca = sign * knobs.cancel_amp * np.exp(1j * knobs.cancel_phase_rad) * env
    return Play(cr.astype(np.complex128), channel=CR_CHANNEL), Play(ca.astype(np.complex128), channel=f"drive:{TARGET}")


def x_pi(shape: ECRShape, qubit: str, rabi_hz: float, dt_s: float, fraction: float = 1.0) -> Play:
    """A Gaussian (σ = n/4, lifted to 0 at the ends) rotation by ``fraction``·π about X on
    ``qubit``, scaled from the nominal Rabi frequency (u = 1 for t rotates by 2π·Ω·t); a
    square pulse would leak ~0.3 % into |2⟩ at 20 ns, more than the ECR's coherence limit.
    ``shape.x_drag`` ≠ 0 adds the DRAG quadrature β·dI/dn."""
    n = shape.x_samples
    t = np.arange(n) + 0.5
    g = np.exp(-0.5 * ((t - n / 2) / (n / 4)) ** 2)
    g = (g - g.min()) / (1 - g.min())
    amp = 0.5 * fraction / (rabi_hz * float(g.sum()) * dt_s)
    w = amp * g
    if shape.x_drag != 0.0:
        w = w + 1j * shape.x_drag * np.gradient(w)
    return Play(np.asarray(w, dtype=np.complex128), channel=f"drive:{qubit}")


def drag_for(anharmonicity_hz: float, dt_s: float) -> float:
    """First-order DRAG coefficient β (samples) for a qubit of anharmonicity α:
    Ω_Q = −Ω̇_I / (2·2πα) (Motzoi et al. 2009), so β = −1 / (4π·α·dt)."""
    a = finite("anharmonicity_hz", anharmonicity_hz)
    require(a != 0.0, "anharmonicity_hz", a, "!= 0 Hz")
    return float(-1.0 / (4 * math.pi * a * finite("dt_s", dt_s)))


def ecr_ops(knobs: ECRKnobs, shape: ECRShape, rabi_hz: float, dt_s: float) -> list[Any]:
    """The ECR: CR(+), π on the control, CR(−), with barriers so each part is sequential."""
    return [*cr_half_plays(knobs, shape, +1.0), Barrier(), x_pi(shape, CONTROL, rabi_hz, dt_s), Barrier(),
            *cr_half_plays(knobs, shape, -1.0), Barrier()]


def ecr_sequence(knobs: ECRKnobs, shape: ECRShape, rabi_hz: float, dt_s: float, repeats: int = 1,
                 control_excited: bool = False, undo_echo: bool = False) -> PulseSequence:
    """``repeats`` ECRs from |00⟩ (|10⟩ with ``control_excited``), both qubits measured.

    ``undo_echo`` adds a second π on the control after each ECR, making each repetition
    RZX(π/2) itself: repetitions of the ECR alone cancel its ZX angle pairwise
    (ECR² = I for any angle), repetitions of RZX(π/2) add it up, which is what amplifies
    an amplitude error."""
    ops: list[Any] = []
    if control_excited:
        ops += [x_pi(shape, CONTROL, rabi_hz, dt_s), Barrier()]
    for _ in range(repeats):
        ops += ecr_ops(knobs, shape, rabi_hz, dt_s)
        if undo_echo:
            ops += [x_pi(shape, CONTROL, rabi_hz, dt_s), Barrier()]
    return PulseSequence((*ops, Measure((CONTROL, TARGET))))


def tomography_sequences(knobs: ECRKnobs, shape: ECRShape, rabi_hz: float, dt_s: float,
                         n_samples: int | None = None) -> list[PulseSequence]:
    """Six sequences: control in |0⟩ then |1⟩, target measured along x, y, z after one CR
    half of ``n_samples`` (default the shape's half) from |0⟩. Order (control, basis)."""
    out = []
    half = x_pi(shape, TARGET, rabi_hz, dt_s, 0.5).waveform
    pre = {"x": Play(-1j * half, channel=f"drive:{TARGET}"),   # R_{−y}(π/2): x -> z
           "y": Play(half.copy(), channel=f"drive:{TARGET}")}  # R_x(π/2): y -> z
    # The six probes play the same CR half and control π pulse: built once, shared (plays
    # are immutable).
    flip = x_pi(shape, CONTROL, rabi_hz, dt_s)
    cr_half = cr_half_plays(knobs, shape, 1.0, n_samples)
    for ctrl in (0, 1):
        for basis in BASES:
            ops: list[Any] = []
            if ctrl:
                ops += [flip, Barrier()]
            ops += [*cr_half, Barrier()]
            if basis in pre:
                ops.append(pre[basis])
            ops.append(Measure((CONTROL, TARGET)))
            out.append(PulseSequence(tuple(ops)))
    return out


def bloch_from_counts(counts: NDArray[np.int64]) -> FloatArray:
    """(..., 6, 4) counts of ``tomography_sequences`` -> (..., 2, 3) target Bloch components
    ⟨x⟩, ⟨y⟩, ⟨z⟩ for control |0⟩ and |1⟩ (outcome columns |00⟩, |01⟩, |10⟩, |11⟩, the
    target the least significant digit), raw (no readout correction)."""
    c = np.asarray(counts, dtype=np.float64)
    t0 = c[..., 0] + c[..., 2]
    t1 = c[..., 1] + c[..., 3]
    e = (t0 - t1) / np.maximum(t0 + t1, 1.0)
    return e.reshape(*e.shape[:-1], 2, 3)


def half_cr_error(bloch: FloatArray) -> FloatArray:
    """(..., 2, 3) -> (...,) squared distance of the measured half-CR Bloch vectors from an
    ideal RZX(±π/4): no x components, no common y (IX), |Δy|/2 = sin π/4, mean z = cos π/4."""
    b = np.asarray(bloch)
    x0, y0, z0 = b[..., 0, 0], b[..., 0, 1], b[..., 0, 2]
    x1, y1, z1 = b[..., 1, 0], b[..., 1, 1], b[..., 1, 2]
    s, c = math.sin(HALF_ANGLE), math.cos(HALF_ANGLE)
    return np.asarray(x0 ** 2 + x1 ** 2 + (0.5 * (y0 + y1)) ** 2 + (0.5 * abs(y1 - y0) - s) ** 2
                      + (0.5 * (z0 + z1) - c) ** 2)


@dataclass(frozen=True)
class ECRTrueMetrics:
    """Simulation truth of one ECR setting (evaluation only)."""

    fidelity: float
    infidelity: float
    leakage: float
    coherence_limit: float
    duration_s: float


def ecr_truth(device: SimulatedMultiQubitDevice, knobs: ECRKnobs, shape: ECRShape, rabi_hz: float) -> ECRTrueMetrics:
    """The device's true ECR (one gate from its schedule propagator) scored against "ECR"
    after the best local virtual-Z phases, its leakage and the coherence limit of its
    duration; open or closed as the device runs (evaluation only)."""
    seq = ecr_sequence(knobs, shape, rabi_hz, device.dt_s)
    names, op = device.schedule_propagator(seq)
    model = device.current_model()
    assert isinstance(model, DeviceModel)
    sub = model.restrict(names)
    kind: metrics.OpKind = "superoperator" if device.open_system else "unitary"
    f = float(metrics.gate_fidelity(sub, op, "ECR", kind=kind, virtual_z=True).fidelity)
    leak = float(metrics.leakage(sub, op, kind=kind))
    duration = (2 * shape.half_samples + shape.x_samples) * device.dt_s
    lim = float(metrics.coherence_limit(sub, duration))
    return ECRTrueMetrics(f, 1.0 - f, leak, lim, duration)


def drive_rabi_hz(model: DeviceModel, name: str) -> float:
    """Mode ``name``'s full-scale Rabi frequency; a mode without a drive line cannot be a
    CR control or target."""
    r = model.mode(name).rabi_max_hz
    require(r is not None, f"Mode({name!r}).rabi_max_hz", r, "> 0 Hz: a CR pair needs both drive lines")
    assert r is not None
    return float(r)


def perturbative_rates_hz(model: DeviceModel, cr_amp: float) -> tuple[float, float]:
    """(ν_ZX, ν_IX)/2π in Hz at CR amplitude ``cr_amp`` from the first-order expressions of
    Magesan & Gambetta 2020 (docs/two_qubit_metrics.md: coefficients of Z⊗X and I⊗X)."""
    c, t = model.mode(CONTROL), model.mode(TARGET)
    j = model.coupling(CONTROL, TARGET).j_hz
    eps = 0.5 * drive_rabi_hz(model, CONTROL) * cr_amp  # ε/2π with ε = π·Ω_R·|u|
    delta = c.frequency_hz - t.frequency_hz
    a0 = c.anharmonicity_hz
    zx = -(j * eps / delta) * a0 / (delta + a0)
    ix = -j * eps / (delta + a0)
    return zx, ix


def nominal_knobs(model: DeviceModel, shape: ECRShape) -> ECRKnobs:
    """The setting the perturbative ZX rate predicts for a ZX angle π/4 per half, with no
    cancellation tone: what a lab starts from with only the device's spec sheet."""
    area_s = float(shape.envelope().sum()) * model.dt_s
    zx1, _ = perturbative_rates_hz(model, 1.0)  # linear in the amplitude at first order
    # H = ν·Z⊗X rotates the target by 2ν·t: the half needs 2·(2π·ν)·area = π/4.
    amp = min(1.0, (HALF_ANGLE / 2.0) / (2 * math.pi * abs(zx1) * area_s))
    return ECRKnobs(amp, 0.0 if zx1 < 0 else math.pi)


# -- the env core --------------------------------------------------------------------------


@dataclass(frozen=True)
class CRCalibrationConfig:
    """Settings of ``pulsecal/CRCalibration-v0`` (docs/cr_calibration.md).

    Attributes:
        preset: the multi-qubit preset (a fixed-frequency CR pair).
        randomize_device: draw each episode's device from ``MultiQubitSampler(preset)``
            (False: the preset itself).
        open_system: Lindblad (True) or closed-system devices (default: an open step
            costs ~1.3 s, six 120–140-sample sequences at ~0.2 s each plus the truth's
            superoperator, against ~20 ms closed; docs/cr_calibration.md).
        shape: the ECR's pulse shape.
        shots_per_sequence: shots of each of the six tomography sequences per step, in [16, 100000].
        shot_budget: shots per episode; the episode terminates when a step would exceed it.
        amp_start_spread: the start's CR amplitude is nominal × (1 + U(−s, s)), s in [0, 0.9].
        phase_start_spread_rad: start phase offsets U(−s, s), s in [0, π].
        cancel_start_max: start cancellation amplitude U(0, m), m in [0, 0.2].
        amp_step: largest relative CR amplitude change per step, in (0, 1].
        phase_step_rad: largest phase change per step, in (0, π].
        cancel_step: largest cancellation amplitude change per step, in (0, 0.2].
        verification: None (default), or ``rb2q.RB2QSettings`` (or a mapping of its fields):
            at the episode's end, interleaved two-qubit RB of the final ECR puts a
            ``Verdict`` into ``info["verdict"]``; its shots are counted in ``shots_used``
            on top of ``shot_budget`` (docs/two_qubit_rb.md).
        info_truth: when ``info`` carries the simulation truth (``truth_keys``): ``"step"``
            (default) after every step and reset; ``"end"`` only on the step that
            terminates the episode (the budget is spent), NaN elsewhere. The truth is
            evaluation-only and costs ~40 % of a step, so training runs use ``"end"``.
    """

    preset: str = "two_transmons_cr"
    randomize_device: bool = True
    open_system: bool = False
    shape: ECRShape = ECRShape()
    shots_per_sequence: int = 500
    shot_budget: int = 20_000
    amp_start_spread: float = 0.3
    phase_start_spread_rad: float = 0.5
    cancel_start_max: float = 0.03
    amp_step: float = 0.1
    phase_step_rad: float = 0.2
    cancel_step: float = 0.01
    verification: RB2QSettings | Mapping[str, Any] | None = None
    info_truth: str = "step"

    def __post_init__(self) -> None:
        require(self.info_truth in ("step", "end"), "CRCalibrationConfig.info_truth", self.info_truth,
                "one of ['step', 'end']")
        if isinstance(self.verification, Mapping):
            object.__setattr__(self, "verification", RB2QSettings.from_mapping(self.verification))
        require(self.verification is None or isinstance(self.verification, RB2QSettings),
                "CRCalibrationConfig.verification", self.verification, "None, an RB2QSettings or a mapping of its fields")
        require(isinstance(self.shape, ECRShape), "CRCalibrationConfig.shape", self.shape, "an ECRShape")
        s = self.shots_per_sequence
        require(isinstance(s, int) and not isinstance(s, bool) and 16 <= s <= 100_000,
                "CRCalibrationConfig.shots_per_sequence", s, "an integer in [16, 100000]")
        b = self.shot_budget
        require(isinstance(b, int) and not isinstance(b, bool) and b >= 6 * s,
                "CRCalibrationConfig.shot_budget", b, f"an integer >= 6 * shots_per_sequence = {6 * s}")
        for name, lo, hi, open_lo in (("amp_start_spread", 0.0, 0.9, False),
                                      ("phase_start_spread_rad", 0.0, math.pi, False),
                                      ("cancel_start_max", 0.0, 0.2, False), ("amp_step", 0.0, 1.0, True),
                                      ("phase_step_rad", 0.0, math.pi, True), ("cancel_step", 0.0, 0.2, True)):
            v = finite(f"CRCalibrationConfig.{name}", getattr(self, name))
            require((lo < v if open_lo else lo <= v) and v <= hi, f"CRCalibrationConfig.{name}", v,
                    f"{'(' if open_lo else '['}{lo}, {hi}]")
        get_multi_qubit_preset(self.preset)  # raises, naming the known presets

    def replace(self, **changes: Any) -> CRCalibrationConfig:
        return replace(self, **changes)


OBS_NAMES = ("x|c0", "y|c0", "z|c0", "x|c1", "y|c1", "z|c1", "cr_amp_rel", "cr_phase", "cancel_amp",
             "cancel_phase", "budget_left")


class CRCalibrationCore(BatchedCore):
    """N copies of ``CRCalibration-v0`` (the env file's docstring)."""

    def __init__(self, num_envs: int = 1, cfg: CRCalibrationConfig | None = None, **overrides: Any) -> None:
        super().__init__(num_envs)
        base = cfg if cfg is not None else CRCalibrationConfig()
        if not isinstance(base, CRCalibrationConfig):
            raise TypeError(f"cfg is {type(base).__name__}: allowed CRCalibrationConfig or None")
        self.cfg = base.replace(**overrides) if overrides else base
        self.preset = self.cfg.preset
        self.sampler = MultiQubitSampler(self.cfg.preset) if self.cfg.randomize_device else None
        self.gate = "ECR"
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (len(OBS_NAMES),), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.devices: list[SimulatedMultiQubitDevice | None] = [None] * self.num_envs
        self.knobs: list[ECRKnobs | None] = [None] * self.num_envs
        self.nominal: list[ECRKnobs | None] = [None] * self.num_envs
        self.shots_used = np.zeros(self.num_envs, dtype=np.int64)
        self.last_bloch = np.zeros((self.num_envs, 2, 3))

    def observation_names(self) -> tuple[str, ...]:
        return OBS_NAMES

    def _rabi_hz(self, i: int) -> float:
        dev = self.devices[i]
        assert dev is not None
        model = dev.params.model
        assert isinstance(model, DeviceModel)
        return drive_rabi_hz(model, CONTROL)

    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        unknown = set(options) - {"params"}
        if unknown:
            raise ValueError(f"reset options {sorted(unknown)} are unknown: allowed 'params'")
        rng = self.rngs[i]
        params = options.get("params")
        if params is None:
            params = (self.sampler.sample(rng) if self.sampler is not None
                      else get_multi_qubit_preset(self.cfg.preset).params)
        if not isinstance(params, MultiQubitParams) or not isinstance(params.model, DeviceModel):
            raise TypeError("options['params'] must be MultiQubitParams of a DeviceModel")
        dev_rng = np.random.Generator(np.random.PCG64(int(rng.integers(2 ** 63))))
        self.devices[i] = SimulatedMultiQubitDevice(params, rng=dev_rng, open_system=self.cfg.open_system)
        nom = nominal_knobs(params.model, self.cfg.shape)
        self.nominal[i], self.knobs[i] = nom, self._start_knobs(rng, nom)
        self.shots_used[i] = 0

    def _start_knobs(self, rng: np.random.Generator, nom: ECRKnobs) -> ECRKnobs:
        """A miscalibrated start around the spec-sheet setting ``nom`` (the env docstring)."""
        c = self.cfg
        return ECRKnobs(
            float(np.clip(nom.cr_amp * (1 + rng.uniform(-c.amp_start_spread, c.amp_start_spread)), 0, 1)),
            nom.cr_phase_rad + float(rng.uniform(-c.phase_start_spread_rad, c.phase_start_spread_rad)),
            float(rng.uniform(0, c.cancel_start_max)), float(rng.uniform(-math.pi, math.pi)))

    def _apply_action(self, i: int, action: FloatArray) -> None:
        k, nom, c = self.knobs[i], self.nominal[i], self.cfg
        assert k is not None and nom is not None
        self.knobs[i] = ECRKnobs(
            float(np.clip(k.cr_amp + c.amp_step * nom.cr_amp * action[0], 0.0, 1.0)),
            _wrap(k.cr_phase_rad + c.phase_step_rad * action[1]),
            float(np.clip(k.cancel_amp + c.cancel_step * action[2], 0.0, 1.0)),
            _wrap(k.cancel_phase_rad + c.phase_step_rad * action[3]))

    def ends_after_step(self, idx: list[int]) -> NDArray[np.bool_] | None:
        need = 6 * self.cfg.shots_per_sequence
        return np.array([self.shots_used[i] + 2 * need > self.cfg.shot_budget for i in idx])

    def _observe(self, step_idx: list[int], reset_idx: list[int]) -> tuple[
            FloatArray, FloatArray, NDArray[np.bool_], InfoColumns]:
        order = step_idx + reset_idx
        n = len(order)
        obs = np.zeros((n, len(OBS_NAMES)))
        rew = np.zeros(n)
        term = np.zeros(n, dtype=np.bool_)
        cols: dict[str, list[Any]] = {k: [] for k in (*self.truth_keys, "shots_used", "device_time_s",
                                                      "measured_error", "knobs", "waveform", "dt_s")}
        shots = self.cfg.shots_per_sequence
        for j, i in enumerate(order):
            dev, k, nom = self.devices[i], self.knobs[i], self.nominal[i]
            assert dev is not None and k is not None and nom is not None
            rabi = self._rabi_hz(i)
            counts = dev.run(tomography_sequences(k, self.cfg.shape, rabi, dev.dt_s), shots)
            self.shots_used[i] += 6 * shots
            bloch = bloch_from_counts(counts)
            self.last_bloch[i] = bloch
            err = float(half_cr_error(bloch))
            if j < len(step_idx):
                rew[j] = -err
                term[j] = self.shots_used[i] + 6 * shots > self.cfg.shot_budget
            left = 1.0 - self.shots_used[i] / self.cfg.shot_budget
            obs[j] = np.clip(np.concatenate([
                bloch.reshape(-1),
                [k.cr_amp / nom.cr_amp - 1.0, k.cr_phase_rad / math.pi, k.cancel_amp / 0.2,
                 k.cancel_phase_rad / math.pi, 2 * left - 1]]), -1.0, 1.0)
            if self.cfg.verification is not None:
                verdict = None
                if j < len(step_idx) and term[j]:
                    verdict = end_of_episode_verdict(dev, "ECR", ecr_ops(k, self.cfg.shape, rabi, dev.dt_s),
                                                     self.cfg.verification,
                                                     get_multi_qubit_preset(self.cfg.preset).params.model)
                    self.shots_used[i] += verdict.shots_used
                cols.setdefault("verdict", []).append(verdict)
                cols.setdefault("verification_shots", []).append(0 if verdict is None else verdict.shots_used)
            self.truth_due = self.cfg.info_truth == "step" or (j < len(step_idx) and bool(term[j]))
            for key, value in self._truth_info(dev, k, rabi, err).items():
                cols[key].append(value)
            cols["shots_used"].append(int(self.shots_used[i]))
            cols["device_time_s"].append(dev.clock_s)
            cols["measured_error"].append(err)
            cols["knobs"].append(k.as_array())
            cols["waveform"].append(cr_half_plays(k, self.cfg.shape)[0].waveform)
            cols["dt_s"].append(dev.dt_s)
        return obs, rew, term, InfoColumns({key: np.asarray(v) for key, v in cols.items()})

    # The info entries ``_truth_info`` adds (first in the info, in this order).
    truth_keys: tuple[str, ...] = ("fidelity", "infidelity", "leakage", "coherence_limit")
    # Whether the info being built carries the truth (``info_truth``); set per copy by ``_observe``.
    truth_due: bool = True

    def _truth_info(self, dev: Any, k: ECRKnobs, rabi: float, measured_error: float) -> dict[str, float]:
        """The ``truth_keys`` entries of one copy's info: the simulation truth of its setting
        (evaluation only: info, never the observation or the reward); NaN when
        ``info_truth`` skips this info."""
        if not self.truth_due:
            return dict.fromkeys(self.truth_keys, math.nan)
        truth = ecr_truth(dev, k, self.cfg.shape, rabi)
        return {"fidelity": truth.fidelity, "infidelity": truth.infidelity, "leakage": truth.leakage,
                "coherence_limit": truth.coherence_limit}

    def render_copy(self, i: int) -> NDArray[np.uint8]:
        """Six bars: the target's Bloch components (control |0⟩ blue, |1⟩ red), 0 at mid height."""
        img = np.full((64, 96, 3), 255, dtype=np.uint8)
        img[32, :, :] = 0
        for j, v in enumerate(self.last_bloch[i].reshape(-1)):
            h = round(30 * float(np.clip(v, -1, 1)))
            x0 = 4 + 15 * j
            lo, hi = (32 - h, 32) if h > 0 else (32, 32 - h)
            img[lo:hi + 1, x0:x0 + 10] = (40, 80, 220) if j < 3 else (220, 60, 40)
        return img


def _wrap(x: float) -> float:
    return float((x + math.pi) % (2 * math.pi) - math.pi)
