"""``pulsecal-sweep-summary SWEEP_DIR``: recompute and print a sweep's summary."""

from __future__ import annotations

from pulsecal.agents.pipelines.sweep import main

if __name__ == "__main__":
    main()
