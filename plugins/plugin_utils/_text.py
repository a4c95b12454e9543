# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Server text shown to people: the one place where control characters become visible.

Certificate subjects and friendly names, connector names and error messages come from the server and
may hold anything: terminal escapes (ESC [ ...), a carriage return that overwrites a console line, C1
controls, and the Unicode bidirectional controls with which text displays in another order than it
is read ("Trojan Source", CVE-2021-42574). visible() turns each of them into a visible escape -
\\xNN below U+0100, \\uNNNN above - at every output boundary: the messages and warnings of the
modules (the console, AWX), summary.md and junit.xml (_report). XML 1.0 cannot carry most C0
characters at all, so junit.xml needs this anyway. report.json keeps the exact text, with the same
characters as JSON \\u escapes (lossless). A backslash is not escaped, so that Windows identities
(EX01\\Default Frontend EX01) read as they are; an escape in the output can thus also be text the
server sent.

Only the standard library; no Ansible imports.
"""

from __future__ import annotations

import re
from typing import Mapping

# C0 controls, DEL and C1 controls; the bidirectional controls: ARABIC LETTER MARK, LRM, RLM, the
# embeddings and overrides U+202A-U+202E, the isolates U+2066-U+2069; LINE and PARAGRAPH SEPARATOR
# (line breaks to some renderers); the BOM / zero width no-break space; the non-characters U+FFFE
# and U+FFFF (which XML 1.0 forbids); lone surrogates (from decoded JSON; not encodable as UTF-8).
UNSAFE = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff"
_UNSAFE = re.compile("[%s]" % UNSAFE)
_SURROGATE = re.compile("[\ud800-\udfff]")
# json.dumps escapes C0 inside strings itself; outside strings, its newlines are the document's layout.
_JSON_UNSAFE = re.compile("[%s]" % UNSAFE[len("\x00-\x1f"):])
# What a message may keep: its line breaks and tabs.
MESSAGE_KEEP = "\n\t"


def escape(character: str) -> str:
    """The visible escape of one character: \\xNN below U+0100, else \\uNNNN; a lone surrogate is U+FFFD."""
    code = ord(character)
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def visible(text, keep: str = "") -> str:
    """text (str() of anything, "" for None) with every unsafe character (UNSAFE) but those in keep as a
    visible escape."""
    text = "" if text is None else text if isinstance(text, str) else str(text)
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda match: match.group() if match.group() in keep else escape(match.group()), text)


def json_safe(text: str) -> str:
    """Serialised JSON text with the unsafe characters json.dumps(ensure_ascii=False) leaves raw (DEL, C1,
    bidi controls ...; C0 is escaped by json itself) as JSON \\u escapes: the same data, safe to show."""
    if not _JSON_UNSAFE.search(text):
        return text
    return _JSON_UNSAFE.sub(lambda match: "\ufffd" if _SURROGATE.match(match.group()) else "\\u%04x" % ord(match.group()), text)


# The fields of the modules' results that are text for people (messages, one-line findings, steps in words).
# "warnings" at the top of a result is what Ansible itself prints as warnings (certificate_info's facts have it).
PEOPLE_FIELDS = ("msg", "error", "findings", "plan", "notes", "warnings", "may_have_applied", "fleet_findings")


def for_people(value, keep: str = MESSAGE_KEEP):
    """A string, or a list of strings, made visible(); anything else as it is."""
    if isinstance(value, str):
        return visible(value, keep)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [visible(item, keep) for item in value]
    return value


def people_result(result: Mapping, fields=PEOPLE_FIELDS) -> dict:
    """A module result with the text-for-people fields (PEOPLE_FIELDS, also one level down in "hosts")
    made visible. Structured data (facts, certificates, connectors) keeps the server's values."""
    result = dict(result)
    for field in fields:
        if field in result:
            result[field] = for_people(result[field])
    hosts = result.get("hosts")
    if isinstance(hosts, Mapping):
        result["hosts"] = {host: people_result(value, fields) if isinstance(value, Mapping) else value for host, value in hosts.items()}
    return result
