"""``pulsecal-physics-demo``: the physics kernel on one X gate, with a plot."""

from __future__ import annotations

from pulsecal.agents.pipelines.physics_demo import main

if __name__ == "__main__":
    main()
