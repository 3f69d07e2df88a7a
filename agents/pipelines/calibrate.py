"""``pulsecal-calibrate``: run a calibration graph on a multi-qubit device, resumable after a kill.

    pulsecal-calibrate device=ring_8 graph=bringup run_id=ring8_a
    pulsecal-calibrate device=ring_8 run_id=ring8_a          # after a kill: resumes
    pulsecal-calibrate device=two_transmons_cz budget_shots=20000 export_qibolab=<platform folder>

``configs/calibrate.yaml`` holds the settings, ``configs/graph/<name>.yaml`` the graph
(docs/calibration_graph.md). Everything is checked before the run folder
``<out_dir>/<run_id>/`` is made: a wrong key or value is refused with the key named. In
the folder, held by ``hardware.session_lock`` for the whole run (a second process on the
same run_id is refused, naming the holder's PID): ``journal.jsonl`` (every node start and
result), ``ledger.json`` (the run's shots), ``store.json`` (the versioned parameters, or
the shared store ``store`` names), ``report.json`` (every node's outcome, the failed and
the blocked with what blocked them, the run clock and shots, the faulty qubits and
couplers named from the failures (``faults``, ``agents.graph.faults``); with
``device.spectators=none`` an ``evaluation`` section and with ``device.faults`` the planted
faults, both truth-only), ``report/index.html`` (the HTML report and its
PNGs), ``config.yaml`` (this run's
resolved settings) and, with ``export_qibolab``, ``qibolab_parameters.json``.

A run_id whose folder holds a journal is resumed: its finished nodes are not run again,
and its settings must be the ones it started with (a different one is refused, naming
the key; another run_id starts afresh).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from pulsecal.agents.graph.faults import Finding, isolate
from pulsecal.agents.graph.graph import CalibrationGraph, GraphError, graph_from_definition
from pulsecal.agents.graph.journal import GraphJournal, read_state
from pulsecal.agents.graph.report import write_report
from pulsecal.agents.graph.scheduler import BLOCKED, FAILED, NodeOutcome, RunReport, Scheduler
from pulsecal.agents.graph.store import ParameterStore, read_qibolab, write_qibolab
from pulsecal.agents.pipelines import calibrate_maintain as maintain
from pulsecal.agents.pipelines.calibrate_backend import (
    backend_coupling,
    backend_device,
    backend_priors,
    graph_gate,
    make_backend,
)
from pulsecal.agents.pipelines.calibrate_report import (
    _last_results,
    evaluate,
    evaluate_pairs,
    report_input,
)
from pulsecal.configs.schema import ConfigError
from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_faults import parse_faults, plant_faults
from pulsecal.envs.multi_qubit_presets import (
    MultiQubitPreset,
    get_multi_qubit_preset,
    multi_qubit_preset_names,
)
from pulsecal.hardware.graph_device import graph_channels
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.progress import SessionProgress
from pulsecal.hardware.session_lock import session_lock

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The settings a resumed run must share with the run it resumes: they decide what its
# finished nodes measured and what the rest will.
RESUME_KEYS = ("device", "seed", "graph", "budget_shots", "store", "start_from", "priors",
               "priors_frequency_spread_hz", "priors_amplitude_factor", "backend", "maintain")
PRIOR_KINDS = ("spec_sheet",)


@dataclass
class MultiQubitDeviceConf:
    """``device=<preset>``: a simulated multi-qubit preset and how it is simulated
    (``SimulatedMultiQubitDevice``'s arguments). Hydra's ``device`` group is the
    single-qubit presets' for the other entry points, so the multi-qubit options are
    registered here in the ConfigStore, one per preset, rather than as files beside them."""

    preset: str = "ring_8"
    open_system: bool = True
    spectators: str = "neighbours"
    spectator_levels: int | None = 2
    max_dimension: int | None = 81
    # planted faults (envs/multi_qubit_faults.py), e.g. [{kind: dead, qubit: q5}]; a fault
    # without its qubit/pair is placed by the run's seed
    faults: Any = None


@dataclass
class CalibrateConf:
    """``configs/calibrate.yaml`` (the keys are explained there)."""

    device: MultiQubitDeviceConf = field(default_factory=MultiQubitDeviceConf)
    run_id: str = "calibrate"
    out_dir: str = "runs/calibrate"
    seed: int = 0
    budget_shots: int | None = None
    store: str | None = None
    start_from: str | None = None
    priors: str | None = "spec_sheet"
    priors_frequency_spread_hz: float = 20e6
    priors_amplitude_factor: float = 2.0
    export_qibolab: str | None = None
    progress: bool = True
    graph: Any = None
    # backend=<name> (configs/backend): the graph on a lab backend instead of the simulated
    # device preset (calibrate_backend.py); null: the preset.
    backend: Any = None
    # hours=<h>: after the bring-up part, maintain the device for h hours of device time
    # (calibrate_maintain.py, settings under maintain:); null: bring-up only.
    hours: float | None = None
    maintain: maintain.MaintainConf = field(default_factory=maintain.MaintainConf)

    def check(self) -> None:
        if self.device.preset not in multi_qubit_preset_names():
            raise ConfigError("device.preset", f"{self.device.preset!r}: allowed a multi-qubit preset "
                              f"{list(multi_qubit_preset_names())}")
        if not _NAME.match(str(self.run_id)):
            raise ConfigError("run_id", f"{self.run_id!r}: allowed a name of letters, digits, _, . and - "
                              "(not starting with . or -)")
        if not self.out_dir:
            raise ConfigError("out_dir", "allowed a non-empty path")
        if self.budget_shots is not None and self.budget_shots < 0:
            raise ConfigError("budget_shots", f"{self.budget_shots}: allowed an integer >= 0 or null")
        s = self.device
        if s.spectators not in ("neighbours", "none"):
            raise ConfigError("device.spectators", f"{s.spectators!r}: allowed 'neighbours' or 'none'")
        if s.spectator_levels is not None and s.spectator_levels < 2:
            raise ConfigError("device.spectator_levels", f"{s.spectator_levels}: allowed an integer >= 2 or null")
        if s.max_dimension is not None and s.max_dimension < 2:
            raise ConfigError("device.max_dimension", f"{s.max_dimension}: allowed an integer >= 2 or null")
        try:
            parse_faults(s.faults)
        except ValueError as err:
            raise ConfigError("device.faults", str(err)) from None
        if s.faults and self.backend is not None:
            raise ConfigError("device.faults", "faults are planted in a simulated device: allowed none with backend")
        if self.priors is not None and self.priors not in PRIOR_KINDS:
            raise ConfigError("priors", f"{self.priors!r}: allowed one of {list(PRIOR_KINDS)} or null")
        if not 0.0 <= self.priors_frequency_spread_hz <= 1e9:
            raise ConfigError("priors_frequency_spread_hz", f"{self.priors_frequency_spread_hz}: allowed 0 to 1e9 Hz")
        if not 1.0 <= self.priors_amplitude_factor <= 10.0:
            raise ConfigError("priors_amplitude_factor", f"{self.priors_amplitude_factor}: allowed 1 to 10")
        for key in ("start_from", "export_qibolab"):
            p = getattr(self, key)
            if p is not None and not _qibolab_file(p).is_file():
                raise ConfigError(key, f"{p!r}: no qibolab parameters.json there: allowed a parameters.json file or "
                                  "a platform folder holding one")
        if not isinstance(self.graph, dict):
            raise ConfigError("graph", f"{self.graph!r}: allowed a graph definition (graph=bringup)")
        maintain.check_hours(self.hours)
        if self.hours is not None:
            maintain.settings_of(self.hours, self.maintain)

    @property
    def folder(self) -> Path:
        return Path(self.out_dir) / self.run_id


def _qibolab_file(path: str) -> Path:
    p = Path(path)
    return p / "parameters.json" if p.is_dir() else p


def register_configs() -> None:
    """Store the calibrate schema and the multi-qubit ``device`` options in Hydra's
    ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="calibrate_schema", node=CalibrateConf)
    for name in multi_qubit_preset_names():
        cs.store(group="device", name=name, node=MultiQubitDeviceConf(preset=name))


