"""qibolab 0.2 adapter: pulse programs on any qibolab platform (emulator offline, instruments in a lab).

A lab user points it at their own platform folder the way qibolab finds platforms:
``QIBOLAB_PLATFORMS=/path/to/platforms`` and ``QibolabBackend("my_chip")`` (or pass a
``qibolab.Platform`` object). Offline, the same code runs on qibolab's EMULATOR platform
(a lab-frame Lindblad simulation with QuTiP) and on ``"dummy"`` (random counts, plumbing).

How the IR maps onto a qibolab ``PulseSequence`` (one drive channel per IR frame):

- ``FramePlay``: ``Gaussian`` → qibolab ``Gaussian(rel_sigma=σ/T)``, ``Drag`` → qibolab
  ``Drag(rel_sigma=σ/T, beta=β_s/dt_s)``, ``Constant`` → ``Rectangular``; qibolab samples
  its Gaussian at bin centres (scipy's window, centre (N−1)/2), which is the IR's mid-point
  convention, so these are sample-for-sample the IR's waveform. qibolab's Drag has
  Q = β·dI/dk with β in *samples*, hence β_samples = β_s/dt_s, same sign. Lifted
  (``zero_at_edges``) shapes and ``Sampled`` waveforms go as ``Custom`` I/Q arrays
  rendered on the platform grid (the IR's resampler). ``angle`` becomes ``relative_phase``
  with the virtual-Z sign below. Plays are zero-padded to the granularity with a ``FrameDelay``.
- ``ShiftPhase(θ)`` → ``VirtualZ(phase = virtual_z_sign·θ)``. The default sign −1 was
  measured on qibolab's emulator (Ramsey with a known detuning, see the tests): its drive
  term is Ω·(I·cos φ + Q·sin φ)·σ_y with φ = ω_d·t + relative_phase + Σ VirtualZ, which in the
  drive frame is our u = i·e^{−iφ}·(I + iQ): I + iQ maps to u unchanged (up to a global
  frame phase that no Z measurement sees) and a qibolab phase φ multiplies later waveforms
  by e^{−iφ}. qibolab's gate compiler uses the opposite reading (RZ(θ) → VirtualZ(−θ)), and
  instrument drivers and mixer wiring can flip it again, so check it once per platform with
  the Ramsey sign test and pass ``virtual_z_sign=+1`` if needed.
- ``SetFrequency``/``ShiftFrequency`` before the first timed instruction of a frame set the
  channel's carrier for the job (qibolab ``updates``); later changes are rejected (qibolab
  0.2 has no in-sequence frequency instruction). A frame declared at a frequency other than
  the channel's configured one also becomes an update.
- ``FrameDelay``/``FrameBarrier`` → qibolab ``Delay`` on the channels, with the IR renderer's rounding.
- ``Acquire(q)`` → the platform's native ``MZ`` sequence of qubit q, piped after all drives
  (single-shot, state discrimination); counts are (#0, #1) with every level ≥ 1 read as 1.

Qubits: IR qubit i is the platform's i-th qubit (``qubits=`` picks and orders them); its
drive channel is the frame ``q<i>_drive`` (``Capabilities.drive_frames``), so a session of
qubit i (``ReplaySettings.qubit``) plays there and reads qubit i's ``MZ``.

Kills and exactly-once. ``platform.execute`` is synchronous: ``submit`` returns after the
job ran, and the only record of it is this object's memory (``find`` knows only jobs this
object ran). There is no remote handle to recover after a kill, so a session killed during
a device call re-runs that call's jobs when it resumes. The replay session accounts for
it: each job that may have run in the killed process (its ``submitting`` journal record)
is journaled as ``orphaned`` and charged again in the ledger before its re-run, so the
ledger equals the shots the instruments really played (``pulsecal.hardware.replay``,
``tests/hardware/test_qibolab_resume.py``). On real instruments the re-run also costs
device time; keep device calls short if kills are likely.

Units: qibolab times are ns and its sampling rate is GSa/s; everything here is converted
once, at the boundary.

The emulator's physics relative to ours, and ``emulator_transmon`` which builds the
matching ``Transmon``: ``qibolab_emulator``.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import (
    Artifact,
    BackendError,
    Capabilities,
    JobHandle,
    Result,
    TransientBackendError,
    Violation,
    validate_against,
)
from ..guard import require_clearance
from ..ir import (
    Acquire,
    Constant,
    Drag,
    Frame,
    FrameBarrier,
    FrameDelay,
    FramePlay,
    Gaussian,
    Program,
    Sampled,
    SetFrequency,
    SetPhase,
    ShiftFrequency,
    ShiftPhase,
)
from .qibolab_emulator import emulator_transmon

if TYPE_CHECKING:
    from pulsecal.envs.physics import Transmon

_EXTRA = "pip install 'pulsecal[qibolab]'"
_NS = 1e-9


def _import_qibolab() -> Any:
    try:
        import qibolab
    except ImportError as e:  # the extra is optional; say which one to install
        raise ImportError(f"the qibolab adapter needs qibolab 0.2: {_EXTRA}") from e
    return qibolab


@dataclass(frozen=True, eq=False)
class QibolabJob:
    """The compiled artifact payload: what ``platform.execute`` receives.

    ``sequence`` is a qibolab ``PulseSequence``; ``updates`` the channel-config updates
    (carrier frequencies) for this job; ``acquisition`` the id of the first readout and
    ``qubit`` its platform qubit; ``acquisitions``/``qubits`` every readout of the job in
    the program's Acquire order (one bit each of the counts' bitstrings, first the most
    significant).
    """

    sequence: Any
    updates: tuple[Mapping[str, Mapping[str, float]], ...]
    acquisition: Any
    qubit: Any
    acquisitions: tuple[Any, ...] = ()
    qubits: tuple[Any, ...] = ()


@dataclass
class _Done:
    handle: JobHandle
    result: Result


@dataclass
class _FrameState:
    channel: str
    ref_hz: float
    freq_hz: float
    phase: float = 0.0  # total virtual phase applied so far, in our convention
    cursor: int = 0  # samples
    timed: bool = False  # a FramePlay or FrameDelay has happened on this frame
    flux: bool = False  # a baseband flux line: real samples, no carrier
    elements: list[Any] = field(default_factory=list)


class QibolabBackend:
    """A ``Backend`` over a qibolab 0.2 platform.

    Args:
        platform: a platform name found through ``QIBOLAB_PLATFORMS`` (or ``"dummy"``), or
            a ``qibolab.Platform`` object.
        qubits: platform qubit ids exposed as IR qubits 0, 1, ...; default all, in the
            platform's order.
        max_amplitude: amplitude limit |u| (qibolab normalises pulse amplitudes to full
            scale 1; lower it for a device whose safe drive is smaller), in (0, 1].
        granularity: waveform/delay lengths are padded to a multiple of this many samples
            (Qblox: 1 on a 1 ns grid; Zurich: 16).
        min_samples: shortest waveform in samples (Qblox: 4).
        max_samples: longest waveform in samples (Qblox: 16384).
        max_shots: most shots per job.
        virtual_z_sign: qibolab ``VirtualZ.phase`` per unit of our ``ShiftPhase``; −1 for
            the emulator (measured), check real instruments with a Ramsey sign test.
        relaxation_time_s: wait between shots; None uses the platform's setting.
    """

    # compile reads the program and the platform's channel configuration and natives, which
    # the frames and Capabilities were built from at construction (a platform whose
    # configuration changes needs a new backend object anyway); qibolab's execute builds new
    # aligned sequences and copies the configs, leaving the PulseSequence as it was.
    reusable_artifacts = True

    def __init__(
        self,
        platform: Any,
        *,
        qubits: Sequence[Any] | None = None,
        max_amplitude: float = 1.0,
        granularity: int = 1,
        min_samples: int = 1,
        max_samples: int = 16384,
        max_shots: int = 100_000,
        virtual_z_sign: int = -1,
        relaxation_time_s: float | None = None,
    ) -> None:
        qibolab = _import_qibolab()
        if isinstance(platform, str):
            platform = qibolab.create_platform(platform)
        if not isinstance(platform, qibolab.Platform):
            raise TypeError(f"QibolabBackend.platform is {type(platform).__name__}: allowed a "
                            "platform name or a qibolab.Platform")
        if virtual_z_sign not in (-1, 1):
            raise ValueError(f"QibolabBackend.virtual_z_sign={virtual_z_sign!r}: allowed -1 or +1")
        if not (isinstance(max_amplitude, int | float) and 0 < max_amplitude <= 1):
            raise ValueError(f"QibolabBackend.max_amplitude={max_amplitude!r}: allowed (0, 1] "
                             "(qibolab amplitudes are normalised to full scale 1)")
        if relaxation_time_s is not None and not (math.isfinite(relaxation_time_s)
                                                   and relaxation_time_s >= 0):
            raise ValueError(f"QibolabBackend.relaxation_time_s={relaxation_time_s!r}: "
                             "allowed None or a finite value >= 0 s")
        self.platform = platform
        self.name = f"qibolab:{platform.name}"
        ids = list(platform.qubits) if qubits is None else list(qubits)
        missing = [q for q in ids if q not in platform.qubits]
        if missing or not ids:
            raise ValueError(f"QibolabBackend.qubits={ids!r}: allowed a non-empty subset of "
                             f"{list(platform.qubits)}")
        self._qubit_ids = ids
        self._vz_sign = int(virtual_z_sign)
        self._relaxation_ns = None if relaxation_time_s is None else round(relaxation_time_s / _NS)
        rate_gsps = platform.sampling_rate
        if not (isinstance(rate_gsps, int | float) and math.isfinite(rate_gsps) and rate_gsps > 0):
            raise BackendError(f"platform {platform.name!r} sampling_rate={rate_gsps!r}: "
                               "allowed a finite rate > 0 GSa/s (is a controller registered?)")
        self._rate_gsps = float(rate_gsps)
        self.dt_s = 1.0 / (self._rate_gsps * 1e9)
        frames = []
        drive: dict[int, str] = {}
        sample_time: dict[str, float] = {}
        for i, q in enumerate(ids):
            ch = platform.qubits[q].drive
            if ch is None:
                continue
            frames.append(Frame(f"q{i}_drive", ch, float(platform.config(ch).frequency)))
            drive[i] = f"q{i}_drive"
            sample_time[ch] = self.dt_s
        # Two-qubit frames after the drive frames, so a platform without them exposes exactly
        # what it did before: a cross-resonance channel (``drive_extra`` keyed by the target
        # qubit: this qubit's line at the target's frequency) and a flux line per qubit.
        for i, q in enumerate(ids):
            for target, ch in platform.qubits[q].drive_extra.items():
                if target in ids:
                    j = ids.index(target)
                    frames.append(Frame(f"q{i}_q{j}_cr", ch, float(platform.config(ch).frequency), kind="cr"))
                    sample_time[ch] = self.dt_s
            ch = platform.qubits[q].flux
            if ch is not None:
                frames.append(Frame(f"q{i}_flux", ch, 0.0, kind="flux"))
                sample_time[ch] = self.dt_s
        if not frames:
            raise BackendError(f"platform {platform.name!r} has no drive channel on qubits {ids}")
        self._caps = Capabilities(
            sample_time_s=sample_time, frames=tuple(frames), qubits=tuple(range(len(ids))),
            granularity=granularity, min_samples=min_samples, max_samples=max_samples,
            amplitude_limit=float(max_amplitude),
            native_waveforms=frozenset({"gaussian", "drag", "constant"}), max_shots=max_shots,
            drive_frames=drive)
        self._done: dict[str, _Done] = {}
        self._connected = False

    def transmon_model(self, qubit: int = 0) -> Transmon | None:
        """Our ``Transmon`` of IR qubit ``qubit`` on an emulator platform (the textbook start
        of a session); None on real instruments, whose model only the lab knows."""
        try:
            return emulator_transmon(self.platform, self.platform_qubit(qubit))
        except (ValueError, KeyError, AttributeError):
            return None

    def platform_qubit(self, qubit: int) -> Any:
        """The platform's id of IR qubit ``qubit`` (``emulator_transmon`` takes it)."""
        if isinstance(qubit, bool) or not isinstance(qubit, int) or not 0 <= qubit < len(self._qubit_ids):
            raise ValueError(f"qubit={qubit!r}: allowed 0..{len(self._qubit_ids) - 1} "
                             f"(platform qubits {self._qubit_ids})")
        return self._qubit_ids[qubit]

    # -- Backend protocol ---------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return self._caps

    def validate(self, program: Program) -> list[Violation]:
        """Shared checks plus what qibolab 0.2 cannot express (pure)."""
        out = validate_against(program, self._caps)
        if out:
            return out
        timed: set[str] = set()
        detuned: set[str] = set()
        flux = {f.name for f in self._caps.frames if f.kind == "flux"}
        for i, ins in enumerate(program.instructions):
            where = f"instructions[{i}]"
            if isinstance(ins, SetFrequency | ShiftFrequency | ShiftPhase | SetPhase) and ins.frame in flux:
                out.append(Violation("flux_frame", type(ins).__name__, "no phase or frequency "
                                     "instruction on a flux frame (baseband, real samples)", where))
            elif isinstance(ins, SetFrequency | ShiftFrequency):
                if ins.frame in timed:
                    out.append(Violation("frequency_change", type(ins).__name__,
                                         "only before the frame's first FramePlay or FrameDelay (qibolab 0.2 "
                                         "sets carriers per job)", where))
                detuned.add(ins.frame)
            elif isinstance(ins, SetPhase) and ins.frame in detuned:
                out.append(Violation("set_phase", ins.frame, "SetPhase only on frames at their "
                                     "declared frequency", where))
            elif isinstance(ins, FramePlay):
                timed.add(ins.frame)
            elif isinstance(ins, FrameDelay):
                timed.update(ins.frames or [f.name for f in program.frames])
            elif isinstance(ins, Acquire):
                q = self._qubit_ids[ins.qubit]
                natives = self.platform.natives.single_qubit.get(q)
                if natives is None or natives.MZ is None:
                    out.append(Violation("acquire", ins.qubit, "a qubit with a native MZ", where))
        return out

    def compile(self, program: Program) -> Artifact:
        """IR → qibolab ``PulseSequence`` (see the module docstring for the mapping)."""
        v = self.validate(program)
        if v:
            raise BackendError("program rejected by qibolab backend: " + "; ".join(map(str, v)))
        job = self._to_sequence(program)
        return Artifact(program, program.content_hash(), self._caps.render(program), job)

    def submit(self, artifact: Artifact, shots: int, job_key: str) -> JobHandle:
        """Run the cleared artifact now (qibolab executes synchronously); idempotent on
        ``job_key`` within this backend object."""
        require_clearance(artifact, shots, job_key)
        done = self._done.get(job_key)
        if done is not None:
            return done.handle
        job, raw = self._execute(artifact, shots, "DISCRIMINATION")
        acqs = job.acquisitions or (job.acquisition,)
        bits = []
        for acq in acqs:
            states = np.asarray(raw[acq]).reshape(-1)
            if states.size != shots:
                raise BackendError(f"qibolab returned {states.size} single shots: expected {shots}")
            bits.append(states >= 0.5)
        handle = JobHandle(f"{self.name}:{uuid.uuid4().hex}", job_key)
        meta: dict[str, Any] = {"job_id": handle.job_id, "backend": self.name,
                                "platform": self.platform.name, "qubit": str(job.qubit),
                                "shots": int(shots)}
        if len(bits) == 1:
            n1 = int(np.count_nonzero(bits[0]))
            counts = {"0": int(shots) - n1, "1": n1}
        else:
            # Both readouts come from the same shots, so the bitstrings keep correlations.
            meta["qubits"] = [str(q) for q in job.qubits]
            index = np.zeros(int(shots), dtype=np.int64)
            for b in bits:
                index = 2 * index + b
            k = len(bits)
            hist = np.bincount(index, minlength=2**k)
            counts = {format(v, f"0{k}b"): int(n) for v, n in enumerate(hist)}
        self._done[job_key] = _Done(handle, Result(counts, meta))
        return handle

    def iq_refusal(self) -> str | None:
        """Why this platform gives no single-shot IQ points to classify (None: it does).

        qibolab's own controllers say so in their source (this project pins qibolab 0.2):
        the emulator answers ``AcquisitionType.INTEGRATION`` with the state it samples as I
        and Q = 0, zero-width blobs with no readout noise to fit
        (``instruments/emulator/results.py``), and the dummy with uniform noise in
        [0, 100) that does not depend on the state. A platform of real instruments returns
        the integrated I, Q of every shot."""
        controller = type(getattr(self.platform, "_controller", None)).__name__
        version = getattr(_import_qibolab(), "__version__", "0.2")
        if controller == "EmulatorController":
            return (f"qibolab {version}'s emulator answers AcquisitionType.INTEGRATION with the sampled state as I "
                    "and Q = 0 (zero-width blobs at (0, 0) and (1, 0), no readout noise to fit): allowed a "
                    "platform of real instruments")
        if controller == "DummyInstrument":
            return (f"qibolab {version}'s dummy platform answers AcquisitionType.INTEGRATION with uniform noise "
                    "that does not depend on the state: allowed a platform of real instruments")
        return None

    def submit_iq(self, artifact: Artifact, shots: int, job_key: str) -> JobHandle:
        """As ``submit``, acquiring single-shot integrated IQ (``AcquisitionType.INTEGRATION``,
        ``AveragingMode.SINGLESHOT``); ``result`` then carries the points in
        ``metadata["iq"]``, (shots, k, 2) for the k readouts in Acquire order, and no counts."""
        require_clearance(artifact, shots, job_key)
        done = self._done.get(job_key)
        if done is not None:
            return done.handle
        reason = self.iq_refusal()
        if reason is not None:
            raise BackendError(f"{self.name}: no single-shot IQ: {reason}")
        job, raw = self._execute(artifact, shots, "INTEGRATION")
        points = []
        for acq in job.acquisitions or (job.acquisition,):
            a = np.asarray(raw[acq], dtype=np.float64)
            # qibolab's results_shape: (nshots, 2) for INTEGRATION with SINGLESHOT
            if a.shape != (int(shots), 2):
                raise BackendError(f"qibolab returned integrated shots of shape {a.shape}: expected ({shots}, 2)")
            points.append(a)
        handle = JobHandle(f"{self.name}:{uuid.uuid4().hex}", job_key)
        meta: dict[str, Any] = {"job_id": handle.job_id, "backend": self.name, "platform": self.platform.name,
                                "qubits": [str(q) for q in (job.qubits or (job.qubit,))], "shots": int(shots),
                                "iq": np.stack(points, axis=1)}
        self._done[job_key] = _Done(handle, Result({}, meta))
        return handle

    def _execute(self, artifact: Artifact, shots: int, acquisition: str) -> tuple[QibolabJob, Any]:
        """``platform.execute`` of a cleared artifact's job, single shot, with ``acquisition``
        (an ``AcquisitionType`` name); qibolab's refusals and failed integrations mapped."""
        job = artifact.payload
        if not isinstance(job, QibolabJob):
            raise BackendError(f"artifact payload is {type(job).__name__}: allowed a QibolabJob "
                               "from QibolabBackend.compile")
        qibolab = _import_qibolab()
        if not self._connected:
            self.platform.connect()
            self._connected = True
        options: dict[str, Any] = {
            "nshots": int(shots),
            "averaging_mode": qibolab.AveragingMode.SINGLESHOT,
            "acquisition_type": getattr(qibolab.AcquisitionType, acquisition),
            "updates": [dict(u) for u in job.updates],
        }
        if self._relaxation_ns is not None:
            options["relaxation_time"] = self._relaxation_ns
        try:
            raw = self.platform.execute([job.sequence], **options)
        except ValueError as e:
            if isinstance(e.__cause__, SystemError):
                # scipy's ODE wrapper turns any exception inside the emulator's right-hand
                # side into this ValueError (from a SystemError); the same program runs on a
                # second try (measured on pulsecal_emulator_2q_coupled), so it is a failed
                # integration, not a refused sequence, and nothing ran: worth retrying.
                raise TransientBackendError(f"qibolab's integrator failed: {e} (from {e.__cause__!r})") from e
            raise BackendError(f"qibolab rejected the sequence: {type(e).__name__}: {e}") from e
        except (TypeError, KeyError) as e:
            raise BackendError(f"qibolab rejected the sequence: {type(e).__name__}: {e}") from e
        return job, raw

    def find(self, job_key: str) -> JobHandle | None:
        """Jobs this object ran (execution is synchronous and leaves nothing remote: after a
        process restart every key is unknown, and the session re-runs it, charged)."""
        done = self._done.get(job_key)
        return None if done is None else done.handle

    def result(self, handle: JobHandle, timeout_s: float) -> Result:
        done = self._done.get(handle.job_key)
        if done is None or done.handle.job_id != handle.job_id:
            raise BackendError(f"job {handle.job_id!r} (key {handle.job_key!r}) was not run by "
                               f"{self.name}")
        return done.result

    def close(self) -> None:
        if self._connected:
            self.platform.disconnect()
            self._connected = False

    # -- compilation --------------------------------------------------------------------------

    def _duration_ns(self, n: int) -> float:
        """A duration of exactly n samples for qibolab, which truncates int(duration·rate)."""
        d = n / self._rate_gsps
        while int(d * self._rate_gsps) < n:  # float noise, e.g. 20/2.4*2.4 = 19.999...
            d = math.nextafter(d, math.inf)
        return d

    def _pulse(self, wf: Any, n: int, extra_angle: float = 0.0) -> Any:
        qibolab = _import_qibolab()
        dur = self._duration_ns(n)
        sgn = self._vz_sign
        if isinstance(wf, Gaussian) and not wf.zero_at_edges:
            return qibolab.Pulse(duration=dur, amplitude=wf.amplitude,
                                 envelope=qibolab.Gaussian(rel_sigma=wf.sigma_s / wf.duration_s),
                                 relative_phase=sgn * (wf.angle + extra_angle))
        if isinstance(wf, Drag) and not wf.zero_at_edges:
            return qibolab.Pulse(duration=dur, amplitude=wf.amplitude,
                                 envelope=qibolab.Drag(rel_sigma=wf.sigma_s / wf.duration_s,
                                                       beta=wf.beta_s / self.dt_s),
                                 relative_phase=sgn * (wf.angle + extra_angle))
        if isinstance(wf, Constant):
            return qibolab.Pulse(duration=dur, amplitude=wf.amplitude,
                                 envelope=qibolab.Rectangular(),
                                 relative_phase=sgn * (wf.angle + extra_angle))
        w = self._samples(wf) * np.exp(1j * extra_angle)
        # Custom I/Q go out as-is; their phase is in the samples, so conjugate-free: the
        # emulator check shows I + iQ maps to u directly.
        return qibolab.Pulse(duration=dur, amplitude=1.0,
                             envelope=qibolab.Custom(i_=np.ascontiguousarray(w.real),
                                                     q_=np.ascontiguousarray(w.imag)))

    def _flux_pulse(self, wf: Any, n: int) -> Any:
        # The emulator's flux term reads the I envelope only: the real samples go there.
        qibolab = _import_qibolab()
        x = np.ascontiguousarray(self._samples(wf).real)
        return qibolab.Pulse(duration=self._duration_ns(n), amplitude=1.0,
                             envelope=qibolab.Custom(i_=x, q_=np.zeros_like(x)))

    def _samples(self, wf: Any) -> np.ndarray:
        if isinstance(wf, Sampled):
            return np.asarray(wf.samples_on(self.dt_s))
        return np.asarray(wf.samples(self.dt_s))

    def _n_samples(self, wf: Any) -> int:
        return int(self._samples(wf).size)

    def _pad(self, n: int, *, play: bool) -> int:
        g = self._caps.granularity
        if play:
            n = max(n, self._caps.min_samples)
        return -(-n // g) * g

    def _to_sequence(self, program: Program) -> QibolabJob:
        qibolab = _import_qibolab()
        caps_frames = {f.name: f for f in self._caps.frames}
        st: dict[str, _FrameState] = {}
        for f in program.frames:
            ch = caps_frames[f.name].port
            st[f.name] = _FrameState(channel=ch, ref_hz=f.frequency_hz, freq_hz=f.frequency_hz,
                                     phase=f.phase, flux=caps_frames[f.name].kind == "flux")
        order: list[tuple[str, Any]] = []

        def emit(name: str, element: Any) -> None:
            order.append((st[name].channel, element))

        for name, s0 in st.items():
            if s0.phase != 0.0:  # a frame declared with an initial phase offset
                emit(name, qibolab.VirtualZ(phase=self._vz_sign * s0.phase))

        def wait(name: str, n: int) -> None:
            if n > 0:
                emit(name, qibolab.Delay(duration=self._duration_ns(n)))
                st[name].cursor += n
                st[name].timed = True

        acq_qubits: list[Any] = []
        for ins in program.instructions:
            if isinstance(ins, FramePlay):
                s = st[ins.frame]
                n = self._n_samples(ins.waveform)
                # The frame's accumulated phase rides on the pulse as VirtualZ elements
                # already emitted, so the pulse carries only its own angle.
                emit(ins.frame, self._flux_pulse(ins.waveform, n) if s.flux else self._pulse(ins.waveform, n))
                s.cursor += n
                s.timed = True
                wait(ins.frame, self._pad(n, play=True) - n)
            elif isinstance(ins, ShiftPhase):
                st[ins.frame].phase += ins.phase
                emit(ins.frame, qibolab.VirtualZ(phase=self._vz_sign * ins.phase))
            elif isinstance(ins, SetPhase):
                delta = ins.phase - st[ins.frame].phase
                st[ins.frame].phase = ins.phase
                emit(ins.frame, qibolab.VirtualZ(phase=self._vz_sign * delta))
            elif isinstance(ins, SetFrequency):
                st[ins.frame].freq_hz = ins.frequency_hz
            elif isinstance(ins, ShiftFrequency):
                st[ins.frame].freq_hz += ins.frequency_hz
            elif isinstance(ins, FrameDelay):
                n = round(ins.duration_s / self.dt_s)
                n = self._pad(n, play=False) if n > 0 else 0
                for name in ins.frames or tuple(st):
                    wait(name, n)
            elif isinstance(ins, FrameBarrier):
                names = list(ins.frames or tuple(st))
                top = max(st[x].cursor for x in names)
                for x in names:
                    wait(x, top - st[x].cursor)
            elif isinstance(ins, Acquire):
                # validate() keeps Acquires at the end: they form one simultaneous readout.
                acq_qubits.append(self._qubit_ids[ins.qubit])
        if not acq_qubits:  # validate() guarantees an Acquire; keep mypy and readers sure
            raise BackendError("program has no Acquire")
        top = max(s.cursor for s in st.values())
        for x in st:
            wait(x, top - st[x].cursor)
        mz = qibolab.PulseSequence()
        ids = []
        for q in acq_qubits:
            one = self.platform.natives.single_qubit[q].MZ.create_sequence()
            ids.append(one.acquisitions[-1][1].id)
            mz.extend(one)  # readout channels of different qubits: they start together
        seq = qibolab.PulseSequence(order)
        seq |= mz  # qibolab's pipe: the readouts start after every drive ends
        updates: dict[str, dict[str, float]] = {}
        for s in st.values():
            if s.flux:
                continue
            configured = float(self.platform.config(s.channel).frequency)
            if s.freq_hz != configured:
                updates[s.channel] = {"frequency": s.freq_hz}
        return QibolabJob(seq, (updates,) if updates else (), ids[0], acq_qubits[0],
                          tuple(ids), tuple(acq_qubits))


def qibolab_backend(platform: str, *, platforms_dir: str | None = None, virtual_z_sign: int = -1,
                    emulator_seed: int | None = None) -> QibolabBackend:
    """A ``QibolabBackend`` on the platform named ``platform`` (``configs/backend/qibolab_emulator.yaml``).

    qibolab finds platforms through ``QIBOLAB_PLATFORMS``: it is set to ``platforms_dir``
    when given, else kept when already set, else pointed at the emulator platforms that
    ship with pulsecal (``pulsecal.hardware.package_data``).

    ``emulator_seed``: qibolab's emulator samples its shots from NumPy's legacy global
    generator, so seeding it here makes an emulator session's counts the same on every run
    of the same command (instruments ignore it); None leaves the generator as it is.
    """
    from ..package_data import emulator_platforms_dir

    if emulator_seed is not None:
        if isinstance(emulator_seed, bool) or not isinstance(emulator_seed, int) or not 0 <= emulator_seed < 2**32:
            raise ValueError(f"emulator_seed={emulator_seed!r}: allowed None or an integer in [0, 2**32)")
        np.random.seed(emulator_seed)  # noqa: NPY002

    folder = platforms_dir or os.environ.get("QIBOLAB_PLATFORMS") or str(emulator_platforms_dir())
    os.environ["QIBOLAB_PLATFORMS"] = str(folder)
    return QibolabBackend(platform, virtual_z_sign=int(virtual_z_sign))
