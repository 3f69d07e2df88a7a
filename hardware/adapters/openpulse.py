"""OpenPulse / Amazon Braket adapter: pulse programs as OpenQASM 3 + OpenPulse ``cal`` blocks.

Braket exposes pulse control on Rigetti devices as OpenQASM 3 with OpenPulse ``cal``
blocks over predefined frames (``q0_rf_frame`` drives qubit 0, ``q0_ro_rx_frame`` captures
it). There is no local pulse simulator, so this adapter works from stored device
properties (``pulsecal/hardware/data/braket_rigetti_pulse.json``, Braket's
``PulseDeviceActionProperties`` layout; replace it with ``AwsDevice(arn).properties.pulse``
of the real device) and proves every compiled program offline before it can be submitted:
the text must parse and round-trip through the ``openpulse`` reference parser, pass our
semantic pass, and its trace — rendered from the *parsed text* with Braket's waveform
definitions — is the artifact's trace, which the guard compares with the program's own
render (``pulsecal.hardware.adapters._openqasm``).

The text is written with Braket's own serializer (``braket.pulse.PulseSequence``), not
with oqpy directly: it is the code path Braket's service is built to accept (the ``psb``
capture register, predefined-frame references, duration and complex literal formats,
``drag_gaussian`` argument order), while oqpy would make us re-derive that dialect by hand.
Waveform ids are deterministic (``wf0``, ``wf1``, ...), so the same program always gives
the same text.

Mapping from the IR: ``FramePlay`` → ``play`` (``Constant`` → ``constant(length, iq)``; others →
an arbitrary ``{...}`` sample array on the device grid, see ``waveforms``), ``ShiftPhase``
→ ``shift_phase(frame, +θ)`` (OpenPulse: later samples × e^{+iθ}, the IR's own
convention), ``SetPhase`` → ``set_phase``, ``Set/ShiftFrequency`` → ``set/shift_frequency``,
``FrameDelay`` → ``delay[...]``, ``FrameBarrier`` → ``barrier``, ``Acquire(q)`` → ``barrier`` over the
program's frames and q's capture frame, then ``psb[0] = capture_v0(q{q}_ro_rx_frame)``.
A frame declared at a frequency or phase other than the device's gets a ``set_frequency``
/ ``set_phase`` first. Plays and delays are zero-padded to the device granularity and
minimum length exactly as the IR renderer pads them.

Braket's parametric waveforms sample at t_k = k·dt with the centre at length/2; the IR
samples at bin mid-points (k + ½)·dt. The two differ by half a sample, so
``waveforms="exact"`` (default) sends Gaussian and DRAG as sample arrays (trace equal to
the IR's to float precision) and ``waveforms="templates"`` sends ``gaussian`` /
``drag_gaussian`` (Braket's DRAG is I + i·β·dI/dt with β in seconds, our sign), whose
trace the guard will compare with the IR's — and refuse at its default tolerance.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import backend, ir
from ..guard import require_clearance
from ._braket_device import BraketDeviceProperties
from ._openqasm import lift, parse_roundtrip, semantic_check

_EXTRA = "pip install 'pulsecal[braket]'"
DEFAULT_PROPERTIES = "braket_rigetti_pulse"
# What Braket's service can return for a task that did not (yet) produce a result.
_PENDING = ("CREATED", "QUEUED", "RUNNING")
JOB_KEY_TAG = "pulsecal-job-key"
# botocore errors worth a retry (network, throttling); any other AWS error is final.
_TRANSIENT = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
              "ThrottlingException", "ServiceQuotaExceededException", "InternalServiceException")


@contextmanager
def _aws_errors(what: str) -> Iterator[None]:
    """AWS failures as backend errors: transient ones retryable, the rest final."""
    try:
        yield
    except (backend.BackendError, ImportError):
        raise
    except Exception as e:  # botocore's exceptions, without importing botocore
        code = str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) if hasattr(e, "response") else ""
        name = type(e).__name__
        if name in _TRANSIENT or code in _TRANSIENT:
            raise backend.TransientBackendError(f"{what} failed: {name}: {e}") from e
        raise backend.BackendError(f"{what} failed: {name}: {e}") from e


def _import_braket_pulse() -> Any:
    try:
        import braket.pulse
    except ImportError as e:  # optional extra; say which one
        raise ImportError(f"the Braket adapter needs the Braket SDK: {_EXTRA}") from e
    return braket.pulse


@dataclass(frozen=True)
class OpenPulseProgram:
    """The compiled artifact payload: OpenQASM 3 text for a Braket quantum task."""

    source: str
    device_arn: str


class BraketBackend:
    """A ``Backend`` for Braket pulse devices (Rigetti), offline-checked.

    Args:
        properties: device properties — a stored name in ``pulsecal/hardware/data``, a JSON
            path, or a ``BraketDeviceProperties``.
        device_arn: overrides the ARN in the properties (used only by ``submit``).
        waveforms: "exact" (IR samples as arrays, constants as templates) or "templates"
            (Gaussian → ``gaussian``, DRAG → ``drag_gaussian``; see module docstring).
        aws_session: a ``braket.aws.AwsSession`` (or an object with its
            ``create_quantum_task(**kwargs) -> arn`` and a ``braket_client`` with boto3's
            ``search_quantum_tasks``; tests inject a fake) for submission and lookup;
            default: one from the environment, built on first use, never offline.
        s3_destination_folder: (bucket, key prefix) for task results; default: the
            session's default bucket and ``pulsecal-tasks``.
        find_lookback_s: how far back ``find`` searches the account's tasks for a job key.

    Exactly-once across processes. Every task is created with the job key twice over: as
    the tag ``pulsecal-job-key`` and as the request's ``clientToken`` (Braket's own
    idempotency token, so a create retried after a lost response is not run twice).
    ``find`` first asks this object's memory, then searches the account's tasks on this
    device (``search_quantum_tasks``, ``deviceArn`` and ``createdAt`` filters; tags are not
    a search filter, so every page is scanned for the tag). So a process killed while its
    task is queued or running finds it again on resume and never creates it twice.
    """

    def __init__(self, properties: str | Path | BraketDeviceProperties = DEFAULT_PROPERTIES, *,
                 device_arn: str | None = None,
                 waveforms: Literal["exact", "templates"] = "exact",
                 aws_session: Any = None, s3_destination_folder: tuple[str, str] | None = None,
                 find_lookback_s: float = 14 * 86400.0) -> None:
        if waveforms not in ("exact", "templates"):
            raise ValueError(f"BraketBackend.waveforms={waveforms!r}: allowed 'exact' or 'templates'")
        if not (isinstance(find_lookback_s, int | float) and math.isfinite(find_lookback_s) and find_lookback_s > 0):
            raise ValueError(f"BraketBackend.find_lookback_s={find_lookback_s!r}: allowed a finite number > 0 s")
        if s3_destination_folder is not None and (len(s3_destination_folder) != 2
                                                  or not all(isinstance(x, str) and x for x in s3_destination_folder)):
            raise ValueError(f"BraketBackend.s3_destination_folder={s3_destination_folder!r}: allowed "
                             "(bucket, key prefix), two non-empty strings")
        self._s3 = None if s3_destination_folder is None else tuple(s3_destination_folder)
        self._lookback_s = float(find_lookback_s)
        props = properties if isinstance(properties, BraketDeviceProperties) \
            else BraketDeviceProperties.load(properties)
        self.props = props
        self.device_arn = device_arn or props.device_arn
        self.waveforms = waveforms
        self.name = f"braket:{self.device_arn or 'offline'}"
        self._session = aws_session
        drive = props.drive_frames()
        if not drive:
            raise ValueError("device properties have no drive frames "
                             f"(tx ports of type {props.drive_port_type!r})")
        # Flux lines play baseband real samples: their frames are declared at 0 Hz and phase 0,
        # and compile to a set_frequency/set_phase of the device frame first (validate checks
        # that 0 Hz lies in the frame's permitted window).
        flux = props.flux_frames()
        # A drive-port frame mapped to two qubits plays one qubit's line at the other's
        # frequency: a cross-resonance frame.
        frames = tuple(ir.Frame(f.name, f.port, f.frequency_hz, f.phase,
                             kind="cr" if len(f.qubits) == 2 else "drive") for f in drive) \
            + tuple(ir.Frame(f.name, f.port, 0.0, 0.0, kind="flux") for f in flux)
        dts = {f.port: f.dt_s for f in drive + flux}
        self.dt_s = next(iter(dts.values()))
        qubits = sorted({q for f in drive for q in f.qubits
                         if f"q{q}{props.capture_frame_suffix}" in props.frames})
        if not qubits:
            raise ValueError("device properties have no qubit with both a drive and a capture frame")
        # Qubit q's drive frame: the drive frame mapped to q alone (Rigetti: q{q}_rf_frame).
        drive_of = {f.qubits[0]: f.name for f in drive if len(f.qubits) == 1 and f.qubits[0] in qubits}
        native = {"constant", "sampled"} | ({"gaussian", "drag"} if waveforms == "templates" else set())
        self._caps = backend.Capabilities(
            sample_time_s=dts, frames=frames, qubits=tuple(qubits),
            granularity=props.granularity,
            min_samples=max(1, math.ceil(props.min_pulse_length_s / self.dt_s - 1e-6)),
            max_samples=math.floor(props.max_pulse_length_s / self.dt_s + 1e-6),
            amplitude_limit=min(1.0, props.max_amplitude),
            native_waveforms=frozenset(native), max_shots=props.max_shots, drive_frames=drive_of)
        self._tasks: dict[str, backend.JobHandle] = {}
        self._lock = threading.Lock()

    # -- Backend protocol ---------------------------------------------------------------------

    def capabilities(self) -> backend.Capabilities:
        return self._caps

    def validate(self, program: ir.Program) -> list[backend.Violation]:
        """Shared checks plus the device's frequency window (pure)."""
        out = backend.validate_against(program, self._caps)
        if out:
            return out
        window = self.props.permitted_frequency_difference_hz
        freq = {f.name: f.frequency_hz for f in program.frames}
        for f in program.frames:
            centre = self.props.frames[f.name].center_frequency_hz
            if abs(f.frequency_hz - centre) > window:
                out.append(backend.Violation("frame.frequency_hz", f.frequency_hz,
                                     f"within {window} Hz of {centre} Hz", f"frame {f.name!r}"))
        for i, ins in enumerate(program.instructions):
            if isinstance(ins, ir.SetFrequency | ir.ShiftFrequency):
                new = ins.frequency_hz + (freq[ins.frame] if isinstance(ins, ir.ShiftFrequency) else 0.0)
                freq[ins.frame] = new
                centre = self.props.frames[ins.frame].center_frequency_hz
                if abs(new - centre) > window:
                    out.append(backend.Violation("frequency_hz", new, f"within {window} Hz of {centre} Hz "
                                         "(PERMITTED_FREQUENCY_DIFFERENCE)", f"instructions[{i}]"))
        return out

    def compile(self, program: ir.Program) -> backend.Artifact:
        """IR → OpenQASM 3 text, then the three offline proofs; the artifact's trace is the
        trace of the *text*, so the guard checks what would really be sent."""
        v = self.validate(program)
        if v:
            raise backend.BackendError("program rejected by Braket backend: " + "; ".join(map(str, v)))
        source = self.to_openqasm(program)
        trace = self.trace_of(source, program)
        return backend.Artifact(program, program.content_hash(), trace,
                        OpenPulseProgram(source, self.device_arn))

    def submit(self, artifact: backend.Artifact, shots: int, job_key: str) -> backend.JobHandle:
        """Create a Braket quantum task (never against AWS in tests: it costs money and
        needs credentials), tagged and idempotency-keyed with the job key."""
        require_clearance(artifact, shots, job_key)
        with self._lock:
            known = self._tasks.get(job_key)
            if known is not None:
                return known
        payload = artifact.payload
        if not isinstance(payload, OpenPulseProgram):
            raise backend.BackendError(f"artifact payload is {type(payload).__name__}: allowed an "
                               "OpenPulseProgram from BraketBackend.compile")
        # Re-prove the exact text being sent: an artifact can be built by hand.
        problems = semantic_check(payload.source, self.props)
        if problems:
            raise backend.BackendError("refusing to submit: " + "; ".join(map(str, problems)))
        try:
            from braket.ir.openqasm import Program as OpenQasmProgram
        except ImportError as e:
            raise ImportError(f"Braket submission needs the Braket SDK: {_EXTRA}") from e
        if not self.device_arn:
            raise backend.BackendError("no device ARN: pass device_arn= or use properties with deviceArn")
        with _aws_errors("Braket submission"):
            session = self._aws()
            bucket, prefix = self._s3 if self._s3 is not None else (session.default_bucket(), "pulsecal-tasks")
            arn = session.create_quantum_task(
                action=OpenQasmProgram(source=payload.source).json(), deviceArn=self.device_arn,
                shots=int(shots), outputS3Bucket=bucket, outputS3KeyPrefix=prefix,
                tags={JOB_KEY_TAG: job_key[:256]}, clientToken=job_key[:64])
        handle = backend.JobHandle(str(arn), job_key)
        with self._lock:
            self._tasks[job_key] = handle
        return handle

    def find(self, job_key: str) -> backend.JobHandle | None:
        """The task created with ``job_key`` (by this object, or by any earlier process:
        searched by its tag on this device), or None if there is none."""
        with self._lock:
            known = self._tasks.get(job_key)
        if known is not None:
            return known
        if not self.device_arn:
            return None
        from datetime import UTC, datetime, timedelta

        since = (datetime.now(UTC) - timedelta(seconds=self._lookback_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        filters = [{"name": "deviceArn", "operator": "EQUAL", "values": [self.device_arn]},
                   {"name": "createdAt", "operator": "GTE", "values": [since]}]
        want = job_key[:256]
        hits: list[dict[str, Any]] = []
        with _aws_errors("Braket task search"):
            client = self._aws().braket_client
            token: str | None = None
            while True:
                page = client.search_quantum_tasks(filters=filters, maxResults=100,
                                                   **({"nextToken": token} if token else {}))
                hits += [t for t in page.get("quantumTasks", [])
                         if (t.get("tags") or {}).get(JOB_KEY_TAG) == want]
                token = page.get("nextToken")
                if not token:
                    break
        if not hits:
            return None
        # One create per key (clientToken); should two exist, the first is the one to follow.
        first = min(hits, key=lambda t: str(t.get("createdAt", "")))
        handle = backend.JobHandle(str(first["quantumTaskArn"]), job_key)
        with self._lock:
            self._tasks[job_key] = handle
        return handle

    def _aws(self) -> Any:
        if self._session is None:
            try:
                from braket.aws import AwsSession
            except ImportError as e:
                raise ImportError(f"Braket submission needs the Braket SDK: {_EXTRA}") from e
            self._session = AwsSession()
        return self._session

    def result(self, handle: backend.JobHandle, timeout_s: float) -> backend.Result:
        try:
            from braket.aws import AwsQuantumTask
        except ImportError as e:
            raise ImportError(f"Braket results need the Braket SDK: {_EXTRA}") from e
        task = AwsQuantumTask(handle.job_id, aws_session=self._session,
                              poll_timeout_seconds=float(timeout_s))
        state = task.state()
        if state in _PENDING:
            res = task.result()
            if res is None:
                raise backend.JobTimeout(f"task {handle.job_id} still {task.state()} after {timeout_s} s")
        elif state != "COMPLETED":
            raise backend.BackendError(f"task {handle.job_id} ended {state}")
        else:
            res = task.result()
        counts = {str(k): int(v) for k, v in res.measurement_counts.items()}
        return backend.Result(counts, {"job_id": handle.job_id, "backend": self.name,
                               "device_arn": self.device_arn})

    # -- compilation --------------------------------------------------------------------------

    def _pad(self, n: int, *, play: bool) -> int:
        g = self._caps.granularity
        if play:
            n = max(n, self._caps.min_samples)
        return -(-n // g) * g

    def to_openqasm(self, program: ir.Program) -> str:
        """The OpenQASM 3 + OpenPulse text of ``program`` (validated by ``validate`` first)."""
        bp = _import_braket_pulse()
        dt = self.dt_s
        ports = {}
        frames = {}
        for f in list(program.frames) + [self.props.capture_frame(q) for q in program.qubits]:
            dev = self.props.frames[f.name]
            if dev.port not in ports:
                ports[dev.port] = bp.Port(dev.port, dt=dev.dt_s)
            frames[f.name] = bp.Frame(dev.name, ports[dev.port], dev.frequency_hz, dev.phase,
                                      is_predefined=True)
        seq = bp.PulseSequence()
        for f in program.frames:
            dev = self.props.frames[f.name]
            if f.frequency_hz != dev.frequency_hz:
                seq.set_frequency(frames[f.name], f.frequency_hz)
            if f.phase != dev.phase:
                seq.set_phase(frames[f.name], f.phase)
        n_wf = 0
        for ins in program.instructions:
            if isinstance(ins, ir.FramePlay):
                fr = frames[ins.frame]
                wf, n = self._waveform(ins.waveform, f"wf{n_wf}")
                n_wf += 1
                seq.play(fr, wf)
                if n > 0:
                    seq.delay([fr], n * dt)
            elif isinstance(ins, ir.ShiftPhase):
                seq.shift_phase(frames[ins.frame], ins.phase)
            elif isinstance(ins, ir.SetPhase):
                seq.set_phase(frames[ins.frame], ins.phase)
            elif isinstance(ins, ir.ShiftFrequency):
                seq.shift_frequency(frames[ins.frame], ins.frequency_hz)
            elif isinstance(ins, ir.SetFrequency):
                seq.set_frequency(frames[ins.frame], ins.frequency_hz)
            elif isinstance(ins, ir.FrameDelay):
                n = round(ins.duration_s / dt)
                n = self._pad(n, play=False) if n > 0 else 0
                if n > 0:
                    seq.delay([frames[x] for x in (ins.frames or [f.name for f in program.frames])],
                              n * dt)
            elif isinstance(ins, ir.FrameBarrier):
                seq.barrier([frames[x] for x in (ins.frames or [f.name for f in program.frames])])
            elif isinstance(ins, ir.Acquire):
                cap = frames[self.props.capture_frame(ins.qubit).name]
                seq.barrier([frames[f.name] for f in program.frames] + [cap])
                seq.capture_v0(cap)
        return str(seq.to_ir())

    def _waveform(self, wf: Any, wid: str) -> tuple[Any, int]:
        """(Braket waveform, zero samples to add after it as a delay)."""
        bp = _import_braket_pulse()
        dt = self.dt_s
        if isinstance(wf, ir.Constant):
            n = round(wf.duration_s / dt)
            pad = self._pad(n, play=True)
            if n >= self._caps.min_samples and n % self._caps.granularity == 0:
                iq = complex(wf.amplitude * np.exp(1j * wf.angle))
                return bp.ConstantWaveform(n * dt, iq, id=wid), pad - n
        if self.waveforms == "templates" and isinstance(wf, ir.Gaussian | ir.Drag) and wf.angle == 0.0 \
                and not (isinstance(wf, ir.Drag) and wf.zero_at_edges):
            n = round(wf.duration_s / dt)
            if n >= self._caps.min_samples and n % self._caps.granularity == 0:
                if isinstance(wf, ir.Gaussian):
                    return bp.GaussianWaveform(n * dt, wf.sigma_s, wf.amplitude, wf.zero_at_edges,
                                               id=wid), 0
                return bp.DragGaussianWaveform(n * dt, wf.sigma_s, wf.beta_s, wf.amplitude,
                                               False, id=wid), 0
        w = np.asarray(wf.samples_on(dt) if isinstance(wf, ir.Sampled) else wf.samples(dt))
        n = w.size
        padded = np.zeros(self._pad(n, play=True), dtype=np.complex128)
        padded[:n] = w
        # Plain Python complex/float literals: repr round-trips every double exactly.
        amps = [complex(float(x.real), float(x.imag)) if x.imag != 0.0 else float(x.real)
                for x in padded]
        return bp.ArbitraryWaveform(amps, id=wid), 0

    def trace_of(self, source: str, program: ir.Program | None = None) -> ir.WaveformTrace:
        """The trace the device would play for ``source`` (parsed, checked, rendered with
        Braket's definitions), on the device grid, in ``program``'s frames if given."""
        tree = parse_roundtrip(source)
        problems = semantic_check(tree, self.props)
        if problems:
            raise backend.BackendError("compiled program fails the semantic pass: "
                               + "; ".join(map(str, problems)))
        acq = 0.0
        frames = None
        if program is not None:
            frames = program.frames
            acq = next((ins.duration_s for ins in program.instructions
                        if isinstance(ins, ir.Acquire)), 0.0)
        lifted = lift(tree, self.props, frames=frames, acquire_duration_s=acq)
        return ir.to_waveform_trace(lifted, self.dt_s)


def braket_backend(properties: str = DEFAULT_PROPERTIES, *, device_arn: str | None = None,
                   s3_bucket: str | None = None, s3_prefix: str = "pulsecal-tasks") -> BraketBackend:
    """A ``BraketBackend`` from config values (``configs/backend/braket.yaml``): task results
    go to ``s3_bucket``/``s3_prefix``, or to the AWS session's default bucket when
    ``s3_bucket`` is None."""
    s3 = (str(s3_bucket), str(s3_prefix or "pulsecal-tasks")) if s3_bucket else None
    return BraketBackend(properties, device_arn=device_arn, s3_destination_folder=s3)