register_configs()


# -- progress --------------------------------------------------------------------------------------


class NodeProgress(SessionProgress):
    """The run's progress on stderr: a tqdm bar of nodes on a terminal (failed and blocked
    nodes also as lines above it), else one line per finished node: node, target, outcome,
    its shots, the run's shots and clock."""

    _bar: Any  # SessionProgress's tqdm bar, or None

    def node(self, o: NodeOutcome, report: RunReport, total: int) -> None:
        done = len(report.outcomes)
        template, _, target = o.node.partition(":")
        line = (f"{self.label}: [{done}/{total}] {template} {target} {o.outcome}, shots {o.shots} "
                f"(run {report.shots}), clock {o.clock_s:.3f} s"
                + (f": {o.message}" if o.outcome in (FAILED, BLOCKED) and o.message else ""))
        if not self._is_interactive():
            self._write(line, self._clock())
            return
        from tqdm.auto import tqdm

        bar: Any = self._bar
        if bar is None:
            bar = self._bar = tqdm(total=total, desc=self.label, unit="node", file=self.stream, leave=True)
        if o.outcome in (FAILED, BLOCKED):
            bar.write(line, file=self.stream)
        bar.n = done
        bar.set_postfix_str(f"{o.node} {o.outcome}, shots {report.shots}", refresh=False)
        bar.refresh()


