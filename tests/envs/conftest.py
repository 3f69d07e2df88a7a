"""pytest runs with --import-mode=importlib (no sys.path changes), so make the shared
helpers of this folder importable as ``env_helpers``."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
