"""No class name is defined twice in the package.

One name, one thing: a reader who meets ``Play`` or ``Journal`` must not have to find out
which of two modules it came from. The package's sources are read with ``ast`` (nothing is
imported), every class definition is collected, nested and function-local ones included,
and a name defined in more than one place fails with all of its places.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_folders(root: Path) -> list[Path]:
    """The folders that install as ``pulsecal.*`` (pyproject's package-dir), so a package
    added there is checked without touching this test."""
    dirs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return sorted({root / folder for folder in dirs.values()})


def class_definitions(folders: list[Path]) -> dict[str, list[str]]:
    """Class name -> every ``path:line`` that defines it, under ``folders``."""
    places: dict[str, list[str]] = defaultdict(list)
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    places[node.name].append(f"{path.relative_to(folder.parent)}:{node.lineno}")
    return places


def duplicated(places: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: where for name, where in places.items() if len(where) > 1}


def test_no_class_name_is_defined_twice() -> None:
    folders = package_folders(ROOT)
    places = class_definitions(folders)
    assert len(folders) >= 5 and len(places) > 100, (folders, len(places))  # the walk saw the package
    twice = duplicated(places)
    assert not twice, "\n".join(f"{name}: {', '.join(where)}" for name, where in sorted(twice.items()))


def test_a_class_defined_twice_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools.package-dir]\n"x.a" = "a"\n"x.b" = "b"\n')
    for folder, body in (("a", "class Journal:\n    pass\n\n\nclass Only:\n    pass\n"),
                         ("b", "def f():\n    class Journal:\n        pass\n    return Journal\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "m.py").write_text(body)
    twice = duplicated(class_definitions(package_folders(tmp_path)))
    assert twice == {"Journal": ["a/m.py:1", "b/m.py:2"]}
