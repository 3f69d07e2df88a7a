"""``pulsecal-calibrate backend=<name>``: the calibration graph on a lab backend.

``backend`` is the Hydra group the replay sessions use (``configs/backend/<name>.yaml``,
``_target_`` + instantiate): ``qibolab_emulator_2q`` (qibolab's EMULATOR on the coupled
two-qubit platform shipped with pulsecal), ``qibolab_emulator`` (one qubit), ``braket``,
or a lab's own platform (``backend.platform=<name> backend.platforms_dir=<folder>``). The
backend is put behind ``hardware.graph_device.BackendGraphDevice``: the graph's
experiments run on it unchanged, every job checked against the backend and the safety
envelope (``backend.limits`` overrides ``graph_limits``), reserved in the job ledger
(``jobs_ledger.json``) and journaled (``jobs.jsonl``) in the run folder.

The coupling map is the backend's: qubit n is ``q<n>``; its couplers are the pairs a
cross-resonance frame joins and, on qibolab, the platform's ``pairs`` and the emulator
Hamiltonian's couplings. Spec-sheet priors come from the backend's own device model
(``transmon_model``: the emulator's qubit frequency and Rabi rate), drawn as the
simulated devices' are (frequency within ±spread, π amplitude within ×[1/f, f]) for the
gate the graph's experiments play; a backend without a model (real instruments) needs
``priors=null`` and ``start_from=<parameters.json>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate

from pulsecal.agents.graph.experiments.pulses import DEFAULT_GATE
from pulsecal.agents.graph.graph import CalibrationGraph
from pulsecal.agents.pipelines.replay_build import SESSION_KEYS
from pulsecal.agents.pipelines.replay_schema import register_replay_configs
from pulsecal.configs.schema import ConfigError
from pulsecal.envs.drag import DragGate
from pulsecal.hardware.backend import Backend
from pulsecal.hardware.device import RetryPolicy
from pulsecal.hardware.graph_device import (
    DEFAULT_REPETITION_TIME_S,
    BackendGraphDevice,
    graph_channels,
    graph_limits,
)
from pulsecal.hardware.journal import Journal
from pulsecal.hardware.ledger import ShotLedger

register_replay_configs()  # the backend group's schemas (qibolab_schema, braket_schema, ...)


def make_backend(section: Mapping[str, Any]) -> Backend:
    """The backend a ``backend=<name>`` section describes (``_target_`` + its arguments)."""
    if not isinstance(section.get("_target_"), str):
        raise ConfigError("backend._target_", f"{section.get('_target_')!r}: allowed the import path of a "
                          "backend factory")
    try:
        backend = instantiate({k: v for k, v in section.items() if k not in SESSION_KEYS}, _convert_="all")
    except Exception as err:  # Hydra wraps the factory's refusal; keep its text
        raise ConfigError("backend", f"{section['_target_']}: {err}") from None
    if not isinstance(backend, Backend):
        raise ConfigError("backend._target_", f"{section['_target_']!r} made a {type(backend).__name__}: allowed a "
                          "hardware.backend.Backend")
    return backend


def backend_coupling(backend: Backend) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(qubits, edges) of the graph on ``backend`` (module docstring)."""
    caps = backend.capabilities()
    channels = graph_channels(caps)
    qubits = tuple(c.partition(":")[2] for c in channels if c.startswith("drive:") and "@" not in c)
    pairs: set[tuple[str, str]] = set()
    for c in channels:
        head, _, at = c.partition("@")
        if at:
            pairs.add(_pair(head.partition(":")[2], at))
    platform = getattr(backend, "platform", None)
    to_ir = getattr(backend, "platform_qubit", None)
    if platform is not None and callable(to_ir):
        ir_of = {to_ir(i): f"q{i}" for i in caps.qubits}
        found = list(getattr(platform, "pairs", []) or [])
        try:
            found += [tuple(int(x) for x in k.split("-")) for k in platform.config("hamiltonian").pairs]
        except (KeyError, AttributeError, ValueError):
            pass  # not an emulator: its Hamiltonian is not ours to read
        for a, b in found:
            if a in ir_of and b in ir_of:
                pairs.add(_pair(ir_of[a], ir_of[b]))
    return qubits, tuple(sorted(p for p in pairs if p[0] in qubits and p[1] in qubits))


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if int(a[1:]) < int(b[1:]) else (b, a)


