"""Exchange's AllowedServices flags enum: parsing as PowerShell binds it, formatting as .NET prints it."""

from __future__ import annotations

# Value order is .NET's ToString order for flags: ascending values.
FLAGS = (
    ("IMAP", 1),
    ("POP", 2),
    ("UM", 4),
    ("IIS", 8),
    ("SMTP", 16),
    ("Federation", 32),
    ("UMCallRouter", 64),
)
NONE, IMAP, POP, UM, IIS, SMTP, FEDERATION, UMCALLROUTER = 0, 1, 2, 4, 8, 16, 32, 64
ALL = sum(value for _name, value in FLAGS)
_BY_NAME = {name.upper(): value for name, value in FLAGS}
_BY_NAME["NONE"] = NONE
TYPE_NAME = "Microsoft.Exchange.Management.SystemConfigurationTasks.AllowedServices"
ENUMERATOR_NAMES = "None, IMAP, POP, UM, IIS, SMTP, Federation, UMCallRouter"


class ServicesParseError(ValueError):
    pass


def format_services(value: int) -> str:
    """Enum.ToString(): "IMAP, POP, IIS, SMTP"; zero is "None"."""
    if not value:
        return "None"
    return ", ".join(name for name, flag in FLAGS if value & flag)


def _parse_one(item) -> int:
    if isinstance(item, bool):
        raise ServicesParseError(str(item))
    if isinstance(item, int):
        if item < 0 or item & ~ALL:
            raise ServicesParseError(str(item))
        return item
    if not isinstance(item, str):
        raise ServicesParseError(str(item))
    value = 0
    # Enum.Parse accepts "IIS,POP" and "IMAP, POP" (names are case-insensitive, blanks ignored).
    for token in item.split(","):
        token = token.strip()
        if token.isdigit():
            value |= _parse_one(int(token))
        elif token.upper() in _BY_NAME:
            value |= _BY_NAME[token.upper()]
        else:
            raise ServicesParseError(token or item)
    return value


def parse_services(value) -> int:
    """A -Services argument: a string ("IIS,POP"), an array (["IMAP", "POP"]) or a number."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ServicesParseError("")
        result = 0
        for item in value:
            result |= _parse_one(item)
        return result
    return _parse_one(value)


def parse_error_message(argument, token: str) -> str:
    shown = ", ".join(str(item) for item in argument) if isinstance(argument, (list, tuple)) else argument
    return (
        'Cannot bind parameter \'Services\'. Cannot convert value "%s" to type "%s". Error: "Unable to '
        "match the identifier name %s to a valid enumerator name. Specify one of the following enumerator "
        'names and try again: %s"' % (shown, TYPE_NAME, token, ENUMERATOR_NAMES)
    )
