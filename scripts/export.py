"""``pulsecal-export``: a training run as ONNX + manifest for the lab."""

from __future__ import annotations

import sys

from pulsecal.agents.pipelines.export import main

if __name__ == "__main__":
    sys.exit(main())
