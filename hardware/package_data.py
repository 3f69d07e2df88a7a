"""Data that ships with ``pulsecal.hardware`` (``hardware/data/``), found wherever it is installed.

The console scripts and the README run against these from any working directory: the
qibolab emulator platforms (``qibolab_platforms/``, what ``QIBOLAB_PLATFORMS`` points
qibolab at) and the reference policy trained for the emulator
(``gate_calibration_emulator/policy``: ONNX + manifest). A path written
``pkg://<package>/<path>`` names a file inside an installed package, so a config can
name shipped data without knowing where the package lives.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE_PREFIX = "pkg://"


def package_path(package: str, *parts: str) -> Path:
    """The filesystem path of ``parts`` inside the installed ``package``.

    pulsecal installs as plain files (a wheel or an editable checkout), so the resource
    is a real path that qibolab and onnxruntime can open; a zipped install is refused.
    """
    resource = resources.files(package).joinpath(*parts)
    path = Path(str(resource))
    if not path.exists():
        raise FileNotFoundError(f"{PACKAGE_PREFIX}{package}/{'/'.join(parts)}: not found in the installed "
                                f"package (looked at {path})")
    return path


def resolve_path(path: str | Path) -> Path:
    """``path`` as a filesystem path: ``pkg://<package>/<path>`` inside an installed
    package, anything else as given."""
    text = str(path)
    if not text.startswith(PACKAGE_PREFIX):
        return Path(path)
    package, _, rest = text[len(PACKAGE_PREFIX):].partition("/")
    if not package or not rest:
        raise ValueError(f"path={text!r}: allowed {PACKAGE_PREFIX}<package>/<path inside it>")
    return package_path(package, *rest.split("/"))


def emulator_platforms_dir() -> Path:
    """The shipped qibolab emulator platforms (``pulsecal_emulator``, ``pulsecal_emulator_2q``,
    ``pulsecal_emulator_2q_coupled``, ``pulsecal_emulator_2q_cz``)."""
    return package_path("pulsecal.hardware", "data", "qibolab_platforms")


def emulator_reference_policy() -> Path:
    """The shipped GateCalibration-v1 policy trained for the qibolab emulator's device class."""
    return package_path("pulsecal.hardware", "data", "gate_calibration_emulator", "policy")


__all__ = ["PACKAGE_PREFIX", "emulator_platforms_dir", "emulator_reference_policy", "package_path",
           "resolve_path"]
