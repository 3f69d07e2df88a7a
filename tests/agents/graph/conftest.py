"""pytest runs with --import-mode=importlib (no sys.path changes), so make the graph tests'
shared fakes (graph_fakes.py) importable, here and in the subprocesses the tests start."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
