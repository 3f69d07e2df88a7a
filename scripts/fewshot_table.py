"""``python -m pulsecal.scripts.fewshot_table``: the few-shot comparison of docs/fewshot.md."""

from __future__ import annotations

from pulsecal.agents.pipelines.fewshot_table import main

if __name__ == "__main__":
    main()