# -- the pipeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """Everything checked and built before the run folder is touched."""

    conf: CalibrateConf
    preset: MultiQubitPreset
    graph: CalibrationGraph
    settings: dict[str, Any]
    backend: Any = None  # the lab backend of backend=<name>, or None
    qubits: tuple[str, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()


def prepare(cfg: DictConfig) -> Prepared:
    """Check the config and build the graph; raises ``ConfigError`` naming the key."""
    conf = OmegaConf.to_object(cfg)
    if not isinstance(conf, CalibrateConf):
        raise ConfigError("config", "not composed from calibrate.yaml (calibrate_schema)")
    if isinstance(conf.graph, DictConfig):  # an Any field keeps its DictConfig
        conf.graph = OmegaConf.to_container(conf.graph, resolve=True)
    if conf.backend is not None:  # the backend group's typed schema: a plain mapping from here on
        conf.backend = _plain(OmegaConf.to_container(conf.backend, resolve=True)
                              if isinstance(conf.backend, DictConfig) else conf.backend)
    conf.check()
    preset = get_multi_qubit_preset(conf.device.preset)
    backend = make_backend(conf.backend) if conf.backend is not None else None
    qubits, edges = backend_coupling(backend) if backend is not None else \
        (tuple(preset.coupling_map.qubits), tuple(preset.coupling_map.edges))
    # The device's channels decide which couplers get the flux-CZ nodes (graph.py).
    channels = tuple(graph_channels(backend.capabilities())) if backend is not None else \
        tuple(preset.params.channels.all)
    try:
        graph = graph_from_definition(conf.graph, qubits, edges, channels=channels)
    except GraphError as err:
        raise ConfigError(err.key, err.problem) from None
    settings = {k: _plain(getattr(conf, k)) for k in RESUME_KEYS}
    return Prepared(conf, preset, graph, settings, backend, qubits, edges)


def _plain(x: Any) -> Any:
    if hasattr(x, "__dataclass_fields__"):
        return {k: _plain(getattr(x, k)) for k in x.__dataclass_fields__}
    return json.loads(json.dumps(x))


def _check_resume(folder: Path, journal: GraphJournal, settings: dict[str, Any]) -> bool:
    state = read_state(journal)
    if state.epochs == 0:
        return False
    before = state.config or {}
    for key in RESUME_KEYS:
        if before.get(key) != settings.get(key):
            raise ConfigError(key, f"{settings.get(key)!r} differs from {before.get(key)!r}, which run {folder} "
                              "started with: resume it with its settings, or give another run_id to start afresh")
    return True


def spec_sheet_priors(preset: MultiQubitPreset, dt_s: float, seed: int, frequency_spread_hz: float,
                      amplitude_factor: float) -> dict[str, float]:
    """Coarse starting values per qubit from the preset's design parameters: frequency
    within ±``frequency_spread_hz``, π amplitude within ×[1/f, f] (log-uniform) of the
    amplitude the design Rabi rate asks for, DRAG β = 0. Seeded by ``seed`` alone, so a
    run's priors do not depend on what the device's noise drew. A preset's design values
    are its truth at clock 0; a sampled (held-out) device's truth differs from its design,
    which these priors then do not know."""
    from pulsecal.agents.graph.experiments.pulses import DEFAULT_GATE

    rng = np.random.default_rng([seed, 0x5EC])
    model = preset.params.model
    lo, hi = -np.log(amplitude_factor), np.log(amplitude_factor)
    out: dict[str, float] = {}
    for q in preset.coupling_map.qubits:
        mode = model.mode(q)  # type: ignore[union-attr]
        if mode.rabi_max_hz is None:
            raise ConfigError("priors", f"{q}: the preset states no Rabi rate: allowed priors=null with start_from")
        nominal = 1.0 / (2.0 * mode.rabi_max_hz * DEFAULT_GATE.area_s(dt_s))
        out[f"{q}.frequency_hz"] = float(mode.frequency_hz + rng.uniform(-frequency_spread_hz, frequency_spread_hz))
        out[f"{q}.pi_amplitude"] = float(nominal * np.exp(rng.uniform(lo, hi)))
        out[f"{q}.drag_beta"] = 0.0
    return out


def calibrate(cfg: DictConfig, *, stream: TextIO | None = None) -> RunReport:
    """Run (or resume) the graph ``cfg`` describes; returns the report (module docstring)."""
    p = prepare(cfg)
    conf = p.conf
    folder = conf.folder
    out = stream if stream is not None else sys.stdout
    with session_lock(folder):
        journal = GraphJournal(folder)
        resumed = _check_resume(folder, journal, p.settings)
        store = ParameterStore(conf.store if conf.store is not None else folder / "store.json")
        if conf.start_from is not None and not resumed and not store.versions:
            store.record("import", read_qibolab(conf.start_from), experiment="qibolab parameters.json",
                         experiment_id=str(_qibolab_file(conf.start_from)), run_id=conf.run_id)
        d = conf.device
        device: Any
        planted: tuple[Any, ...] = ()
        if p.backend is not None:
            device = backend_device(p.backend, conf.backend, folder, conf.run_id, p.edges)
        else:
            params, drift, planted = plant_faults(p.preset.params, p.preset.drift, parse_faults(d.faults),
                                                  np.random.default_rng([conf.seed, 0xFA17]))
            device = SimulatedMultiQubitDevice(params, drift, rng=np.random.default_rng(conf.seed),
                                               open_system=d.open_system,
                                               spectators=d.spectators,  # type: ignore[arg-type]
                                               spectator_levels=d.spectator_levels, max_dimension=d.max_dimension)
        if conf.priors is not None and not resumed and not any(v.node == "priors" for v in store.versions):
            if p.backend is not None:
                values = backend_priors(p.backend, p.qubits, graph_gate(p.graph), device.dt_s, conf.seed,
                                        conf.priors_frequency_spread_hz, conf.priors_amplitude_factor)
            else:
                values = spec_sheet_priors(p.preset, device.dt_s, conf.seed, conf.priors_frequency_spread_hz,
                                           conf.priors_amplitude_factor)
            # imported values (start_from) are better than the spec sheet: they win
            have = store.current()
            values = {k: v for k, v in values.items() if k not in have}
            if values:
                store.record("priors", values, experiment=conf.priors, experiment_id="priors", run_id=conf.run_id)
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        ledger = ShotLedger(folder / "ledger.json")
        with NodeProgress(conf.run_id, interactive=None if conf.progress else False) as progress:
            sched = Scheduler(p.graph, device, store, qubits=p.qubits, edges=p.edges, journal=journal,
                              ledger=ledger, seed=conf.seed, run_id=conf.run_id,
                              budget_shots=conf.budget_shots, progress=progress.node, config=p.settings)
            report = sched.run()
        summary = report.to_dict()
        findings = isolate(report, p.graph, _last_results(journal),
                           [r for r in journal.records() if r.get("event") == "op"])
        summary["faults"] = [f.to_dict() for f in findings]
        if p.backend is None and planted:
            summary["planted_faults"] = {"truth_only": True, "faults": [f.to_dict() for f in planted]}
        kept = None
        if conf.hours is not None:
            m_settings = maintain.settings_of(conf.hours, conf.maintain)
            kept = maintain.run_maintenance(p.graph, device, store, folder, m_settings, seed=conf.seed,
                                            run_id=conf.run_id, ledger=ledger, qubits=p.qubits,
                                            evaluate=conf.maintain.evaluate, config=p.settings,
                                            drift=p.preset.drift if p.backend is None else None)
            summary["maintenance"] = maintain.summary(kept, m_settings)
        # Truth exists only on a simulated device; a backend's run is judged by its verdicts.
        evaluation = evaluate(device, store.current(), p.qubits, report) if p.backend is None else {}
        pairs = evaluate_pairs(device, store.current(), p.edges, report) if p.backend is None else {}
        if evaluation or pairs:
            summary["evaluation"] = {"truth_only": True, "note": "simulation truth (bench_nodes.true_errors, "
                                     "true_cz_errors), never read by a node", "qubits": evaluation}
            if pairs:
                summary["evaluation"]["couplers"] = pairs
        name = conf.device.preset if p.backend is None else getattr(p.backend, "name", "backend")
        inp = report_input(conf.run_id, name, p.graph, report, journal, p.qubits, p.edges, store.current(),
                           evaluation)
        if findings:
            inp = dataclasses.replace(inp, notes=(*inp.notes, *(f"Fault: {f.line}" for f in findings)))
        if kept is not None:
            inp = dataclasses.replace(inp, maintenance=maintain.timeline_of(kept, m_settings, p.qubits))
        write_report(folder / "report", inp)
        if conf.export_qibolab is not None:
            base = json.loads(_qibolab_file(conf.export_qibolab).read_text())
            unmapped = write_qibolab(folder / "qibolab_parameters.json", store.current(), base)
            summary["qibolab_export"] = {"base": str(_qibolab_file(conf.export_qibolab)), "not_mapped": unmapped}
        (folder / "report.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    for line in summary_lines(report, folder, len(p.graph), findings):
        print(line, file=out)
    if kept is not None:
        print(maintain.summary_line(folder, kept, m_settings), file=out)
    return report


def summary_lines(report: RunReport, folder: Path, total: int, findings: Sequence[Finding] = ()) -> list[str]:
    counts = report.to_dict()["counts"]
    lines = [f"{folder}: {total} nodes: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
             + f"; {report.shots} shots, {report.clock_s:.3f} s of device time ({report.clock_s / 60:.2f} min)"
             + (f"; {report.resumed} finished before this process" if report.resumed else "")]
    for n in report.failed:
        lines.append(f"  failed {n}: {report.outcomes[n].message}")
    by: dict[str, list[str]] = {}
    for n, root in report.blocked.items():
        by.setdefault(str(root), []).append(n)
    for root, names in by.items():
        lines.append(f"  blocked by {root}: {', '.join(names)}")
    for f in findings:
        lines.append(f"  fault {f.line}")
    return lines


def exit_code(report: RunReport) -> int:
    """0 when every node is calibrated or in spec; 1 when some failed, were blocked or not run."""
    return 0 if all(o.outcome in ("calibrated", "skipped") for o in report.outcomes.values()) else 1


__all__ = ["CalibrateConf", "NodeProgress", "calibrate", "exit_code", "prepare", "summary_lines"]
