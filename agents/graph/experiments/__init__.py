"""The calibration graph's node library: textbook experiments for one qubit ``"qN"`` or one
coupled pair ``("qA", "qB")`` of a multi-qubit device, each an
``agents.graph.experiment.Experiment`` (docs/calibration_nodes.md). ``pulses`` builds every experiment's pulses from the stored
parameters in one frame convention; ``common`` holds the counting, readout correction
and fitting they share."""

from __future__ import annotations

from .coupler_probe import CouplerProbe
from .cz import CZCalibration, CZChevron
from .drag import DragCalibration
from .ecr import ECRCalibration
from .fine_amplitude import FineAmplitude
from .pulses import DEFAULT_GATE, QubitPulses, SequenceBuilder, frame_hz
from .rabi import Rabi
from .ramsey import Ramsey
from .rb1q import RB1Q
from .rb2q import RB2Q
from .spectroscopy import Spectroscopy
from .t1 import T1
from .zz import StaticZZ

#: One default instance of each experiment, by its ``name``.
EXPERIMENTS = {e.name: e for e in (Spectroscopy(), Rabi(), Ramsey(), T1(), FineAmplitude(), DragCalibration(), DragCalibration.train(),
                                   RB1Q())}
#: One default instance of each two-qubit (pair) experiment, by its ``name``.
PAIR_EXPERIMENTS = {e.name: e for e in (CouplerProbe(), StaticZZ(), CZChevron(), CZCalibration(), RB2Q(), ECRCalibration())}

__all__ = ["DEFAULT_GATE", "EXPERIMENTS", "PAIR_EXPERIMENTS", "RB1Q", "RB2Q", "T1", "CZCalibration", "CZChevron", "CouplerProbe", "DragCalibration",
           "ECRCalibration", "FineAmplitude", "QubitPulses", "Rabi", "Ramsey", "SequenceBuilder", "Spectroscopy", "StaticZZ",
           "frame_hz"]
