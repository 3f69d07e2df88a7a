"""The calibration graph: nodes that bring up and keep calibrated a multi-qubit device.

``experiment.py`` is the contract between the graph (scheduling, journal, store, report)
and the experiments its nodes run (spectroscopy, Rabi, Ramsey, ... and agents in their
place). See docs/calibration_graph.md.
"""
