"""meta/runtime.yml's requires_ansible is a claim the tests prove: every minor release of ansible-core it
admits, up to the one the development venv runs (requirements-dev.lock), is tested by `make integration`
(that one) or `make matrix` (the Makefile's MATRIX_CORES)."""

from __future__ import annotations

import os
import re

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def read(name: str) -> str:
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as handle:
        return handle.read()


def releases_under_test() -> list[Version]:
    matrix = re.search(r"^MATRIX_CORES := (.+)$", read("Makefile"), re.MULTILINE)
    development = re.search(r"^ansible-core==(\S+)$", read("requirements-dev.lock"), re.MULTILINE)
    assert matrix and development
    return sorted(Version(text) for text in matrix.group(1).split() + [development.group(1)])


def test_every_minor_release_that_requires_ansible_admits_is_tested():
    claim = SpecifierSet(yaml.safe_load(read("meta/runtime.yml"))["requires_ansible"])
    tested = releases_under_test()
    assert all(release in claim for release in tested), (str(claim), [str(release) for release in tested])
    lowest = min(Version(spec.version) for spec in claim if spec.operator in (">=", "=="))
    newest = tested[-1]
    admitted = [(newest.major, minor) for minor in range(lowest.minor, newest.minor + 1)] if lowest.major == newest.major else None
    assert admitted is not None, "requires_ansible %s spans major versions" % claim
    # Exactly one release (pinned) per minor release: the matrix tests what it claims, and nothing twice.
    assert [(release.major, release.minor) for release in tested] == admitted, (str(claim), [str(r) for r in tested])
    assert all(not release.is_prerelease for release in tested)