def graph_gate(graph: CalibrationGraph) -> DragGate:
    """The gate the graph's experiments play (the first ``gate`` setting of its nodes, else
    the node library's default): the π-amplitude prior is for this gate."""
    for name in graph.names:
        gate = getattr(graph[name].experiment, "gate", None)
        if isinstance(gate, DragGate):
            return gate
    return DEFAULT_GATE


def backend_priors(backend: Backend, qubits: Sequence[str], gate: DragGate, dt_s: float, seed: int,
                   frequency_spread_hz: float, amplitude_factor: float) -> dict[str, float]:
    """Coarse starting values per qubit from the backend's device model, as
    ``calibrate.spec_sheet_priors`` draws them from a preset's design."""
    model_of = getattr(backend, "transmon_model", None)
    rng = np.random.default_rng([seed, 0x5EC])
    lo, hi = -np.log(amplitude_factor), np.log(amplitude_factor)
    # Each qubit's own drive frame only (a flux frame of the same qubit sits at 0 Hz).
    frames = {c.partition(":")[2]: f.frequency_hz for c, f in graph_channels(backend.capabilities()).items()
              if c.startswith("drive:") and "@" not in c}
    out: dict[str, float] = {}
    for q in qubits:
        model = model_of(int(q[1:])) if callable(model_of) else None
        if model is None:
            raise ConfigError("priors", f"backend {getattr(backend, 'name', '?')!r} has no device model of {q} "
                              "(real instruments): allowed priors=null with start_from=<parameters.json>")
        nominal = 1.0 / (2.0 * model.rabi_max_hz * gate.area_s(dt_s))
        out[f"{q}.frequency_hz"] = float(frames[q] + model.detuning_hz
                                         + rng.uniform(-frequency_spread_hz, frequency_spread_hz))
        out[f"{q}.pi_amplitude"] = float(nominal * np.exp(rng.uniform(lo, hi)))
        out[f"{q}.drag_beta"] = 0.0
    return out


def backend_device(backend: Backend, section: Mapping[str, Any], folder: Path, run_id: str,
                   edges: Sequence[tuple[str, str]]) -> BackendGraphDevice:
    """``backend`` behind the graph's device interface, its job ledger and journal in ``folder``."""
    limits = dict(section.get("limits") or {})
    try:
        envelope = graph_limits(backend, **limits)
    except (TypeError, ValueError) as err:
        raise ConfigError("backend.limits", str(err)) from None
    try:
        retry = RetryPolicy(**dict(section.get("retry") or {}))
    except (TypeError, ValueError) as err:
        raise ConfigError("backend.retry", str(err)) from None
    return BackendGraphDevice(backend, ledger=ShotLedger(folder / "jobs_ledger.json"),
                              journal=Journal(folder / "jobs.jsonl"), session_id=run_id, limits=envelope,
                              rep_time_s=DEFAULT_REPETITION_TIME_S, edges=edges, retry=retry)


def describe_backend(section: Mapping[str, Any]) -> str:
    """A short name for the report: the factory and its arguments."""
    args = {k: v for k, v in section.items() if k not in SESSION_KEYS and k != "_target_"}
    return f"{str(section['_target_']).rpartition('.')[2]}({json.dumps(args, sort_keys=True)})"


__all__ = ["backend_coupling", "backend_device", "backend_priors", "describe_backend", "graph_gate",
           "make_backend"]
