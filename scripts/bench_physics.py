"""``pulsecal-bench`` / ``make bench``: the physics engines against QuTiP and qiskit-dynamics."""

from __future__ import annotations

from pulsecal.agents.pipelines.bench_physics import main

if __name__ == "__main__":
    main()
