"""Offline stand-in for ansible-test's get-pip bootstrap script.

ansible-test bootstraps pip into every sanity virtual environment by downloading get-pip.py from
ci-files.testing.ansible.com, which this project's machines cannot reach (only PyPI is allowed).
`make` copies this file to ~/.ansible/test/cache/get_pip_<version>.py, where ansible-test looks
before downloading. It installs the pip bundled with CPython (ensurepip) and then lets that pip
install the exact pip version ansible-test asked for, from PyPI.
"""

import subprocess
import sys

# get-pip.py options that are not pip-install options.
GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}

# ensurepip runs in its own process: in-process it points PIP_CONFIG_FILE at os.devnull, which would
# hide the machine's pip configuration (index, proxy CA) from the pip install below.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], stdout=subprocess.DEVNULL)
pip_args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet"] + pip_args))
