"""Value conversion exactly as runner.ps1 does it (docs/wire-contract.md, "Value conversion").

Cmdlet emulations return plain Python values standing in for .NET ones: str for enums (already their
ToString()), datetime for DateTime, bytes for byte[], lists for multi-valued properties.
"""

from __future__ import annotations

import base64
import datetime


def convert(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(key): convert(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [convert(item) for item in value]
    return str(value)


def lookup(obj: dict, name: str):
    """PowerShell property access is case-insensitive; a missing property is $null."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return None


def select(obj: dict, properties) -> dict:
    """Select-Object: the requested properties, in request order, under the requested names."""
    return {name: convert(lookup(obj, name)) for name in properties}
