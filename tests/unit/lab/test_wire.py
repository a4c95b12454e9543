"""The lab's side of the wire contract (tests/lab/wire.py): the canonical rows a guard compares."""

import pytest

from tests.lab import wire


@pytest.mark.parametrize("value, expected", [
    (None, ""), (True, "true"), (False, "false"), (0, "0"), (2048, "2048"), (-1, "-1"),
    ("IMAP, POP, IIS, SMTP", "IMAP, POP, IIS, SMTP"), ("", ""), ("M\u00fcller", "M\u00fcller"),
    (["mail.contoso.com", "autodiscover.contoso.com"], "mail.contoso.com\nautodiscover.contoso.com"),
    ([], ""), ([None, True, 1, "x"], "\ntrue\n1\nx"), ([["a", "b"], "c"], "a\nb\nc"),
])
def test_canonical(value, expected):
    assert wire.canonical(value) == expected


def test_canonical_rows_are_sorted_multisets():
    objects = [
        {"Thumbprint": "BB", "Services": "SMTP", "Other": 1},
        {"Thumbprint": "AA", "Services": "IMAP, POP", "NotAfter": "2026-01-01T00:00:00Z"},
        {"Thumbprint": "BB", "Services": "SMTP"},
    ]
    rows = wire.canonical_rows(objects, ["Thumbprint", "Services"])
    assert rows == ["AA\x1fIMAP, POP", "BB\x1fSMTP", "BB\x1fSMTP"]
    # order of objects does not matter, multiplicity does
    assert wire.canonical_rows(list(reversed(objects)), ["Thumbprint", "Services"]) == rows
    assert wire.canonical_rows(objects[:2], ["Thumbprint", "Services"]) != rows
    # a missing property is null, hence ""
    assert wire.canonical_rows(objects, ["NotAfter"]) == ["", "", "2026-01-01T00:00:00Z"]
    assert wire.canonical_rows([], ["Thumbprint"]) == []
