"""Hardware layer: pulse IR, the Backend protocol, the safety envelope and guard, the shot
ledger and journal, and ``BackendDevice`` which puts any backend behind the envs ``Device``
protocol. Vendor SDKs are imported lazily inside ``pulsecal.hardware.adapters``."""

from .backend import (
    Artifact,
    Backend,
    BackendError,
    Capabilities,
    JobHandle,
    JobTimeout,
    Result,
    TransientBackendError,
    Violation,
    validate_against,
)
from .device import BackendDevice, JobLost, RetryPolicy
from .guard import Clearance, GuardedBackend, require_clearance
from .ir import (
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
    WaveformTrace,
    from_sequence,
    to_waveform_trace,
)
from .journal import Journal, read_journal
from .ledger import ShotLedger, utc_day
from .safety import SafetyEnvelope, SafetyLimits, SafetyViolation

__all__ = [
    "Acquire", "Artifact", "Backend", "BackendDevice", "BackendError", "Capabilities", "Clearance",
    "Constant", "Drag", "Frame", "FrameBarrier", "FrameDelay", "FramePlay", "Gaussian",
    "GuardedBackend", "JobHandle", "JobLost", "JobTimeout", "Journal", "Program", "Result",
    "RetryPolicy", "SafetyEnvelope", "SafetyLimits", "SafetyViolation", "Sampled", "SetFrequency",
    "SetPhase", "ShiftFrequency", "ShiftPhase", "ShotLedger", "TransientBackendError", "Violation",
    "WaveformTrace", "from_sequence", "read_journal", "require_clearance", "to_waveform_trace",
    "utc_day", "validate_against",
]
