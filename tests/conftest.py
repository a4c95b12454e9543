"""Make the collection importable as ansible_collections.hybridmail.exchange from a source checkout.

`make` creates build/collections/ansible_collections/hybridmail/exchange -> the repository root.
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, "build", "collections")
_LINK = os.path.join(COLLECTIONS_ROOT, "ansible_collections", "hybridmail", "exchange")

if not os.path.exists(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    os.symlink(os.path.relpath(REPO_ROOT, os.path.dirname(_LINK)), _LINK)
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)

# Property tests explore new examples on a developer's machine but are reproducible in CI (`CI` is set
# there): a counterexample found locally is reported with its seed, never as a random red CI run.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # hypothesis is a development requirement; only the property tests need it
    pass
else:
    _hypothesis_settings.register_profile("ci", derandomize=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
