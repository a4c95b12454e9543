#!/usr/bin/env bash
# ansible-test sanity for the collection, offline except for PyPI.
#
# ansible-test must run from inside .../ansible_collections/hybridmail/exchange, and it lists files
# with git. build/ is git-ignored in this repository, so the tree under build/sanity.* is a copy of
# the tracked (and untracked, not ignored) files with a throw-away git index of its own.
# ansible-test bootstraps pip into each sanity venv with get-pip.py from ci-files.testing.ansible.com;
# tools/ansible_test_get_pip.py, seeded into ansible-test's cache, does it with ensurepip + PyPI.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${VENV_BIN:-$repo/.venv/bin}
# A fresh tree per run, so that concurrent runs (two make invocations) cannot pull it from under each other.
mkdir -p "$repo/build"
work=$(mktemp -d "$repo/build/sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/ansible_collections/hybridmail/exchange

pip_version=$("$bin/python" - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(python_requirements.get_venv_packages)).group(1))
PY
)
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$cache")"
cp "$repo/tools/ansible_test_get_pip.py" "$cache"

mkdir -p "$tree"
(cd "$repo" && git ls-files --cached --others --exclude-standard -z | xargs -0 tar -cf -) | tar -xf - -C "$tree"
(cd "$tree" && git init -q && git add -A)

python_version=$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$tree"
"$bin/ansible-test" sanity --python "$python_version" --requirements --color no "$@"
