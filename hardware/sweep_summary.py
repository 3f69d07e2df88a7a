"""A sweep's state on disk: each qubit's ``status.json`` and the summary recomputed from the
session folders alone (``summary.json``, ``.md``, ``.csv``, ``.png``), so it is right
after any interruption."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.envs.calibration import PARAMETER_NAMES

from .journal import read_journal
from .ledger import ShotLedger
from .params_store import write_atomic
from .replay import JournalState, ReplayDivergence

STATUS_FORMAT = "pulsecal.sweep-status/1"
SUMMARY_FORMAT = "pulsecal.sweep-summary/1"

RUNNING, FINISHED, FAILED, BUDGET_EXHAUSTED = "running", "finished", "failed", "budget_exhausted"
# Derived in the summary only: a folder whose journal started but never finished (killed,
# or still running), and a qubit that has a folder but no journal yet.
INCOMPLETE, PENDING = "incomplete", "pending"


def qubit_folder(sweep_dir: str | os.PathLike[str], qubit: int) -> Path:
    return Path(sweep_dir) / f"q{int(qubit)}"



def read_status(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / "status.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != STATUS_FORMAT:
        raise ValueError(f"{path}: format={data.get('format')!r}: allowed {STATUS_FORMAT!r}")
    return dict(data)



@dataclass(frozen=True)
class QubitRow:
    """One qubit of the summary, read from its session folder.

    ``status`` is one of finished, failed, budget_exhausted, incomplete (journal started,
    never finished: killed or still running), pending (no journal). ``final_params`` and
    the estimates come from the journal's last observation; the truth (simulated
    backends only) from report.json; ``shots`` from the session's ledger.
    """

    qubit: int
    status: str
    session_id: str | None
    attempts: int
    final_params: Mapping[str, float] | None
    initial_params: Mapping[str, float] | None
    estimated_infidelity_initial: float | None
    estimated_infidelity: float | None
    true_infidelity: float | None
    coherence_limit: float | None
    env_steps: int
    shots: int
    orphan_shots: int
    journal_complete: bool
    error: str | None = None

    @property
    def limit_ratio(self) -> float | None:
        """True infidelity over the coherence limit (1 is perfect), when known."""
        if self.true_infidelity is None or not self.coherence_limit:
            return None
        return self.true_infidelity / self.coherence_limit

    def to_dict(self) -> dict[str, Any]:
        return {"qubit": self.qubit, "status": self.status, "session_id": self.session_id,
                "attempts": self.attempts, "final_params": None if self.final_params is None else dict(self.final_params),
                "initial_params": None if self.initial_params is None else dict(self.initial_params),
                "estimated_infidelity_initial": self.estimated_infidelity_initial,
                "estimated_infidelity": self.estimated_infidelity, "true_infidelity": self.true_infidelity,
                "coherence_limit": self.coherence_limit, "limit_ratio": self.limit_ratio,
                "env_steps": self.env_steps, "shots": self.shots, "orphan_shots": self.orphan_shots,
                "journal_complete": self.journal_complete, "error": self.error}


@dataclass(frozen=True)
class SweepSummary:
    sweep_dir: Path
    rows: tuple[QubitRow, ...]
    budget: Mapping[str, Any] | None

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def total_shots(self) -> int:
        return sum(r.shots for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"format": SUMMARY_FORMAT, "sweep_dir": str(self.sweep_dir), "counts": self.counts,
                "total_shots": self.total_shots, "budget": None if self.budget is None else dict(self.budget),
                "qubits": [r.to_dict() for r in self.rows]}


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def read_row(folder: Path, qubit: int) -> QubitRow:
    """The summary row of one session folder (reads status, session, journal, ledger, report)."""
    status = read_status(folder) or {}
    session_file = folder / "session.json"
    sid = status.get("session_id")
    if sid is None and session_file.exists():
        sid = (json.loads(session_file.read_text()).get("settings") or {}).get("session_id")
    journal_path = folder / "journal.jsonl"
    error = status.get("error")
    obs: tuple[dict[str, Any], ...] = ()
    complete = False
    started = finished = False
    if sid is not None and journal_path.exists():
        try:
            js = JournalState.read(journal_path, str(sid))
            obs = js.observations
            started, finished = js.started is not None, js.finished is not None
            complete = (js.finished is not None and started and len(obs) == len(js.actions) + 1
                        and list(js.finished["final_params"]) == list(obs[-1]["params"]))
        except (ReplayDivergence, ValueError) as e:
            error = error or f"journal unreadable: {e}"
    state = status.get("state")
    if state == FINISHED and not complete:
        status_out = INCOMPLETE  # status says done, the journal disagrees: trust the journal
    elif state in (FAILED, BUDGET_EXHAUSTED):
        status_out = state
    elif finished and complete:
        status_out = FINISHED
    elif started:
        status_out = INCOMPLETE
    else:
        status_out = PENDING
    shots = ShotLedger(folder / "ledger.json", fsync=False).used_shots if (folder / "ledger.json").exists() else 0
    orphans = sum(int(r.get("shots", 0)) for r in read_journal(journal_path) if r.get("event") == "orphaned")
    true_inf = limit = None
    report_path = folder / "report.json"
    if status_out == FINISHED and report_path.exists():
        truth = (json.loads(report_path.read_text()).get("truth") or {}).get("final") or {}
        fid = _num(truth.get("fidelity"))
        true_inf = None if fid is None else 1.0 - fid
        limit = _num(truth.get("coherence_limit"))

    def named(params: Sequence[float]) -> dict[str, float]:
        return dict(zip(PARAMETER_NAMES, (float(x) for x in params), strict=True))

    return QubitRow(
        qubit=qubit, status=status_out, session_id=None if sid is None else str(sid),
        attempts=int(status.get("attempts", 0)),
        final_params=named(obs[-1]["params"]) if obs else None,
        initial_params=named(obs[0]["params"]) if obs else None,
        estimated_infidelity_initial=_num(obs[0].get("infidelity_estimate")) if obs else None,
        estimated_infidelity=_num(obs[-1].get("infidelity_estimate")) if obs else None,
        true_infidelity=true_inf, coherence_limit=limit, env_steps=max(len(obs) - 1, 0), shots=shots,
        orphan_shots=orphans, journal_complete=complete, error=error)


def summarize(sweep_dir: str | os.PathLike[str], qubits: Sequence[int] | None = None) -> SweepSummary:
    """The sweep's summary, computed from its folders only (right after any interruption).

    Args:
        sweep_dir: the sweep folder.
        qubits: the qubits the sweep is meant to cover (those without a folder are listed
            as pending); None: every ``q<k>`` folder found.
    """
    root = Path(sweep_dir)
    found = {int(p.name[1:]) for p in root.glob("q*") if p.is_dir() and p.name[1:].isdigit()}
    wanted = sorted(found | set(qubits or ()))
    rows = tuple(read_row(qubit_folder(root, q), q) for q in wanted)
    budget_path = root / "budget.json"
    budget = json.loads(budget_path.read_text()) if budget_path.exists() else None
    return SweepSummary(root, rows, budget)


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec) if isinstance(x, int | float) else str(x)


def summary_markdown(s: SweepSummary, *, coherence_factor: float = 2.0) -> str:
    """The summary table for a person (one row per qubit)."""
    lines = [f"# Calibration sweep `{s.sweep_dir}`", "",
             "counts: " + ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()))
             + f"; shots {s.total_shots}"
             + (f" of a budget of {s.budget.get('total_shots')}" if s.budget and s.budget.get("total_shots") else ""),
             "", "| qubit | status | amplitude | beta_s [s] | detuning_hz [Hz] | est. infidelity (start → end) "
             f"| true infidelity | coherence limit | ratio (≤ {coherence_factor:g}) | shots | journal | attempts |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    # Qubits that need a person come first: not finished, or finished with a failed verdict
    # (their store entry is still the previous version).
    for r in sorted(s.rows, key=lambda r: (r.status == FINISHED and not r.error, r.qubit)):
        p = r.final_params or {}
        ratio = r.limit_ratio
        ok = "" if ratio is None else (" ✓" if ratio <= coherence_factor else " ✗")
        lines.append(
            f"| {r.qubit} | {r.status} | {_fmt(p.get('amplitude'), '.6g')} | {_fmt(p.get('beta_s'), '.4g')} "
            f"| {_fmt(p.get('detuning_hz'), '.6g')} | {_fmt(r.estimated_infidelity_initial)} → "
            f"{_fmt(r.estimated_infidelity)} | {_fmt(r.true_infidelity)} | {_fmt(r.coherence_limit)} "
            f"| {_fmt(ratio, '.2f')}{ok} | {r.shots} | {'complete' if r.journal_complete else 'open'} "
            f"| {r.attempts} |")
    errors = [r for r in s.rows if r.error]
    if errors:
        lines += ["", "Errors:", ""] + [f"- q{r.qubit}: {r.error}" for r in errors]
    return "\n".join(lines) + "\n"


_CSV_FIELDS = ("qubit", "status", *PARAMETER_NAMES, "estimated_infidelity_initial", "estimated_infidelity",
               "true_infidelity", "coherence_limit", "limit_ratio", "shots", "orphan_shots", "env_steps",
               "journal_complete", "attempts", "error")


def summary_csv(s: SweepSummary) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(_CSV_FIELDS), lineterminator="\n")
    w.writeheader()
    for r in s.rows:
        d = r.to_dict()
        w.writerow({**{k: d.get(k) for k in _CSV_FIELDS if k in d},
                    **{k: (r.final_params or {}).get(k) for k in PARAMETER_NAMES}})
    return buf.getvalue()


def write_summary(sweep_dir: str | os.PathLike[str], qubits: Sequence[int] | None = None, *,
                  coherence_factor: float = 2.0, plots: bool = True) -> SweepSummary:
    """Recompute the summary from disk and write summary.json/.md/.csv (+ summary.png)."""
    from .report import _clean

    s = summarize(sweep_dir, qubits)
    root = s.sweep_dir
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / "summary.json", json.dumps(_clean(s.to_dict()), indent=2, sort_keys=True) + "\n",
                 fsync=False)
    write_atomic(root / "summary.md", summary_markdown(s, coherence_factor=coherence_factor), fsync=False)
    write_atomic(root / "summary.csv", summary_csv(s), fsync=False)
    if plots and s.rows:
        _plot(s, root / "summary.png", coherence_factor)
    return s


_COLORS = {FINISHED: "tab:green", FAILED: "tab:red", BUDGET_EXHAUSTED: "tab:orange", INCOMPLETE: "tab:gray",
           PENDING: "lightgray"}


def _plot(s: SweepSummary, path: Path, coherence_factor: float) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    q = np.array([r.qubit for r in s.rows])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))

    def series(vals: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in vals], dtype=float)

    a1.semilogy(q - 0.15, series([r.estimated_infidelity_initial for r in s.rows]), "v", color="tab:gray",
                label="estimated, start")
    a1.semilogy(q, series([r.estimated_infidelity for r in s.rows]), "o", color="tab:blue", label="estimated, end")
    a1.semilogy(q + 0.15, series([r.true_infidelity for r in s.rows]), "s", color="tab:green",
                label="true, end (simulated)")
    lim = series([r.coherence_limit for r in s.rows])
    if np.isfinite(lim).any():
        a1.hlines(lim, q - 0.4, q + 0.4, colors="k", lw=1, label="coherence limit")
        a1.hlines(coherence_factor * lim, q - 0.4, q + 0.4, colors="k", lw=1, linestyles="--",
                  label=f"{coherence_factor:g}× limit")
    a1.set_xlabel("qubit")
    a1.set_ylabel("X-gate infidelity")
    a1.set_xticks(q)
    a1.grid(alpha=0.3, which="both")
    a1.legend(fontsize=7)
    # One bar call per status, so each legend entry is those very bars (in their colour).
    for status in dict.fromkeys(r.status for r in s.rows):
        mine = [r for r in s.rows if r.status == status]
        a2.bar([r.qubit for r in mine], [r.shots for r in mine], color=_COLORS.get(status, "k"), label=status)
    for r in s.rows:
        if r.shots == 0:  # no bar to see: say why
            a2.annotate(r.status, (r.qubit, 0), ha="center", va="bottom", fontsize=7, rotation=90)
    a2.set_xlabel("qubit")
    a2.set_ylabel("shots (ledger)")
    a2.set_xticks(q)
    a2.legend(fontsize=7)
    a2.set_title(f"total {s.total_shots} shots"
                 + (f" / budget {s.budget['total_shots']}" if s.budget and s.budget.get("total_shots") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
