"""execution-environment.yml is a valid ansible-builder 3 definition whose build context installs this collection.

`ansible-builder create` validates the definition against its schema and writes the build context
(Containerfile and _build/) without a container engine. The collection is built with ansible-galaxy
as README's build steps say, into a copy of the repository's EE inputs, so the checkout is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

import yaml

from tests.lab.testing import REPO_ROOT, ansible_env

BIN = os.path.dirname(sys.executable)


def run(args, cwd) -> subprocess.CompletedProcess:
    completed = subprocess.run(args, cwd=cwd, env=ansible_env(), capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, "%s failed:\n%s%s" % (" ".join(args), completed.stdout, completed.stderr)
    return completed


def requirement_names(path) -> list[str]:
    names = []
    for line in open(path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower())
    return names


def test_ansible_builder_creates_a_build_context_that_installs_the_collection_and_its_requirements(tmp_path):
    with open(os.path.join(REPO_ROOT, "galaxy.yml"), encoding="utf-8") as handle:
        galaxy = yaml.safe_load(handle)
    with open(os.path.join(REPO_ROOT, "execution-environment.yml"), encoding="utf-8") as handle:
        definition = yaml.safe_load(handle)
    tarball = "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])

    # The definition names this version of the collection and the repository's requirement files.
    assert definition["version"] == 3
    assert definition["dependencies"]["python"] == "requirements-ee.txt"
    assert definition["dependencies"]["system"] == "bindep.txt"
    assert definition["dependencies"]["galaxy"]["collections"] == [{"name": "collections/" + tarball, "type": "file"}]
    assert "ansible-core>=2.19,<2.20" == definition["dependencies"]["ansible_core"]["package_pip"]

    work = tmp_path / "ee"
    work.mkdir()
    for name in ("execution-environment.yml", "requirements-ee.txt", "bindep.txt"):
        shutil.copy(os.path.join(REPO_ROOT, name), work / name)
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(work / "build" / "ee")], REPO_ROOT)
    with tarfile.open(work / "build" / "ee" / tarball) as archive:
        members = archive.getnames()
    assert "roles/hybrid_readiness/tasks/main.yml" in members and "plugins/plugin_utils/runner.ps1" in members
    assert not [m for m in members if m.split("/")[0] in (".hypothesis", ".pytest_cache", "build", ".venv", ".git")]
    # The development tree is not what users install (issue 14): no lab, tests, tools, molecule, lock files.
    assert not [m for m in members if m.split("/")[0] in ("tests", "tools", "benchmarks", "extensions", ".ci")
                or m in ("Makefile", "requirements-dev.in", "pytest.ini") or m.endswith(".lock")], members
    assert "requirements.txt" in members and "requirements-ee.txt" in members  # what users and the EE install from

    context = tmp_path / "context"
    completed = run([os.path.join(BIN, "ansible-builder"), "create", "--file", str(work / "execution-environment.yml"),
                     "--context", str(context), "--output-filename", "Containerfile", "-v", "3"], work)
    assert "No matches" not in completed.stdout + completed.stderr

    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    build = context / "_build"
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.20 ansible-runner>=2.4,<2.5"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    # The galaxy stage installs the collection from the tarball in the context...
    assert "FROM base AS galaxy" in containerfile
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in containerfile
    assert (build / "collections" / tarball).is_file()
    assert yaml.safe_load((build / "requirements.yml").read_text(encoding="utf-8")) == definition["dependencies"]["galaxy"]
    # ...and the builder stage resolves the Python and system requirements with it.
    assert "--user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile  # ansible-builder's names in _build
    assert "COPY --from=galaxy /usr/share/ansible /usr/share/ansible" in containerfile
    assert requirement_names(build / "requirements.txt") == requirement_names(os.path.join(REPO_ROOT, "requirements.txt"))
    assert {"pywinrm", "certifi"} <= set(requirement_names(build / "requirements.txt"))
    # Kerberos, the README's main example, is in the image: pywinrm's extra and krb5 for every platform.
    assert "pywinrm[kerberos]" in (build / "requirements.txt").read_text(encoding="utf-8")
    bindep = (build / "bindep.txt").read_text(encoding="utf-8")
    assert "krb5-workstation [platform:rpm]" in bindep and "krb5-devel [platform:rpm]" in bindep
    assert (build / "bindep.txt").read_text(encoding="utf-8") == open(os.path.join(REPO_ROOT, "bindep.txt"), encoding="utf-8").read()
