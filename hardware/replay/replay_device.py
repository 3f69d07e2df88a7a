"""The ``Device`` behind a session's env: finished calls answered from the journal, the rest live."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.protocol import PulseSequence

from ..device import BackendDevice
from ..ir import Program
from ..journal import Journal
from .settings import ReplayDivergence
from .stops import RecordedStop, SessionStop

FastForward = Callable[[Sequence[Program], int], NDArray[np.int64]]


def simulated_fast_forward(backend: Any) -> FastForward | None:
    """For a ``SimulatedBackend``: re-simulate finished jobs on its device, in order, exactly
    as its ``submit`` runs them (compile → payload → ``device.run``), without a job or a
    shot in any count. None for other backends (their state is physical)."""
    from ..adapters.simulated import SimulatedBackend

    if not isinstance(backend, SimulatedBackend):
        return None

    def ff(programs: Sequence[Program], shots: int) -> NDArray[np.int64]:
        rows = [np.asarray(backend.device.run([backend.compile(p).payload], shots))[0] for p in programs]
        return np.stack(rows).astype(np.int64) if rows else np.zeros((0, 2), dtype=np.int64)

    return ff


class ReplayDevice:
    """The ``Device`` the env talks to: finished calls from the journal, the rest live.

    Device calls are numbered like ``BackendDevice`` steps. Calls below ``len(done)`` are
    answered from the journal's ``run_done`` records after checking that the env asks for
    the same programs (hashes) and shots; ``fast_forward`` (simulated backends) re-simulates
    them so the device state matches. Later calls go to ``live`` (a ``BackendDevice`` that
    starts at step ``len(done)``), bracketed by ``run`` / ``run_done`` journal records,
    unless the session has a terminal ``stopped`` record: then the first call past the
    journal raises ``RecordedStop`` and no job runs.
    """

    def __init__(self, live: BackendDevice, journal: Journal, *, done: Sequence[Mapping[str, Any]] = (),
                 advances_done: int = 0, fast_forward: FastForward | None = None,
                 on_live_step: Callable[[int, int], None] | None = None,
                 stopped: SessionStop | None = None) -> None:
        self.live = live
        self.journal = journal
        self._done = list(done)
        self._advances_done = int(advances_done)
        self._ff = fast_forward
        self._on_live_step = on_live_step
        self._stopped = stopped
        self._step = 0
        self._advances = 0
        self.replayed_steps = 0

    @property
    def dt_s(self) -> float:
        return self.live.dt_s

    @property
    def clock_s(self) -> float:
        return self.live.clock_s

    def advance(self, duration_s: float) -> None:
        k = self._advances
        self._advances += 1
        if k < self._advances_done:
            # Already waited before the kill; a simulated device must still see it.
            if self._ff is not None:
                self.live.advance(duration_s)
            return
        self.live.advance(duration_s)
        self.journal.append("advance", session=self.live.session_id, index=k, duration_s=float(duration_s))

    def programs(self, sequences: Sequence[PulseSequence], shots: int) -> list[Program]:
        return [self.live.compile_sequence(s, shots) for s in sequences]

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        step = self._step
        self._step += 1
        programs = self.programs(sequences, shots)
        hashes = [p.content_hash() for p in programs]
        sid = self.live.session_id
        if step < len(self._done):
            rec = self._done[step]
            if rec["program_hashes"] != hashes or int(rec["shots"]) != int(shots):
                raise ReplayDivergence(
                    f"device call {step}: the env asks for programs {[h[:12] for h in hashes]} × {shots} "
                    f"shots, the journal ran {[h[:12] for h in rec['program_hashes']]} × {rec['shots']}")
            # (B, 2) counts of a single-qubit device, (B, 2^k) of a multi-qubit one.
            counts = np.asarray(rec["counts"], dtype=np.int64).reshape(len(programs), -1 if programs else 2)
            if self._ff is not None:
                again = self._ff(programs, shots)
                if not np.array_equal(again, counts):
                    raise ReplayDivergence(f"device call {step}: the rebuilt simulated device gives "
                                           f"{again.tolist()}, the journal {counts.tolist()}")
            self.replayed_steps += 1
            return counts
        if self._stopped is not None:
            raise RecordedStop(self._stopped)
        self.journal.append("run", session=sid, step=step, shots=int(shots), program_hashes=hashes)
        counts = np.asarray(self.live.run(sequences, shots), dtype=np.int64)
        self.journal.append("run_done", session=sid, step=step, shots=int(shots), program_hashes=hashes,
                            counts=counts.tolist())
        if self._on_live_step is not None:
            self._on_live_step(step, int(shots))
        return counts


