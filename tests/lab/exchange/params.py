"""Parameter binding as PowerShell does it for a splatted hashtable.

Names are case-insensitive and may be abbreviated to a unique prefix; values are converted to the
parameter's type or rejected with PowerShell's binding errors, so that a request the real runner
would fail on also fails in the lab.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from tests.lab.exchange import errors
from tests.lab.exchange import services as svc
from tests.lab.exchange.secure import SecureString

COMMON_PARAMETERS = (
    "Verbose", "Debug", "ErrorAction", "WarningAction", "InformationAction", "ErrorVariable",
    "WarningVariable", "InformationVariable", "OutVariable", "OutBuffer", "PipelineVariable",
)
SHOULD_PROCESS_PARAMETERS = ("WhatIf", "Confirm")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str = "string"  # string | strings | switch | bool | int | services | hashtable | datetime | bytes | securestring
    mandatory: bool = False


def _type_label(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "System.Byte[]"  # a {"__hybridmail": "bytes"} value
    if isinstance(value, list):
        return "System.Object[]"
    if isinstance(value, dict):
        return "System.Collections.Hashtable"
    if isinstance(value, bool):
        return "System.Boolean"
    if isinstance(value, int):
        return "System.Int32"
    if isinstance(value, float):
        return "System.Double"
    return "System.String"


def _string_of(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _convert(cmdlet: str, param: Param, value):
    kind = param.kind
    if value is None:
        if param.mandatory or kind in ("switch", "bool", "int", "services"):
            raise errors.parameter_error(
                cmdlet,
                "ParameterArgumentValidationError",
                "Cannot validate argument on parameter '%s'. The argument is null or empty. Provide an "
                "argument that is not null or empty, and then try the command again." % param.name,
                type_name="System.Management.Automation.ParameterBindingValidationException",
                category="InvalidData",
            )
        return None
    if kind == "string":
        if isinstance(value, (list, dict, bytes, bytearray)):
            raise errors.parameter_error(
                cmdlet,
                "CannotConvertArgument",
                "Cannot convert '%s' to the type 'System.String' required by parameter '%s'. Specified "
                "method is not supported." % (_type_label(value), param.name),
            )
        text = _string_of(value)
        if param.mandatory and not text:
            raise errors.parameter_error(
                cmdlet,
                "ParameterArgumentValidationError",
                "Cannot validate argument on parameter '%s'. The argument is null or empty. Provide an "
                "argument that is not null or empty, and then try the command again." % param.name,
                type_name="System.Management.Automation.ParameterBindingValidationException",
                category="InvalidData",
            )
        return text
    if kind == "strings":
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, (list, dict)) for item in items):
            raise errors.parameter_error(
                cmdlet, "CannotConvertArgument",
                "Cannot convert 'System.Object[]' to the type 'System.String[]' required by parameter '%s'."
                % param.name,
            )
        return [_string_of(item) for item in items if item is not None]
    if kind in ("switch", "bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return bool(value)
        raise errors.parameter_error(
            cmdlet,
            "ParameterArgumentTransformationError",
            "Cannot process argument transformation on parameter '%s'. Cannot convert value \"%s\" to type "
            "\"System.%s\". Boolean parameters accept only Boolean values and numbers, such as $True, "
            "$False, 1 or 0." % (param.name, _type_label(value), "Management.Automation.SwitchParameter"
                                 if kind == "switch" else "Boolean"),
            type_name="System.Management.Automation.ParameterBindingArgumentTransformationException",
        )
    if kind == "int":
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            raise _cannot_convert(cmdlet, param, value, "System.Int64")
        try:
            return int(value) if not isinstance(value, float) else int(round(value))
        except (TypeError, ValueError):
            raise _cannot_convert(cmdlet, param, value, "System.Int64", 'Error: "Input string was not in a correct format."') from None
    if kind == "services":
        try:
            return svc.parse_services(value)
        except svc.ServicesParseError as exc:
            raise errors.parameter_error(
                cmdlet, "CannotConvertArgumentNoMessage", svc.parse_error_message(value, str(exc))
            ) from None
    if kind == "hashtable":
        if not isinstance(value, dict):
            raise errors.parameter_error(
                cmdlet,
                "CannotConvertArgumentNoMessage",
                'Cannot bind parameter \'%s\'. Cannot convert the "%s" value of type "%s" to type '
                '"System.Collections.Hashtable".' % (param.name, _string_of(value), _type_label(value)),
            )
        return value
    if kind == "bytes":  # [byte[]]: only a typed value ({"__hybridmail": "bytes"}) arrives as bytes
        if not isinstance(value, (bytes, bytearray)):
            raise _cannot_convert(cmdlet, param, value, "System.Byte[]")
        return bytes(value)
    if kind == "securestring":  # PowerShell does not turn a String into a SecureString
        if not isinstance(value, SecureString):
            raise errors.parameter_error(
                cmdlet, "CannotConvertArgumentNoMessage",
                'Cannot bind parameter \'%s\'. Cannot convert the "%s" value of type "%s" to type '
                '"System.Security.SecureString".' % (param.name, _string_of(value), _type_label(value)),
            )
        return value
    if kind == "datetime":
        converted = to_datetime(value)
        if converted is None:
            raise _cannot_convert(cmdlet, param, value, "System.DateTime")
        return converted
    raise AssertionError("unknown parameter kind %r" % kind)


def _cannot_convert(cmdlet, param, value, type_name, detail=""):
    return errors.parameter_error(
        cmdlet,
        "CannotConvertArgumentNoMessage",
        ("Cannot bind parameter '%s'. Cannot convert value \"%s\" to type \"%s\". %s"
         % (param.name, _string_of(value), type_name, detail)).rstrip(),
    )


def to_datetime(value):
    """A DateTime argument: a datetime (typed value) or an ISO-8601 string; None when not convertible."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
    return None


