"""Preloaded by ``test_replay_kill``'s forkserver only: import the session's code and run it
once, briefly, in a throwaway folder, so every forked worker inherits the compiled numba
kernels and warm caches instead of paying ~2 s for them before its first job."""

from __future__ import annotations

import tempfile
from pathlib import Path

from replay_kill_worker import session

with tempfile.TemporaryDirectory() as _tmp:
    session(Path(_tmp) / "warm", max_steps=1, fsync=False)
