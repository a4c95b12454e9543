"""What differs between the ansible-core releases the collection claims, for the tests.

meta/runtime.yml claims ansible-core 2.17 and later; `make integration` runs this suite with 2.19
(requirements-dev.lock) and `make matrix` runs its core (the tests marked `matrix`) with 2.17 and 2.18.

- How the runner reaches PowerShell (RUNNER_DELIVERY, docs/wire-contract.md).
- Messages that ansible-core writes itself (argument spec validation, the task timeout), which 2.19
  reworded. Each function returns the exact phrasings the running ansible-core produces for one
  meaning, taken from that version's source (named in each function). A test still fails when the
  meaning is wrong (another argument, another type, another value, another number of seconds): only
  the wording is allowed to follow the version.

The ansible-core under test is the one installed next to this interpreter: tests run ansible and
ansible-playbook from the same venv (tests/lab/testing.py run_ansible).
"""

from __future__ import annotations

import re

from ansible.release import __version__ as ANSIBLE_CORE_VERSION

ANSIBLE_CORE = tuple(int(part) for part in ANSIBLE_CORE_VERSION.split(".")[:2])

# The lab's count of how the runner arrived (tests/lab/psh.py Outcome.delivery) for one runner command
# through ansible.builtin.winrm. 2.19's exec_command sends a command line that already is an encoded
# PowerShell command as it is: the bootstrap, the script on its stdin ("stdin:1"). 2.17/2.18 encode
# every command line once more (plugins/connection/winrm.py exec_command, _encode_script): the outer
# PowerShell runs the bootstrap's PowerShell, which reads the script from the stdin it inherits
# ("stdin:2"), as 2.17/2.18 run every Windows module (shell/powershell.py build_module_command encodes
# bootstrap_wrapper.ps1, which reads the module from $input, and exec_command encodes that again).
RUNNER_DELIVERY = "stdin:1" if ANSIBLE_CORE >= (2, 19) else "stdin:2"

# How "argument 'x' is of type str" names the type of a string value. 2.19 writes native_type_name(value)
# (module_utils/common/parameters.py); 2.17/2.18 write type(value): the class of a string that came from
# a YAML file (a playbook's task) is AnsibleUnicode, of one from JSON (-e '{...}') or a template str.
_STR_TYPES_BEFORE_2_19 = ("<class 'ansible.parsing.yaml.objects.AnsibleUnicode'>", "<class 'str'>")
_OF_TYPE_STR = " is of type str "
# module_utils/parsing/convert_bool.py: 2.17/2.18 put two spaces after the first sentence.
_BOOLEAN_SENTENCES = "is not a valid boolean. Valid booleans include:"
_BOOLEAN_SENTENCES_BEFORE_2_19 = "is not a valid boolean.  Valid booleans include:"
# module_utils/common/validation.py check_type_int: 2.18 and 2.19 name the value ('"\'a week\'" cannot be
# converted to an int'); 2.17 names its type ("<class '...'> cannot be converted to an int").
_INT_VALUE_RE = re.compile(r'"\'[^"]*\'" cannot be converted to an int')


def phrasings(message: str) -> list[str]:
    """The exact texts the ansible-core under test writes for an argument spec error worded as 2.19 does.

    message is the 2.19 text. For 2.17/2.18 its "is of type str" becomes each class name a string can
    have there, the boolean error gets its two spaces, and (2.17) the int error names the type."""
    if ANSIBLE_CORE >= (2, 19):
        return [message]
    found = []
    types = _STR_TYPES_BEFORE_2_19 if _OF_TYPE_STR in message else (None,)
    for type_name in types:
        text = message if type_name is None else message.replace(_OF_TYPE_STR, " is of type %s " % type_name)
        text = text.replace(_BOOLEAN_SENTENCES, _BOOLEAN_SENTENCES_BEFORE_2_19)
        if ANSIBLE_CORE < (2, 18) and type_name is not None:
            text = _INT_VALUE_RE.sub("%s cannot be converted to an int" % type_name, text)
        found.append(text)
    return found


def task_timeout_re(action: str, seconds: int) -> str:
    """A regex for the whole message of a task that outlasted its timeout (ANSIBLE_TASK_TIMEOUT, --task-timeout).

    2.19: ansible/_internal/_errors/_alarm_timeout.py ("Timed out after N second(s).", after "Task failed: "
    in a task result). 2.17/2.18: executor/task_executor.py names the action and the timeout."""
    if ANSIBLE_CORE >= (2, 19):
        return r"Task failed: Timed out after %d second\(s\)\." % seconds
    return re.escape("The %s action failed to execute in the expected time frame (%d) and was terminated" % (action, seconds))