def bind(cmdlet: str, specs, should_process: bool, arguments: dict) -> dict:
    """Arguments of one call -> {canonical parameter name: converted value} (common parameters dropped)."""
    known = {param.name: param for param in specs}
    extra = SHOULD_PROCESS_PARAMETERS if should_process else ()
    names = list(known) + list(extra) + list(COMMON_PARAMETERS)
    bound: dict = {}
    for given, value in (arguments or {}).items():
        matches = [name for name in names if name.lower() == given.lower()]
        if not matches:
            matches = [name for name in names if name.lower().startswith(given.lower())]
        if not matches:
            raise errors.parameter_error(
                cmdlet, "NamedParameterNotFound",
                "A parameter cannot be found that matches parameter name '%s'." % given,
            )
        if len(matches) > 1:
            raise errors.parameter_error(
                cmdlet, "AmbiguousParameter",
                "Parameter cannot be processed because the parameter name '%s' is ambiguous. Possible matches "
                "include: %s." % (given, " ".join("-" + name for name in matches)),
            )
        name = matches[0]
        if name in bound:
            raise errors.parameter_error(
                cmdlet, "ParameterAlreadyBound",
                "Cannot bind parameter because parameter '%s' is specified more than once." % name,
            )
        if name in COMMON_PARAMETERS:
            continue  # the runner itself decides -ErrorAction; the rest changes nothing here
        if name in SHOULD_PROCESS_PARAMETERS:
            bound[name] = _convert(cmdlet, Param(name, "switch"), value)
            continue
        bound[name] = _convert(cmdlet, known[name], value)
    missing = [param.name for param in specs if param.mandatory and param.name not in bound]
    if missing:
        raise errors.parameter_error(
            cmdlet, "MissingMandatoryParameter",
            "Cannot process command because of one or more missing mandatory parameters: %s." % " ".join(missing),
        )
    return bound
