"""PowerShell error records as the runner reports them: type, category, message, fqid.

`type` is the exception's full type name, `category` the CategoryInfo.Category name and `fqid` the
FullyQualifiedErrorId: "<error id>,<full name of the command's class>". Exchange tasks use an
8-digit hex hash as error id (e.g. "DCA528C3,Microsoft.Exchange.Management.SystemConfigurationTasks.
RemoveExchangeCertificate"); the lab derives a stable one from the message key.
"""

from __future__ import annotations

import zlib

_SYSTEM_CONFIGURATION = "Microsoft.Exchange.Management.SystemConfigurationTasks."
COMMAND_CLASSES = {
    "Get-ExchangeServer": _SYSTEM_CONFIGURATION + "GetExchangeServer",
    "Get-ExchangeCertificate": _SYSTEM_CONFIGURATION + "GetExchangeCertificate",
    "Enable-ExchangeCertificate": _SYSTEM_CONFIGURATION + "EnableExchangeCertificate",
    "Remove-ExchangeCertificate": _SYSTEM_CONFIGURATION + "RemoveExchangeCertificate",
    "Import-ExchangeCertificate": _SYSTEM_CONFIGURATION + "ImportExchangeCertificate",
    "Get-TransportService": _SYSTEM_CONFIGURATION + "GetTransportService",
    "Get-SendConnector": _SYSTEM_CONFIGURATION + "GetSendConnector",
    "Set-SendConnector": _SYSTEM_CONFIGURATION + "SetSendConnector",
    "Get-ReceiveConnector": _SYSTEM_CONFIGURATION + "GetReceiveConnector",
    "Set-ReceiveConnector": _SYSTEM_CONFIGURATION + "SetReceiveConnector",
    "Get-HybridConfiguration": "Microsoft.Exchange.Management.Hybrid.GetHybridConfiguration",
    "Set-HybridConfiguration": "Microsoft.Exchange.Management.Hybrid.SetHybridConfiguration",
    "Get-Queue": "Microsoft.Exchange.Management.QueueViewerTasks.GetQueue",
    "Get-SettingOverride": _SYSTEM_CONFIGURATION + "GetSettingOverride",
    "Get-WinEvent": "Microsoft.PowerShell.Commands.GetWinEventCommand",
}

NONINTERACTIVE_MESSAGE = "PowerShell is in NonInteractive mode. Read and Prompt functionality is not available."
PARAMETER_BINDING = "System.Management.Automation.ParameterBindingException"


class CmdletError(Exception):
    """A terminating error of one call (the runner's catch block turns it into the call's `error`)."""

    def __init__(self, type_name: str, category: str, message: str, fqid: str):
        super().__init__(message)
        self.type = type_name
        self.category = category
        self.message = message
        self.fqid = fqid

    def to_json(self) -> dict:
        return {"type": self.type, "category": self.category, "message": self.message, "fqid": self.fqid}


def command_class(cmdlet: str) -> str:
    # Runner helpers are PowerShell functions: their errors carry the function name.
    return COMMAND_CLASSES.get(cmdlet, cmdlet)


def exchange_error_id(key: str) -> str:
    return "%08X" % zlib.crc32(key.encode("utf-8"))


def exchange_error(cmdlet: str, key: str, message: str, *, type_name: str, category: str) -> CmdletError:
    """An error raised by an Exchange task (hex error id, task class)."""
    return CmdletError(type_name, category, message, "%s,%s" % (exchange_error_id(key), command_class(cmdlet)))


def rpc_error(cmdlet: str, server: str, key: str, message: str, *, type_name: str, category: str) -> CmdletError:
    """Certificate tasks run in the Exchange Service Host; its failures arrive as 'special Rpc' errors."""
    text = "A special Rpc error occurs on server %s: %s" % (server, message)
    return exchange_error(cmdlet, key, text, type_name=type_name, category=category)


def object_not_found(cmdlet: str, identity: str, domain_controller: str) -> CmdletError:
    return exchange_error(
        cmdlet,
        "ManagementObjectNotFound",
        "The operation couldn't be performed because object '%s' couldn't be found on '%s'."
        % (identity, domain_controller),
        type_name="Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
        category="NotSpecified",
    )


def object_ambiguous(cmdlet: str, identity: str) -> CmdletError:
    return exchange_error(
        cmdlet,
        "ManagementObjectAmbiguous",
        "The operation couldn't be performed because '%s' matches multiple entries." % identity,
        type_name="Microsoft.Exchange.Configuration.Tasks.ManagementObjectAmbiguousException",
        category="NotSpecified",
    )


def parameter_error(cmdlet: str, error_id: str, message: str, *, category: str = "InvalidArgument",
                    type_name: str = PARAMETER_BINDING) -> CmdletError:
    """A parameter binding failure: PowerShell's own error ids (NamedParameterNotFound, ...)."""
    return CmdletError(type_name, category, message, "%s,%s" % (error_id, command_class(cmdlet)))


