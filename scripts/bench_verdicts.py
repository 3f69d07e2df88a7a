"""``python -m pulsecal.scripts.bench_verdicts``: how honest the verification verdict is."""

from __future__ import annotations

from pulsecal.agents.pipelines.bench_verdicts import main

if __name__ == "__main__":
    main()
