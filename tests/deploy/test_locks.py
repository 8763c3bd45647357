"""requirements/*.lock (`make lock`) agree with the pins in requirements/*.txt, so that they cannot
drift apart: every package hashed and pinned exactly, the top-level pins and nothing else at the
top, every dependency of a locked package locked too (read from the installed packages' own
metadata), and the serving lock held to the versions the tests run with."""
from __future__ import annotations

import re
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.deploy.files import ROOT, read_lock, requirements

REQUIREMENTS = ROOT / "requirements"
LOCKS = {"serve": "serve.txt", "test": "test.txt"}   # lock -> the file it is compiled from
# The one package whose locked version carries a local label: PyTorch's CPU build of the pin.
CPU_BUILD = {"torch": "cpu"}


def pins(name: str) -> dict[str, str]:
    """Top-level package -> pinned version, -r includes followed."""
    found = {}
    for package, line in requirements(REQUIREMENTS / name).items():
        match = re.search(r"==([^\s;]+)", line)
        assert match, f"{name}: {line!r} is not pinned exactly"
        found[package] = match.group(1)
    return found


def top_level(lock: str) -> set[str]:
    """The packages pip-compile says came from a requirements file ("via -r X.txt") itself."""
    found, current = set(), None
    for line in (REQUIREMENTS / f"{lock}.lock").read_text().splitlines():
        if re.match(r"[A-Za-z0-9]", line):
            current = canonicalize_name(line.split("==")[0])
        elif re.fullmatch(r"\s*#\s+(via\s+)?-r \S+\.txt", line):
            found.add(current)
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_every_package_is_pinned_exactly_with_hashes(lock):
    locked = read_lock(REQUIREMENTS / f"{lock}.lock")
    assert locked
    for name, entry in locked.items():
        assert entry.hashes, f"{lock}.lock: {name} has no --hash"
        for digest in entry.hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{lock}.lock: {name} {digest}"
        label = entry.version.partition("+")[2]
        assert label == CPU_BUILD.get(name, ""), f"{lock}.lock: {name}=={entry.version}"


@pytest.mark.parametrize("lock, source", LOCKS.items())
def test_the_top_level_pins_and_only_they_are_the_locks_top_level(lock, source):
    locked, pinned = read_lock(REQUIREMENTS / f"{lock}.lock"), pins(source)
    for name, version in pinned.items():
        assert name in locked, f"{source} pins {name}, {lock}.lock lacks it: run make lock"
        # ==2.13.0 matches 2.13.0+cpu (PEP 440: a local label is ignored by a pin without one)
        assert SpecifierSet(f"=={version}").contains(locked[name].version), \
            f"{source} pins {name}=={version}, {lock}.lock has {locked[name].version}: make lock"
    assert top_level(lock) == set(pinned), f"{lock}.lock is stale: run make lock"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_dependency_of_a_locked_package_is_locked(lock):
    """From the metadata of the installed distributions that have the locked version (this
    virtualenv is installed from test.txt, so every top-level pin is among them)."""
    locked = read_lock(REQUIREMENTS / f"{lock}.lock")
    checked = 0
    for name, entry in locked.items():
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.version != entry.version:
            continue
        checked += 1
        for text in installed.requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            assert dependency in locked, f"{lock}.lock: {name} needs {dependency}, not locked"
            assert requirement.specifier.contains(locked[dependency].version, prereleases=True), \
                f"{lock}.lock: {name} needs {requirement}, locked {locked[dependency].version}"
    assert checked >= len(pins(LOCKS[lock]))


def test_the_serving_lock_has_the_tested_versions_and_no_torch():
    serve, test = read_lock(REQUIREMENTS / "serve.lock"), read_lock(REQUIREMENTS / "test.lock")
    assert "torch" not in serve
    for name, entry in serve.items():
        assert name in test, f"serve.lock has {name}, which the tests do not install"
        assert (entry.version, sorted(entry.hashes)) == \
            (test[name].version, sorted(test[name].hashes)), name
