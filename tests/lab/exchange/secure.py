"""SecureString as the runner builds it from a typed request value ({"__hybridmail": "secure_string"}).

PowerShell prints a SecureString as its type name, and so does the lab (convert.py falls back to
str()): the text never reaches a response, the mutation log or status().
"""

from __future__ import annotations


class SecureString:
    __slots__ = ("_text",)

    def __init__(self, text: str):
        self._text = text

    def reveal(self) -> str:
        """What the cmdlet itself decrypts (Import-ExchangeCertificate -Password)."""
        return self._text

    def __str__(self) -> str:
        return "System.Security.SecureString"

    __repr__ = __str__
