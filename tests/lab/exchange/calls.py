"""Small builders for runner requests, for tests and demos that talk to ExchangeServer directly."""

from __future__ import annotations

COMPUTERNAME = {"__hybridmail": "computername"}


def days_ago(days) -> dict:
    return {"__hybridmail": "days_ago", "value": days}


def file_data(data: bytes) -> dict:
    """A [byte[]] parameter value (Import-ExchangeCertificate -FileData)."""
    import base64

    return {"__hybridmail": "bytes", "value": base64.b64encode(data).decode("ascii")}


def secure_string(text: str) -> dict:
    """A SecureString parameter value (-Password)."""
    return {"__hybridmail": "secure_string", "value": text}


def call(cmdlet: str, call_id: str | None = None, properties=None, expect=None, **parameters) -> dict:
    """One call; parameters are given as keyword arguments (Confirm=False for -Confirm:$false)."""
    entry = {"id": call_id or cmdlet, "cmdlet": cmdlet, "parameters": parameters, "properties": list(properties or ())}
    if expect is not None:
        entry["expect"] = expect
    return entry


def request(*calls, read_only: bool | None = None, load: str = "auto") -> dict:
    """A version-1 request; read_only defaults to True when every call is a Get-* call."""
    if read_only is None:
        read_only = all(entry["cmdlet"].startswith("Get-") for entry in calls)
    return {"version": 1, "read_only": read_only, "session": {"load": load}, "calls": list(calls)}
