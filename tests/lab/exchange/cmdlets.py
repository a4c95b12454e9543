"""The emulated cmdlets: Exchange's, Get-WinEvent and the runner's own helpers.

Each handler receives a CallContext (runner.py) and the bound parameters, and returns the objects
the real cmdlet would write to the pipeline, as dicts of property -> raw value (convert.py turns
them into JSON). Semantics and error texts follow exchange-facts.md; where Microsoft documents an
exact message (internal transport certificate, send connector tags) the lab uses it verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.lab import pki
from tests.lab.exchange import errors
from tests.lab.exchange import services as svc
from tests.lab.exchange import texts
from tests.lab.exchange.model import InstalledCertificate, parse_tls_certificate_name, same_tls_name
from tests.lab.exchange.params import Param, to_datetime


@dataclass(frozen=True)
class CmdletSpec:
    name: str
    handler: Callable
    params: tuple
    should_process: bool = False
    confirm_impact: str = "Medium"  # High: prompts unless -Confirm:$false
    exchange: bool = True  # needs the Exchange session (snap-in) loaded


REGISTRY: dict = {}


def cmdlet(name, *params, should_process=False, confirm_impact="Medium", exchange=True):
    def register(handler):
        REGISTRY[name] = CmdletSpec(name, handler, tuple(params), should_process, confirm_impact, exchange)
        return handler

    return register


def _thumbprint(value: str) -> str:
    return value.strip().replace(" ", "").upper()


def _certificate_identity(args: dict) -> str | None:
    if args.get("Thumbprint"):
        return _thumbprint(args["Thumbprint"])
    identity = args.get("Identity")
    if identity:
        return _thumbprint(identity.rsplit("\\", 1)[-1])
    return None


def _find_certificate(ctx, target, cmdlet_name: str, thumbprint: str):
    cert = target.certificates.get(thumbprint)
    if cert is None:
        raise errors.rpc_error(
            cmdlet_name, target.name, "CertificateNotFound",
            "The certificate with thumbprint %s was not found." % thumbprint,
            type_name="Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
            category="ObjectNotFound",
        )
    return cert


def _tls_name_argument(cmdlet_name: str, value):
    """TlsCertificateName binds to SmtpX509Identifier: '<I>issuer<S>subject', stored normalised."""
    if value is None or value == "":
        return None
    try:
        issuer, subject = parse_tls_certificate_name(value)
    except ValueError:
        raise errors.parameter_error(
            cmdlet_name,
            "CannotConvertArgumentNoMessage",
            "Cannot bind parameter 'TlsCertificateName'. Cannot convert value \"%s\" to type "
            "\"Microsoft.Exchange.Data.SmtpX509Identifier\". Error: \"The value '%s' isn't a valid X.509 "
            "certificate identifier. Use the format <I>issuer<S>subject.\"" % (value, value),
        ) from None
    return "<I>%s<S>%s" % (issuer, subject)


# ------------------------------------------------------------------------------------------------
# Servers, certificates
# ------------------------------------------------------------------------------------------------


@cmdlet("Get-ExchangeServer", Param("Identity"), Param("DomainController"), Param("Status", "switch"))
def get_exchange_server(ctx, args):
    servers = ctx.server.visible_servers()
    if args.get("Identity"):
        servers = [ctx.server.resolve_server(args["Identity"], "Get-ExchangeServer", include_edge=True)]
    return [server.exchange_server_object() for server in servers]


@cmdlet("Get-ExchangeCertificate", Param("Thumbprint"), Param("Identity"), Param("Server"),
        Param("DomainController"))
def get_exchange_certificate(ctx, args):
    target = ctx.target_server(args.get("Server"))
    thumbprint = _certificate_identity(args)
    if thumbprint:
        return [target.certificate_object(_find_certificate(ctx, target, "Get-ExchangeCertificate", thumbprint))]
    return [target.certificate_object(cert) for cert in target.certificates.values()]


@cmdlet(
    "Enable-ExchangeCertificate",
    Param("Thumbprint"), Param("Identity"), Param("Services", "services", mandatory=True), Param("Server"),
    Param("Force", "switch"), Param("DoNotRequireSsl", "switch"), Param("NetworkServiceAllowed", "switch"),
    Param("DomainController"),
    should_process=True,
)
def enable_exchange_certificate(ctx, args):
    target = ctx.target_server(args.get("Server"))
    thumbprint = _certificate_identity(args)
    if not thumbprint:
        raise errors.parameter_error(
            "Enable-ExchangeCertificate", "MissingMandatoryParameter",
            "Cannot process command because of one or more missing mandatory parameters: Thumbprint.",
        )
    cert = _find_certificate(ctx, target, "Enable-ExchangeCertificate", thumbprint)
    if isinstance(cert.issued.cert.public_key(), ec.EllipticCurvePublicKey) and not target.ecc_support:
        # Without the ECC support override (server.py, ecc_support) Exchange refuses ECC certificates; the
        # error as Exchange 2019 prints it (exchangeblogonline.de, "Exchange ECC Zertifikat einspielen", 2024).
        raise errors.rpc_error(
            "Enable-ExchangeCertificate", target.name, "KeyAlgorithmUnsupported",
            "The certificate with thumbprint %s was found but is not valid for use with Exchange Server "
            "(reason: KeyAlgorithmUnsupported)." % thumbprint,
            type_name="System.InvalidOperationException", category="NotSpecified",
        )
    requested = args["Services"]
    replace_internal = False
    if requested & svc.SMTP:
        if not cert.has_private_key:
            raise errors.rpc_error(
                "Enable-ExchangeCertificate", target.name, "NoPrivateKey",
                "The certificate with thumbprint %s doesn't have a private key that can be accessed, so it "
                "can't be enabled for SMTP." % thumbprint,
                type_name="System.InvalidOperationException", category="InvalidOperation",
            )
        if target.internal_transport_thumbprint != cert.thumbprint:
            # "Overwrite the existing default SMTP certificate?" is a ShouldContinue prompt: -Force answers
            # yes; -Confirm:$false suppresses it and keeps the current one (the lab's reading); else it
            # fails in a non-interactive session.
            if args.get("Force"):
                replace_internal = True
            elif args.get("Confirm") is not False:
                raise errors.prompt_error("Enable-ExchangeCertificate")
    if not ctx.should_process("Enable certificate %s for services %s" % (thumbprint, svc.format_services(requested))):
        return []
    before = svc.format_services(target.services_of(cert))
    stored = requested & ~svc.IIS
    if target.enable_behavior == "replace":
        cert.services = stored  # KB 2888788's reading: the list given replaces the bindings
    else:
        cert.services |= stored  # the documented behaviour: services are additive
    if requested & svc.IIS and not target.is_edge:
        ctx.change("Default Web Site certificate: %s -> %s" % (target.web_thumbprint, cert.thumbprint))
        target.web_thumbprint = cert.thumbprint
    ctx.change("Services of %s: %s -> %s" % (cert.thumbprint, before, svc.format_services(target.services_of(cert))))
    if replace_internal:
        ctx.change("InternalTransportCertificateThumbprint: %s -> %s"
                   % (target.internal_transport_thumbprint, cert.thumbprint))
        target.internal_transport_thumbprint = cert.thumbprint
    ctx.touch(target)
    return []


@cmdlet("Remove-ExchangeCertificate", Param("Thumbprint"), Param("Identity"), Param("Server"),
        Param("DomainController"), should_process=True, confirm_impact="High")
def remove_exchange_certificate(ctx, args):
    target = ctx.target_server(args.get("Server"))
    thumbprint = _certificate_identity(args)
    if not thumbprint:
        raise errors.parameter_error(
            "Remove-ExchangeCertificate", "MissingMandatoryParameter",
            "Cannot process command because of one or more missing mandatory parameters: Thumbprint.",
        )
    cert = _find_certificate(ctx, target, "Remove-ExchangeCertificate", thumbprint)
    if not ctx.should_process(
        "Remove certificate with thumbprint %s from the computer's certificate store" % thumbprint
    ):
        return []
    # Checked by Exchange after the confirmation (Microsoft's examples show the prompt first).
    tagged = [c.name for c in target.org.send_connectors if same_tls_name(c.tls_certificate_name, cert)]
    if tagged:
        raise errors.rpc_error(
            "Remove-ExchangeCertificate", target.name, "CertificateTaggedWithSendConnector",
            "These certificates are tagged with following Send Connectors : %s. Removing and replacing "
            "certificates from Send Connector would break the mail flow. If you still want to proceed then "
            "replace or remove these certificates from Send Connector and then try this command."
            % ", ".join(tagged),
            type_name="System.InvalidOperationException", category="InvalidOperation",
        )
    if target.internal_transport_thumbprint == cert.thumbprint:
        raise errors.rpc_error(
            "Remove-ExchangeCertificate", target.name, "InternalTransportCertificate",
            "The internal transport certificate cannot be removed because that would cause the Microsoft "
            "Exchange Transport service to stop. To replace the internal transport certificate, create a new "
            "certificate. The new certificate will automatically become the internal transport certificate. "
            "You can then remove the existing certificate.",
            type_name="System.InvalidOperationException", category="InvalidArgument",
        )
    del target.certificates[cert.thumbprint]
    ctx.change("Removed certificate %s (%s)" % (cert.thumbprint, cert.issued.subject))
    if target.web_thumbprint == cert.thumbprint:
        target.web_thumbprint = None
        ctx.change("Default Web Site has no certificate any more")
    if target.backend_thumbprint == cert.thumbprint:
        target.backend_thumbprint = None
        ctx.change("Exchange Back End site has no certificate any more")
    ctx.touch(target)
    return []


def _is_ca(certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


# Import-ExchangeCertificate (office-docs-powershell, exchange-ps/ExchangePowerShell/Import-ExchangeCertificate.md):
# -FileData Byte[] (the PFX's bytes; the documented way since -FileName was restricted to UNC paths), -Password
# SecureString, -PrivateKeyExportable Boolean, -FriendlyName, -Server. An imported certificate has no
# services until Enable-ExchangeCertificate gives it some (Get-ExchangeCertificate shows Services None).
# The CA certificates in the file land in the server's stores: intermediates in "Intermediate Certification
# Authorities", which changes the chain Windows builds (and sends to Exchange Online) for every certificate
# they issue. Error texts: the duplicate is Exchange's "Cannot import certificate. A certificate with the
# thumbprint ... already exists."; a wrong password surfaces the CryptoAPI text "The specified network password
# is not correct."; a file without the private key is refused with the PrivateKeyMissing reason Exchange gives
# for such a certificate (win-acme/win-acme#427). All arrive as "special Rpc" errors of the service host.
@cmdlet(
    "Import-ExchangeCertificate",
    Param("FileData", "bytes"), Param("Password", "securestring"), Param("PrivateKeyExportable", "bool"),
    Param("FriendlyName"), Param("Server"), Param("DomainController"),
    should_process=True,
)
def import_exchange_certificate(ctx, args):
    target = ctx.target_server(args.get("Server"))
    data = args.get("FileData")
    if not data:
        raise errors.parameter_error(
            "Import-ExchangeCertificate", "MissingMandatoryParameter",
            "Cannot process command because of one or more missing mandatory parameters: FileData.",
        )
    password = args["Password"].reveal() if args.get("Password") is not None else None
    try:
        loaded = pkcs12.load_pkcs12(data, password.encode("utf-8") if password else None)
    except ValueError:
        raise errors.rpc_error(
            "Import-ExchangeCertificate", target.name, "PfxPassword",
            "The PKCS #12 data couldn't be read: The specified network password is not correct.",
            type_name="System.Security.Cryptography.CryptographicException", category="InvalidOperation",
        ) from None
    additional = [item.certificate for item in loaded.additional_certs]
    if loaded.cert is not None:
        key, certificate = loaded.key, loaded.cert.certificate
    else:
        # Without a key bag nothing marks the end-entity certificate: it is the one that is not a CA.
        key, certificate = None, next((c for c in additional if not _is_ca(c)), None)
        additional = [c for c in additional if c is not certificate]
    if certificate is None:
        raise errors.rpc_error(
            "Import-ExchangeCertificate", target.name, "PfxNoCertificate",
            "The PKCS #12 data doesn't contain a certificate.",
            type_name="System.InvalidOperationException", category="InvalidOperation",
        )
    issued = pki.Issued.from_certificate(certificate, key)
    if key is None:
        raise errors.rpc_error(
            "Import-ExchangeCertificate", target.name, "PrivateKeyMissing",
            "The certificate with thumbprint %s was found but is not valid for use with Exchange Server "
            "(reason: PrivateKeyMissing)." % issued.thumbprint,
            type_name="System.InvalidOperationException", category="InvalidOperation",
        )
    if issued.thumbprint in target.certificates:
        raise errors.rpc_error(
            "Import-ExchangeCertificate", target.name, "CertificateAlreadyExists",
            "Cannot import certificate. A certificate with the thumbprint %s already exists." % issued.thumbprint,
            type_name="System.InvalidOperationException", category="WriteError",
        )
    if not ctx.should_process("Import certificate %s (%s)" % (issued.thumbprint, issued.subject)):
        return []
    friendly_name = args.get("FriendlyName") or (loaded.cert.friendly_name or b"").decode("utf-8", "replace")
    cert = InstalledCertificate(issued, friendly_name, svc.NONE, has_private_key=True, source="imported")
    target.certificates[cert.thumbprint] = cert
    ctx.change("Imported certificate %s (%s, issued by %s), services None" % (cert.thumbprint, issued.subject, issued.issuer))
    for extra in additional:
        ca = pki.Issued.from_certificate(extra, None)
        if ca.is_self_signed:
            continue  # roots: the lab does not let a file change what the server trusts
        if ca.thumbprint not in target.intermediate_store:
            target.intermediate_store[ca.thumbprint] = ca
            ctx.change("Intermediate Certification Authorities: added %s (%s)" % (ca.thumbprint, ca.subject))
    ctx.touch(target)
    return [target.certificate_object(cert)]


@cmdlet("Get-TransportService", Param("Identity"), Param("DomainController"))
def get_transport_service(ctx, args):
    servers = ctx.server.visible_servers()
    if args.get("Identity"):
        servers = [ctx.server.resolve_server(args["Identity"], "Get-TransportService", include_edge=True)]
    return [
        {
            "Identity": server.name,
            "Name": server.name,
            "InternalTransportCertificateThumbprint": server.internal_transport_thumbprint,
            "MaxOutboundConnections": 1000,
        }
        for server in servers
    ]


# ------------------------------------------------------------------------------------------------
# Connectors, hybrid configuration
# ------------------------------------------------------------------------------------------------


def _resolve_send_connector(ctx, cmdlet_name, identity):
    found = ctx.server.org.find_send_connector(identity)
    if not found:
        raise errors.object_not_found(cmdlet_name, identity, ctx.server.org.domain_controller)
    if len(found) > 1:
        raise errors.object_ambiguous(cmdlet_name, identity)
    return found[0]


@cmdlet("Get-SendConnector", Param("Identity"), Param("DomainController"))
def get_send_connector(ctx, args):
    connectors = ctx.server.org.send_connectors
    if args.get("Identity"):
        connectors = [_resolve_send_connector(ctx, "Get-SendConnector", args["Identity"])]
    return [connector.to_object() for connector in connectors]


_SEND_CONNECTOR_SETTINGS = {
    "TlsCertificateName": "tls_certificate_name",
    "Fqdn": "fqdn",
    "RequireTLS": "require_tls",
    "TlsAuthLevel": "tls_auth_level",
    "TlsDomain": "tls_domain",
    "Enabled": "enabled",
    "CloudServicesMailEnabled": "cloud_services_mail_enabled",
}
_TLS_AUTH_LEVELS = ("EncryptionOnly", "CertificateValidation", "DomainValidation")


@cmdlet(
    "Set-SendConnector",
    Param("Identity", mandatory=True), Param("TlsCertificateName"), Param("Fqdn"), Param("RequireTLS", "bool"),
    Param("TlsAuthLevel"), Param("TlsDomain"), Param("Enabled", "bool"), Param("CloudServicesMailEnabled", "bool"),
    Param("DomainController"), Param("Force", "switch"),
    should_process=True,
)
def set_send_connector(ctx, args):
    connector = _resolve_send_connector(ctx, "Set-SendConnector", args["Identity"])
    if ctx.server.is_edge:
        # A subscribed Edge Transport server holds the organisation's send connectors as EdgeSync replicates
        # them; subscribing deletes its own and locks their management there (Microsoft Learn, "Edge
        # Subscriptions"): a change is made on a Mailbox server. The message text is modelled, not Microsoft's.
        raise errors.exchange_error(
            "Set-SendConnector", "EdgeSyncManaged",
            "The send connector '%s' is replicated to this Edge Transport server by EdgeSync and can't be changed here. "
            "Change it on a Mailbox server of the organization." % connector.name,
            type_name="Microsoft.Exchange.Configuration.Tasks.TaskException", category="InvalidOperation")
    updates = {}
    for parameter, attribute in _SEND_CONNECTOR_SETTINGS.items():
        if parameter not in args:
            continue
        value = args[parameter]
        if parameter == "TlsCertificateName":
            value = _tls_name_argument("Set-SendConnector", value)
        if parameter == "TlsAuthLevel" and value is not None:
            match = [level for level in _TLS_AUTH_LEVELS if level.lower() == value.lower()]
            if not match:
                raise errors.parameter_error(
                    "Set-SendConnector", "CannotConvertArgumentNoMessage",
                    "Cannot bind parameter 'TlsAuthLevel'. Cannot convert value \"%s\" to type "
                    "\"Microsoft.Exchange.Data.TlsAuthLevel\"." % value,
                )
            value = match[0]
        updates[attribute] = (parameter, value)
    if not ctx.should_process("Modify send connector %s" % connector.name):
        return []
    for attribute, (parameter, value) in updates.items():
        old = getattr(connector, attribute)
        setattr(connector, attribute, value)
        ctx.change("Send connector %s: %s %r -> %r" % (connector.name, parameter, old, value))
    ctx.touch_organization()
    return []


def _receive_connectors(ctx, server_identity=None):
    if server_identity:
        servers = [ctx.target_server(server_identity)]
    else:
        servers = [s for s in ctx.server.visible_servers() if s is ctx.server or not s.is_edge]
    return [connector for server in servers for connector in server.receive_connectors]


def _resolve_receive_connector(ctx, cmdlet_name, identity):
    identity = str(identity)
    if "\\" in identity:
        server_name, _separator, name = identity.partition("\\")
        candidates = ctx.target_server(server_name, cmdlet_name=cmdlet_name).receive_connectors
    else:
        name = identity
        candidates = _receive_connectors(ctx)
    found = [c for c in candidates if c.name.lower() == name.strip().lower()]
    if not found:
        raise errors.object_not_found(cmdlet_name, identity, ctx.server.org.domain_controller)
    if len(found) > 1:
        raise errors.object_ambiguous(cmdlet_name, identity)
    return found[0]


@cmdlet("Get-ReceiveConnector", Param("Identity"), Param("Server"), Param("DomainController"))
def get_receive_connector(ctx, args):
    if args.get("Identity"):
        return [_resolve_receive_connector(ctx, "Get-ReceiveConnector", args["Identity"]).to_object()]
    return [connector.to_object() for connector in _receive_connectors(ctx, args.get("Server"))]


_RECEIVE_CONNECTOR_SETTINGS = {
    "TlsCertificateName": "tls_certificate_name",
    "Fqdn": "fqdn",
    "RequireTLS": "require_tls",
    "Enabled": "enabled",
    "TlsDomainCapabilities": "tls_domain_capabilities",
}


@cmdlet(
    "Set-ReceiveConnector",
    Param("Identity", mandatory=True), Param("TlsCertificateName"), Param("Fqdn"), Param("RequireTLS", "bool"),
    Param("Enabled", "bool"), Param("TlsDomainCapabilities", "strings"), Param("DomainController"),
    should_process=True,
)
def set_receive_connector(ctx, args):
    connector = _resolve_receive_connector(ctx, "Set-ReceiveConnector", args["Identity"])
    updates = {}
    for parameter, attribute in _RECEIVE_CONNECTOR_SETTINGS.items():
        if parameter in args:
            value = args[parameter]
            if parameter == "TlsCertificateName":
                value = _tls_name_argument("Set-ReceiveConnector", value)
            updates[attribute] = (parameter, value)
    if not ctx.should_process("Modify receive connector %s" % connector.identity):
        return []
    for attribute, (parameter, value) in updates.items():
        old = getattr(connector, attribute)
        setattr(connector, attribute, value)
        ctx.change("Receive connector %s: %s %r -> %r" % (connector.identity, parameter, old, value))
    ctx.touch(ctx.server.org.servers.get(connector.server, ctx.server))
    return []


# Get-SettingOverride (office-docs-powershell, Get-SettingOverride.md, whose example selects Name, Reason,
# ComponentName, SectionName, Parameters, Server): the organisation's setting overrides (Active Directory), each
# with Parameters ("Name=value" strings), the Server list it applies to (empty: every server) and a Status
# (CSS-Exchange HealthChecker Get-FilteredSettingOverrideInformation.ps1 reads Status Accepted). The lab holds the
# one override the collection looks for, ECCCertificateSupport (server.py, ecc_support), per server. Not part of
# the Edge Transport shell.
@cmdlet("Get-SettingOverride", Param("Identity"), Param("DomainController"))
def get_setting_override(ctx, args):
    if ctx.server.is_edge:
        raise errors.command_not_found("Get-SettingOverride")
    return [{"Name": "EnableECCCertificateSupport %s" % server.name, "Identity": "EnableECCCertificateSupport %s" % server.name,
             "ComponentName": "Global", "SectionName": "ECCCertificateSupport", "Parameters": ["Enabled=true"],
             "Server": [server.name], "Reason": "ECC certificates", "Status": "Accepted"}
            for server in ctx.server.org.servers.values() if server.ecc_support and not server.is_edge]


@cmdlet("Get-HybridConfiguration", Param("DomainController"))
def get_hybrid_configuration(ctx, args):
    if ctx.server.is_edge:
        # The hybrid cmdlets are not part of the Edge Transport management shell.
        raise errors.command_not_found("Get-HybridConfiguration")
    hybrid = ctx.server.org.hybrid
    return [hybrid.to_object()] if hybrid else []


# Set-HybridConfiguration (office-docs-powershell, Set-HybridConfiguration.md): -TlsCertificateName
# <SmtpX509Identifier> is the organisation-wide name of the certificate for hybrid mail flow (one object in
# Active Directory for the whole organisation). Like Get-HybridConfiguration it is not part of the Edge
# Transport management shell.
@cmdlet("Set-HybridConfiguration", Param("TlsCertificateName"), Param("OnPremisesSmartHost"),
        Param("DomainController"), should_process=True)
def set_hybrid_configuration(ctx, args):
    if ctx.server.is_edge:
        raise errors.command_not_found("Set-HybridConfiguration")
    hybrid = ctx.server.org.hybrid
    if hybrid is None:
        raise errors.object_not_found("Set-HybridConfiguration", "Hybrid Configuration", ctx.server.org.domain_controller)
    updates = {}
    if "TlsCertificateName" in args:
        value = _tls_name_argument("Set-HybridConfiguration", args["TlsCertificateName"])
        updates["tls_certificate_name"] = ("TlsCertificateName", value)
    if "OnPremisesSmartHost" in args:
        updates["on_premises_smart_host"] = ("OnPremisesSmartHost", args["OnPremisesSmartHost"])
    if not ctx.should_process("Modify hybrid configuration"):
        return []
    for attribute, (parameter, value) in updates.items():
        old = getattr(hybrid, attribute)
        setattr(hybrid, attribute, value)
        ctx.change("Hybrid configuration: %s %r -> %r" % (parameter, old, value))
    ctx.touch_organization()
    return []


# ------------------------------------------------------------------------------------------------
# Queue and event log
# ------------------------------------------------------------------------------------------------


@cmdlet("Get-Queue", Param("Server"), Param("Identity"), Param("Filter"))
def get_queue(ctx, args):
    target = ctx.target_server(args.get("Server"))
    queues = target.queue_objects()
    if args.get("Identity"):
        wanted = args["Identity"].lower()
        queues = [queue for queue in queues if queue["Identity"].lower() == wanted]
        if not queues:
            raise errors.exchange_error(
                "Get-Queue", "QueueNotFound", "The queue '%s' couldn't be found." % args["Identity"],
                type_name="Microsoft.Exchange.Management.QueueViewerTasks.LocalizedException",
                category="InvalidArgument",
            )
    return queues


_LEVELS = {1: "Critical", 2: "Error", 3: "Warning", 4: "Information"}
_LEVEL_NUMBERS = {name: number for number, name in _LEVELS.items()}
_FILTER_KEYS = ("LogName", "ProviderName", "Id", "Level", "StartTime", "EndTime")


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _filter_hashtable(filters: dict) -> dict:
    normalised = {}
    for key, value in filters.items():
        match = [name for name in _FILTER_KEYS if name.lower() == str(key).lower()]
        if not match:
            raise errors.CmdletError(
                "System.Exception", "InvalidArgument",
                "The specified key '%s' is not valid in the FilterHashtable parameter." % key,
                "InvalidFilterHashtableKey,Microsoft.PowerShell.Commands.GetWinEventCommand",
            )
        normalised[match[0]] = value
    return normalised


@cmdlet("Get-WinEvent", Param("FilterHashtable", "hashtable"), Param("LogName", "strings"),
        Param("ProviderName", "strings"), Param("MaxEvents", "int"), Param("Oldest", "switch"), exchange=False)
def get_win_event(ctx, args):
    server = ctx.server
    filters = _filter_hashtable(args.get("FilterHashtable") or {})
    logs = [name.lower() for name in _as_list(filters.get("LogName", args.get("LogName") or []))]
    providers = [str(p).lower() for p in _as_list(filters.get("ProviderName", args.get("ProviderName") or []))]
    ids = {int(i) for i in _as_list(filters["Id"])} if "Id" in filters else None
    levels = {int(level) for level in _as_list(filters["Level"])} if "Level" in filters else None
    start = to_datetime(filters["StartTime"]) if "StartTime" in filters else None
    end = to_datetime(filters["EndTime"]) if "EndTime" in filters else None
    selected = []
    for event in server.events:
        if logs and event.log_name.lower() not in logs:
            continue
        if providers and event.provider.lower() not in providers:
            continue
        if ids is not None and event.event_id not in ids:
            continue
        if levels is not None and _LEVEL_NUMBERS.get(event.level) not in levels:
            continue
        if start and event.time < start:
            continue
        if end and event.time > end:
            continue
        selected.append(event)
    selected.sort(key=lambda event: (event.time, event.record_id), reverse=not args.get("Oldest"))
    if args.get("MaxEvents"):
        selected = selected[: args["MaxEvents"]]
    if not selected:
        raise errors.no_matching_events()
    return [
        {
            "Id": event.event_id,
            "ProviderName": event.provider,
            "LogName": event.log_name,
            "TimeCreated": event.time,
            "Level": _LEVEL_NUMBERS.get(event.level, 4),
            "LevelDisplayName": texts.level_name(server.locale, event.level),
            "TaskDisplayName": event.task,
            "MachineName": server.fqdn,
            "RecordId": event.record_id,
            "Message": event.message,
        }
        for event in selected
    ]


# ------------------------------------------------------------------------------------------------
# Runner helpers (functions inside runner.ps1; no Exchange session needed)
# ------------------------------------------------------------------------------------------------


@cmdlet("Get-HybridmailHost", exchange=False)
def get_hybridmail_host(ctx, args):
    server = ctx.server
    return [
        {
            "ComputerName": server.name,
            "Fqdn": server.fqdn,
            "Domain": server.domain,
            "PowerShellVersion": server.powershell_version,
            "OSVersion": server.os_version,
            "Culture": texts.CULTURES[server.locale],
            "PSEdition": "Desktop",  # Windows PowerShell 5.1 on every supported Exchange version
            "LanguageMode": server.language_mode,
            "UserName": server.account_name(ctx.user),
        }
    ]


@cmdlet("Get-HybridmailCertificateChain", exchange=False)
def get_hybridmail_certificate_chain(ctx, args):
    server = ctx.server
    objects = []
    for cert in server.certificates.values():
        built = server.local_chain(cert.issued)
        objects.append(
            {
                "Thumbprint": cert.thumbprint,
                "ChainThumbprints": built.thumbprints,
                "ChainRawData": [element.der for element in built.elements],
                "ChainStatus": list(built.status),
            }
        )
    return objects


@cmdlet("Get-HybridmailTlsState", exchange=False)
def get_hybridmail_tls_state(ctx, args):
    tls = ctx.server.tls
    return [
        {
            "Tls12ClientEnabled": tls.tls12_client,
            "Tls12ServerEnabled": tls.tls12_server,
            "StrongCryptoNet4": tls.strong_crypto_net4,
            # HKLM\SOFTWARE\Microsoft\ExchangeServer\v15\Diagnostics EnableEccCertificateSupport (HealthChecker
            # Get-ExchangeRegistryValues.ps1): "1" where the lab's ECC support is on, absent elsewhere.
            "EccCertificateSupport": True if ctx.server.ecc_support else None,
        }
    ]


# Registers Get-ManagementRole and Get-ManagementRoleAssignment (rbac.py uses the decorator above).
from tests.lab.exchange import rbac  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
