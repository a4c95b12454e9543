"""Server text shown to people (plugins/plugin_utils/_text.py)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _text


@pytest.mark.parametrize("text, keep, expected", [
    ("mail.contoso.com", "", "mail.contoso.com"),
    ("Müller – Česká pošta – 日本語 – 📫", "", "Müller – Česká pošta – 日本語 – 📫"),
    ("EX01\\Default Frontend EX01", "", "EX01\\Default Frontend EX01"),  # backslashes stay
    ("\u202eexe.txt", "", "\\u202eexe.txt"),
    ("\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202d\u061c\u200e\u200f", "", "\\u2066\\u2067\\u2068\\u2069\\u202a\\u202b\\u202c\\u202d\\u061c\\u200e\\u200f"),
    ("\x1b[31mred\x1b[0m", "", "\\x1b[31mred\\x1b[0m"),
    ("one\rtwo\x00\x07\x7f\x85\x9b", "", "one\\x0dtwo\\x00\\x07\\x7f\\x85\\x9b"),
    ("line\nnext\ttab\r", _text.MESSAGE_KEEP, "line\nnext\ttab\\x0d"),
    ("\u2028\u2029\ufeff\ufffe\uffff", "", "\\u2028\\u2029\\ufeff\\ufffe\\uffff"),
    ("lone \ud800 surrogate", "", "lone \ufffd surrogate"),
    (None, "", ""),
    (42, "", "42"),
])
def test_visible(text, keep, expected):
    assert _text.visible(text, keep) == expected


def test_json_safe_is_lossless():
    value = {"name": "a\u202eb\x7fc\x1bd\u2069", "lines": "x\ny"}
    text = _text.json_safe(json.dumps(value, indent=2, ensure_ascii=False))
    assert "\u202e" not in text and "\x7f" not in text and "\u2069" not in text and "\x1b" not in text
    assert json.loads(text) == value and text.count("\n") == 3


def test_people_result_escapes_messages_and_summaries_not_data():
    result = {"msg": "ex01: Enable-ExchangeCertificate failed: \u202eevil\nmore", "findings": ["critical HM101: \x1b[2J"],
              "plan": [{"description": "\u202e"}], "facts": {"friendly_name": "\u202e"}, "changed": True,
              "hosts": {"ex01": {"error": "\u2066x", "counts": {"critical": 1}}}}
    shown = _text.people_result(result)
    assert shown["msg"] == "ex01: Enable-ExchangeCertificate failed: \\u202eevil\nmore"
    assert shown["findings"] == ["critical HM101: \\x1b[2J"] and shown["hosts"]["ex01"]["error"] == "\\u2066x"
    assert shown["plan"] == result["plan"] and shown["facts"] == result["facts"] and shown["changed"] is True
    assert result["msg"].startswith("ex01: Enable-ExchangeCertificate failed: \u202e")  # the input is not changed
