"""``pulsecal-bench-envs`` / ``make bench-envs``: env and PPO throughput."""

from __future__ import annotations

from pulsecal.agents.pipelines.bench_envs import main

if __name__ == "__main__":
    main()
