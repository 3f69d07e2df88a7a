"""The calibration graph's single-qubit node library: textbook experiments for one qubit
``"qN"`` of a multi-qubit device, each an ``agents.graph.experiment.Experiment``
(docs/calibration_nodes.md). ``pulses`` builds every experiment's pulses from the stored
parameters in one frame convention; ``common`` holds the counting, readout correction
and fitting they share."""

from __future__ import annotations

from .drag import Drag
from .fine_amplitude import FineAmplitude
from .pulses import DEFAULT_GATE, Program, QubitPulses, frame_hz
from .rabi import Rabi
from .ramsey import Ramsey
from .rb1q import RB1Q
from .spectroscopy import Spectroscopy
from .t1 import T1

#: One default instance of each experiment, by its ``name``.
EXPERIMENTS = {e.name: e for e in (Spectroscopy(), Rabi(), Ramsey(), T1(), FineAmplitude(), Drag(), Drag.train(),
                                   RB1Q())}

__all__ = ["DEFAULT_GATE", "EXPERIMENTS", "RB1Q", "T1", "Drag", "FineAmplitude", "Program", "QubitPulses",
           "Rabi", "Ramsey", "Spectroscopy", "frame_hz"]
