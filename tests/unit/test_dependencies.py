"""pyproject.toml declares compatible ranges; constraints.txt holds the exact tested set that `make`
installs. Each declared dependency must be pinned in constraints.txt, inside its range."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def declared() -> list[Requirement]:
    """What `make` installs: the dependencies and the dev extra, with the extras dev names of lmtune
    itself (`lmtune[gguf]`) expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    found, todo = [], [Requirement(r) for r in project["dependencies"] + extras["dev"]]
    while todo:
        requirement = todo.pop(0)
        if canonicalize_name(requirement.name) == "lmtune":
            todo += [Requirement(r) for extra in sorted(requirement.extras) for r in extras[extra]]
        else:
            found.append(requirement)
    return found


def pins() -> dict[str, Version]:
    found = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt:{n}: {line!r} is not an exact pin (name==version)"
        found[canonicalize_name(name)] = Version(version)
    return found


def test_dependencies_are_ranges_not_pins() -> None:
    exact = [str(r) for r in declared() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert exact == [], "pyproject.toml pins these exactly; declare a compatible range instead"


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    pinned = pins()
    missing = [r.name for r in declared() if canonicalize_name(r.name) not in pinned]
    assert missing == []
    outside = [
        f"{r.name}: constraints.txt has {pin}, pyproject.toml allows {r.specifier}"
        for r in declared()
        if not r.specifier.contains(pin := pinned[canonicalize_name(r.name)], prereleases=True)
    ]
    assert outside == []


def test_the_installed_versions_are_the_pinned_ones() -> None:
    """The environment the suite runs in is the tested set (what `make` installed)."""
    from importlib.metadata import version

    pinned = pins()
    differ = [
        f"{r.name}: installed {version(r.name)}, pinned {pinned[canonicalize_name(r.name)]}"
        for r in declared()
        if Version(version(r.name)).public != pinned[canonicalize_name(r.name)].public
    ]
    assert differ == []