def prompt_error(cmdlet: str) -> CmdletError:
    """What a confirmation prompt does in `PowerShell -NonInteractive`."""
    return CmdletError(
        "System.Management.Automation.PSInvalidOperationException",
        "InvalidOperation",
        NONINTERACTIVE_MESSAGE,
        "System.Management.Automation.PSInvalidOperationException,%s" % command_class(cmdlet),
    )


def command_not_found(name: str) -> CmdletError:
    return CmdletError(
        "System.Management.Automation.CommandNotFoundException",
        "ObjectNotFound",
        "The term '%s' is not recognized as the name of a cmdlet, function, script file, or operable "
        "program. Check the spelling of the name, or if a path was included, verify that the path is "
        "correct and try again." % name,
        "CommandNotFoundException",
    )


def no_matching_events() -> CmdletError:
    return CmdletError(
        "System.Exception",
        "ObjectNotFound",
        "No events were found that match the specified selection criteria.",
        "NoMatchingEventsFound,Microsoft.PowerShell.Commands.GetWinEventCommand",
    )


def injected_fault(cmdlet: str, message: str | None) -> CmdletError:
    """A lab-injected failure, shaped like a transient Active Directory error of an Exchange task."""
    if cmdlet in COMMAND_CLASSES and cmdlet != "Get-WinEvent":
        return exchange_error(
            cmdlet,
            "InjectedFault",
            message
            or "Active Directory operation failed on DC01. This error could have been caused by user input "
            "or by the Active Directory server being unavailable. Please retry at a later time. "
            "Additional information: The LDAP server is unavailable. (injected by the lab)",
            type_name="Microsoft.Exchange.Data.Directory.ADTransientException",
            category="NotSpecified",
        )
    return CmdletError(
        "System.InvalidOperationException",
        "InvalidOperation",
        message or "The operation failed. (injected by the lab)",
        "System.InvalidOperationException,%s" % command_class(cmdlet),
    )


# The second hop (docs/tested.md, "Second hop"). A snap-in (local) Exchange task reaches Active Directory
# as the session's user. Over NTLM, or Kerberos without delegation, the WinRM logon holds no credentials
# that can be passed on (Ansible's Windows Remote Management guide, "Credential Delegation": NTLM no,
# Kerberos only with delegation, CredSSP yes), so the task cannot bind to a domain controller. Exchange
# reports that as an ADTransientException: "Active Directory server <dc> is not available. Error message:
# Active directory response: The LDAP server is unavailable." (the text Exchange setup prints for the
# same condition, AdInitErrorRule; the brief of issue 13 quotes "Active Directory server ... is not available").
def ad_unavailable(cmdlet: str, domain_controller: str) -> CmdletError:
    return exchange_error(
        cmdlet,
        "ADServerUnavailable",
        "Active Directory server %s is not available. Error message: Active directory response: The LDAP server "
        "is unavailable." % domain_controller,
        type_name="Microsoft.Exchange.Data.Directory.ADTransientException",
        category="NotSpecified",
    )


# What New-PSSession says when the session's logon has no credentials to authenticate onwards with
# Kerberos (the classic PowerShell remoting "second hop": SEC_E_NO_CREDENTIALS, 0x8009030e). Connect-
# ExchangeServer opens exactly such a session to http://<fqdn>/PowerShell (Kerberos, the current user).
def second_hop_session_message(fqdn: str) -> str:
    return ("Connecting to remote server %s failed with the following error message : WinRM cannot process the request. "
            "The following error with errorcode 0x8009030e occurred while using Kerberos authentication: A specified logon "
            "session does not exist. It may already have been terminated." % fqdn)


# Enable-/Remove-ExchangeCertificate in a plain PowerShell with the snap-in added, on some servers: the
# task fails while the same command works in the Exchange Management Shell (win-acme issue 1027, where
# it is quoted with this category and class; issues 1372 and 1789: the script works once it uses a
# remote session to http://<server>/PowerShell instead of Add-PSSnapin). 0xe0434f4d is the CLR's
# exception code, i.e. a managed exception inside the certificate task's RPC to the Service Host.
CERTIFICATE_TASKS = ("Enable-ExchangeCertificate", "Remove-ExchangeCertificate")


def snapin_certificate_task_error(cmdlet: str) -> CmdletError:
    return exchange_error(
        cmdlet,
        "CertificateTaskUnknownError",
        "The Exchange Certificate operation has failed with an exception.  The error message is: Unknown error (0xe0434f4d)",
        type_name="Microsoft.Exchange.Data.Common.LocalizedException",
        category="InvalidOperation",
    )
