"""The planner of smtp_certificate and send_connector_tls (plugins/plugin_utils/_plan.py).

Snapshots are built from real certificates (tests/lab/pki.py, EC keys so that building them is cheap)
and judged by the real trust code, so the planner sees exactly what it sees on a server. apply_plan()
below plays a plan against the model the way Exchange would, under both readings of
Enable-ExchangeCertificate, through the very calls the enforcer would send.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _enforce, _facts, _model, _plan, _snapshot, _trust
from tests.lab import pki

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
SERVER, SERVER_FQDN, MAIL = "EX01", "ex01.contoso.com", "mail.contoso.com"
SEND_CONNECTOR = "Outbound to Office 365"
RECEIVE_CONNECTOR = "EX01\\Default Frontend EX01"
CLOUD_CAPABILITY = "mail.protection.outlook.com:AcceptCloudServicesMail"

# ---------------------------------------------------------------------------------------------
# Certificates: one pool, built once
# ---------------------------------------------------------------------------------------------


def _ec(slot: int):
    return pki.make_key("ec", 256, slot)


@functools.lru_cache(maxsize=None)
def authorities() -> dict:
    return {
        "public": pki.make_ca("CN=Test Public Root, O=Test Trust, C=US", key=_ec(1), now=NOW),
        "enterprise": pki.make_ca("CN=Contoso Enterprise Root, DC=contoso, DC=com", key=_ec(2), now=NOW),
    }


@functools.lru_cache(maxsize=None)
def trust_store() -> _trust.TrustStore:
    return _trust.trust_store_from_pem(authorities()["public"].pem, "test bundle")


# id -> (issuer: public | enterprise | self, subject, SANs, not_before, not_after)
SPECS = {
    "public": ("public", "CN=mail.contoso.com, O=Contoso", [MAIL], "-100d", "+200d"),
    "public_renewed": ("public", "CN=mail.contoso.com, O=Contoso", [MAIL], "-10d", "+300d"),  # same issuer+subject
    "public_expired": ("public", "CN=mail.contoso.com, O=Contoso, OU=2024", [MAIL], "-400d", "-5d"),
    "public_both": ("public", "CN=mail.contoso.com, O=Contoso, OU=Both", [MAIL, SERVER_FQDN], "-50d", "+250d"),
    "public_server": ("public", "CN=ex01.contoso.com, O=Contoso", [SERVER_FQDN], "-50d", "+250d"),
    "internal": ("enterprise", "CN=mail.contoso.com, OU=IT, O=Contoso", [MAIL, SERVER_FQDN], "-12d", "+700d"),
    "self_mail": ("self", "CN=mail.contoso.com", [MAIL], "-30d", "+5y"),
}
POOL_IDS = tuple(SPECS)


@functools.lru_cache(maxsize=None)
def issued(cert_id: str) -> pki.Issued:
    if cert_id == "exchange":
        return pki.make_exchange_self_signed(SERVER, SERVER_FQDN, key=_ec(10), now=NOW)
    if cert_id == "auth":
        return pki.make_exchange_auth_certificate(key=_ec(11), now=NOW)
    issuer, subject, sans, not_before, not_after = SPECS[cert_id]
    return pki.make_leaf(subject, None if issuer == "self" else authorities()[issuer], sans=sans, not_before=not_before,
                         not_after=not_after, now=NOW, key=_ec(20 + POOL_IDS.index(cert_id)))


def thumbprint(cert_id: str) -> str:
    return issued(cert_id).thumbprint


def tls_name(cert_id: str) -> str:
    return _model.format_tls_certificate_name(issued(cert_id).issuer, issued(cert_id).subject)


@functools.lru_cache(maxsize=None)
def certificate(cert_id: str, services: str, has_private_key: bool = True) -> _model.Certificate:
    item = issued(cert_id)
    return _model.Certificate.from_object({
        "Thumbprint": item.thumbprint, "Subject": item.subject, "Issuer": item.issuer, "FriendlyName": cert_id,
        "CertificateDomains": item.dns_names, "Services": services, "HasPrivateKey": has_private_key,
        "RawData": base64.b64encode(item.der).decode("ascii"),
    })


# ---------------------------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------------------------


def send_connector(tls=None, fqdn=MAIL, sources=(SERVER,)) -> _model.SendConnector:
    return _model.SendConnector.from_object({
        "Identity": SEND_CONNECTOR, "Name": SEND_CONNECTOR, "Enabled": True, "Fqdn": fqdn,
        "AddressSpaces": ["SMTP:contoso.mail.onmicrosoft.com;1"], "SourceTransportServers": list(sources),
        "CloudServicesMailEnabled": True, "RequireTLS": True, "TlsCertificateName": tls,
    })


def receive_connector(tls=None, cloud=True) -> _model.ReceiveConnector:
    return _model.ReceiveConnector.from_object({
        "Identity": RECEIVE_CONNECTOR, "Name": "Default Frontend EX01", "Server": SERVER, "Enabled": True,
        "Fqdn": SERVER_FQDN, "TlsCertificateName": tls, "TlsDomainCapabilities": [CLOUD_CAPABILITY] if cloud else [],
    })


def hybrid_configuration(tls=None) -> _model.HybridConfiguration:
    return _model.HybridConfiguration.from_object({
        "TlsCertificateName": tls, "SendingTransportServers": [SERVER], "ReceivingTransportServers": [SERVER],
        "OnPremisesSmartHost": MAIL,
    })


EXCHANGE = ("exchange", "IMAP, POP, IIS, SMTP")
AUTH = ("auth", "SMTP")


TRANSPORT_READ_FAILED = _snapshot.CallFailure(
    "transport", "Get-TransportService",
    "ADTransientException: ReadError: Active Directory server dc01.contoso.com is not available. [Get-TransportService]")


def snapshot(*certs, itc="exchange", send=None, receive=None, hybrid=None, exchange=EXCHANGE[1]) -> _snapshot.ServerSnapshot:
    """certs: (id, services) or (id, services, has_private_key); the Exchange self-signed and Auth
    certificates are always there, as on a real Mailbox server (exchange: the self-signed one's
    services). itc: the internal transport certificate's id, None for an empty
    InternalTransportCertificateThumbprint, TRANSPORT_READ_FAILED for a failed Get-TransportService."""
    records = tuple(certificate(*spec) for spec in (("exchange", exchange), AUTH) + certs)
    if itc is TRANSPORT_READ_FAILED:
        transport, failures = None, (TRANSPORT_READ_FAILED,)
    else:
        transport, failures = _model.TransportService(SERVER, thumbprint(itc) if itc else None), ()
    return _snapshot.ServerSnapshot(
        host=SERVER, computer_name=SERVER, powershell="5.1",
        server=_model.ExchangeServer(SERVER, SERVER_FQDN, None, frozenset({"Mailbox"}), None, False, None),
        transport=transport,
        certificates=records, chains=(), send_connectors=(send or send_connector(),),
        receive_connectors=(receive,) if receive else (), hybrid=hybrid, events=None, queues=(), tls=None, failures=failures,
        ecc_support=True,  # the test certificates have EC keys: Exchange's ECC support is on here
    )


@functools.lru_cache(maxsize=None)
def _verdict(certificate_record: _model.Certificate, names: tuple) -> _trust.Verdict:
    return _trust.evaluate(certificate_record, intermediates=(), store=trust_store(), names=names, now=NOW)


def verdicts_of(server: _snapshot.ServerSnapshot) -> dict:
    """What the enforcer judges with (_facts.evaluate's names), memoised: hypothesis judges the same
    certificates for the same names again and again."""
    return {c.thumbprint: _verdict(c, _facts.judged_names(server, c)) for c in server.certificates}


def plan(server, **options) -> _plan.Plan:
    return _plan.plan_smtp_certificate(server, verdicts_of(server), _plan.SmtpOptions(**options))


def pins(server, receive_connectors=False) -> _plan.Plan:
    return _plan.plan_send_connector_tls(server, verdicts_of(server), receive_connectors)


def actions(result: _plan.Plan) -> list:
    return [(step.action, step.target) for step in result.steps]


def states(server, **options) -> dict:
    certificates = _plan.assess(server, verdicts_of(server), _plan.SmtpOptions(**options))[0]
    return {a.thumbprint: a.state for a in certificates}


# ---------------------------------------------------------------------------------------------
# Exchange, played on the model: what the enforcer sends, as Exchange would do it
# ---------------------------------------------------------------------------------------------

IIS = "IIS"


def apply_plan(server: _snapshot.ServerSnapshot, steps: _plan.Plan, behavior: str = "additive") -> _snapshot.ServerSnapshot:
    """The snapshot after Exchange ran the plan's calls (_enforce.mutation_call).

    Enable-ExchangeCertificate adds the services (behavior "additive", as documented) or replaces
    them (behavior "replace", KB 2888788's reading); either way IIS is a site binding it does not
    clear; with SMTP and -Force it makes the certificate the internal transport certificate.
    """
    certificates = {c.thumbprint: c for c in server.certificates}
    internal = server.internal_transport_thumbprint
    send = {c.identity: c for c in server.send_connectors}
    receive = {c.identity: c for c in server.receive_connectors}
    for number, step in enumerate(steps.steps, start=1):
        call = _enforce.mutation_call(step, _enforce.step_id(number))
        parameters = call["parameters"]
        if call["cmdlet"] == "Enable-ExchangeCertificate":
            target = certificates[parameters["Thumbprint"]]
            requested = _model.parse_flags(parameters["Services"])
            kept = target.services & {IIS}
            services = target.services | requested if behavior == "additive" else requested | kept
            certificates[target.thumbprint] = dataclasses.replace(target, services=frozenset(services))
            if "SMTP" in requested and parameters.get("Force"):
                internal = target.thumbprint
        elif call["cmdlet"] == "Remove-ExchangeCertificate":
            del certificates[parameters["Thumbprint"]]
        elif call["cmdlet"] == "Set-SendConnector":
            send[parameters["Identity"]] = dataclasses.replace(send[parameters["Identity"]], tls_certificate_name=parameters["TlsCertificateName"])
        elif call["cmdlet"] == "Set-ReceiveConnector":
            receive[parameters["Identity"]] = dataclasses.replace(receive[parameters["Identity"]], tls_certificate_name=parameters["TlsCertificateName"])
        else:
            raise AssertionError("unexpected cmdlet %s" % call["cmdlet"])
    return dataclasses.replace(
        server, certificates=tuple(certificates.values()),
        transport=_model.TransportService(SERVER, internal) if server.transport is not None else None,
        send_connectors=tuple(send.values()), receive_connectors=tuple(receive.values()))


# ---------------------------------------------------------------------------------------------
# smtp_certificate: examples
# ---------------------------------------------------------------------------------------------


def test_kb2888788_drops_smtp_from_the_untrusted_certificate_and_pins_the_connector():
    server = snapshot(("public", "IIS, SMTP"), ("internal", "IMAP, POP, SMTP"))
    result = plan(server)
    assert not result.blocked
    assert actions(result) == [(_plan.DROP_SMTP, thumbprint("internal")), (_plan.PIN_CONNECTOR, SEND_CONNECTOR)]
    drop, pin = result.steps
    assert drop.services == {"IMAP", "POP"}
    assert pin.connector_kind == _plan.SEND and pin.tls_certificate_name == tls_name("public")
    assert states(server)[thumbprint("internal")] == _plan.NONCOMPLIANT


@pytest.mark.parametrize("behavior, expected", [("replace", _plan.COMPLIANT), ("additive", _plan.MITIGATED)])
def test_kb2888788_converges_under_both_readings_of_enable_exchange_certificate(behavior, expected):
    server = snapshot(("public", "IIS, SMTP"), ("internal", "IMAP, POP, SMTP"))
    after = apply_plan(server, plan(server), behavior)
    assert states(after)[thumbprint("internal")] == expected
    assert plan(after).steps == ()


def test_a_trusted_certificate_without_smtp_is_enabled_and_the_internal_transport_certificate_restored():
    server = snapshot(("public", "IIS"))
    result = plan(server)
    assert actions(result)[:2] == [(_plan.ENABLE_SMTP, thumbprint("public")),
                                   (_plan.RESTORE_INTERNAL_TRANSPORT, thumbprint("exchange"))]
    enable, restore = result.steps[:2]
    assert enable.services == {"IIS", "SMTP"} and enable.force
    assert restore.services == {"IMAP", "POP", "IIS", "SMTP"} and restore.force
    for behavior in ("additive", "replace"):
        after = apply_plan(server, result, behavior)
        assert after.internal_transport_thumbprint == thumbprint("exchange")
        assert plan(after).steps == ()


def test_enable_steps_never_pass_iis_so_that_the_default_web_site_binding_stays():
    server = snapshot(("public", "IIS"))
    calls = [_enforce.mutation_call(step, "x") for step in plan(server).steps if step.services is not None]
    assert [call["parameters"]["Services"] for call in calls] == ["SMTP", "IMAP, POP, SMTP"]
    assert all(call["parameters"]["Confirm"] is False and call["parameters"]["Force"] is True for call in calls)


def test_the_exchange_self_signed_certificate_exposed_on_the_receive_connector_gets_it_pinned():
    server = snapshot(("public", "IIS, SMTP"), receive=receive_connector(), hybrid=hybrid_configuration(tls_name("public")))
    result = plan(server)
    assert actions(result) == [(_plan.PIN_CONNECTOR, RECEIVE_CONNECTOR)]
    assert thumbprint("exchange") in result.steps[0].reason
    assert states(server)[thumbprint("exchange")] == _plan.EXEMPT
    assert any("exempt: internal_transport" in note for note in plan(server, pin_connectors=False).notes)


def test_only_untrusted_certificates_block_every_step_and_say_what_to_install():
    server = snapshot(("internal", "IIS, SMTP"), ("self_mail", "SMTP"))
    result = plan(server)
    assert result.blocked and result.steps == ()
    message = result.blockers[0]
    assert message.startswith("EX01: mail.contoso.com")
    assert "Install a certificate for mail.contoso.com" in message and thumbprint("internal") in message
    assert "unknown_root" in message


def test_an_untrusted_certificate_without_its_private_key_counts_for_nothing():
    server = snapshot(("public", "IIS", False), ("internal", "SMTP"))
    assert plan(server).blocked


def test_the_internal_transport_certificate_that_is_not_installed_blocks_enabling_smtp():
    server = snapshot(("public", "IIS"), itc="public_server")
    result = plan(server)
    assert result.blocked and "cannot be restored" in result.blockers[0]


def test_the_auth_certificate_is_never_touched_even_in_scope_all():
    server = snapshot(("public", "IIS, SMTP"))
    result = plan(server, scope="all", remove_untrusted=True)
    assert thumbprint("auth") not in {step.target for step in result.steps}
    assert states(server, scope="all")[thumbprint("auth")] == _plan.EXEMPT


def test_the_internal_transport_certificate_is_never_subject_to_the_policy():
    # Without its own Fqdn the connector presents the server FQDN, which the self-signed certificate
    # covers: pinning the connector is the fix; SMTP stays on the internal transport certificate.
    server = snapshot(("public_both", "IIS, SMTP"), send=send_connector(fqdn=None))
    for result in (plan(server), plan(server, remove_untrusted=True, scope="all")):
        assert actions(result) == [(_plan.PIN_CONNECTOR, SEND_CONNECTOR)]
    assert states(server)[thumbprint("exchange")] == _plan.EXEMPT


# ---------------------------------------------------------------------------------------------
# The internal transport certificate: an invariant of every plan
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("behavior", ["additive", "replace"])
def test_a_public_internal_transport_certificate_is_healed_without_dropping_smtp_from_the_one_restored(behavior):
    # What an earlier Enable-ExchangeCertificate -Force leaves: the trusted public certificate is the
    # internal transport certificate. The plan restores the self-signed one, which the unpinned
    # "Default Frontend" connector could offer for the server FQDN; it must pin, never drop SMTP from it
    # (the probe of issue 16: Enable <self-signed> "IMAP, POP, SMTP" -Force, then "IMAP, POP").
    server = snapshot(("public_both", "IIS, SMTP"), itc="public_both", receive=receive_connector(),
                      hybrid=hybrid_configuration(tls_name("public_both")))
    result = plan(server)
    assert not result.blocked
    assert (_plan.DROP_SMTP, thumbprint("exchange")) not in actions(result)
    assert actions(result)[0] == (_plan.RESTORE_INTERNAL_TRANSPORT, thumbprint("exchange"))
    after = apply_plan(server, result, behavior)
    assert after.internal_transport_thumbprint == thumbprint("exchange")
    assert "SMTP" in next(c for c in after.certificates if c.thumbprint == thumbprint("exchange")).services
    assert plan(after).steps == ()


def test_a_plan_made_while_get_transportservice_failed_is_refused_whole():
    # KB 2888788 on a server whose Get-TransportService read failed: the self-signed certificate is the
    # internal transport certificate, but nothing says so; dropping SMTP from untrusted certificates
    # could strip it (the probe of issue 16).
    server = snapshot(("public_both", "IIS, SMTP"), ("internal", "IMAP, POP, SMTP"), itc=TRANSPORT_READ_FAILED,
                      send=send_connector(fqdn=None), exchange="IMAP, POP, SMTP")
    known = plan(dataclasses.replace(server, transport=_model.TransportService(SERVER, None), failures=()))
    assert known.blocked and "InternalTransportCertificateThumbprint is empty" in known.blockers[0]
    result = plan(server)
    assert result.blocked and result.steps == ()
    assert result.blockers[0].startswith("EX01: the internal transport certificate is unknown (Get-TransportService failed: ")
    assert "Active Directory server" in result.blockers[0] and "nothing was changed" in result.blockers[0]
    assert pins(server).blocked


def test_an_internal_transport_certificate_without_smtp_refuses_every_change():
    server = snapshot(("public", "IIS, SMTP"), ("internal", "IMAP, POP, SMTP"), exchange="IMAP, POP, IIS")
    result = plan(server)
    assert result.blocked and "is not enabled for SMTP, so internal mail flow is already broken" in result.blockers[0]


def test_the_final_state_of_a_plan_is_checked_against_the_invariants():
    server = snapshot(("public", "IIS, SMTP"))
    exchange = thumbprint("exchange")
    exempt = _plan.exemptions(server, _plan.SmtpOptions())
    drop = _plan.Step(_plan.DROP_SMTP, exchange, "test", services=frozenset({"IMAP", "POP"}))
    enable = _plan.Step(_plan.ENABLE_SMTP, thumbprint("public"), "test", services=frozenset({"IIS", "SMTP"}), force=True)
    remove = _plan.Step(_plan.REMOVE_CERTIFICATE, thumbprint("auth"), "test")
    assert _plan.invariant_violations(server, (), exchange, exempt) == []
    assert "without SMTP" in " ".join(_plan.invariant_violations(server, [drop], exchange, exempt))
    assert "as the internal transport certificate instead of" in _plan.invariant_violations(server, [enable], exchange, exempt)[0]
    assert "exempt (auth_certificate)" in _plan.invariant_violations(server, [remove], exchange, exempt)[0]


def test_listed_thumbprints_are_exempt():
    server = snapshot(("public", "IIS, SMTP"), ("internal", "IMAP, POP, SMTP"))
    result = plan(server, exempt_thumbprints=frozenset({thumbprint("internal")}))
    assert actions(result) == [(_plan.PIN_CONNECTOR, SEND_CONNECTOR)]
    assert states(server, exempt_thumbprints=frozenset({thumbprint("internal")}))[thumbprint("internal")] == _plan.EXEMPT


def test_a_mitigated_certificate_is_left_as_it_is():
    server = snapshot(("public", "IIS, SMTP"), ("internal", "IMAP, POP, SMTP"), send=send_connector(tls_name("public")))
    assert states(server)[thumbprint("internal")] == _plan.MITIGATED
    assert plan(server).steps == ()


def test_without_pinning_the_plan_only_drops_smtp_and_says_so():
    server = snapshot(("public", "IIS, SMTP"), ("internal", "IMAP, POP, SMTP"))
    result = plan(server, pin_connectors=False)
    assert actions(result) == [(_plan.DROP_SMTP, thumbprint("internal"))]
    assert any("pin it" in note for note in result.notes)
    assert plan(apply_plan(server, result, "additive"), pin_connectors=False).steps == result.steps  # not converged: says so


def test_remove_untrusted_removes_only_what_is_safe_after_pinning():
    server = snapshot(("public", "IIS, SMTP"), ("internal", "SMTP"), send=send_connector(tls_name("internal")))
    result = plan(server, remove_untrusted=True)
    assert actions(result) == [(_plan.PIN_CONNECTOR, SEND_CONNECTOR), (_plan.REMOVE_CERTIFICATE, thumbprint("internal"))]


def test_remove_untrusted_explains_why_not_and_drops_smtp_instead():
    server = snapshot(("public", "IIS, SMTP"), ("internal", "IMAP, POP, SMTP"), hybrid=hybrid_configuration(tls_name("internal")))
    result = plan(server, remove_untrusted=True)
    assert (_plan.DROP_SMTP, thumbprint("internal")) in actions(result)
    note = next(n for n in result.notes if n.startswith(thumbprint("internal")))
    assert "also enabled for IMAP, POP" in note and "Get-HybridConfiguration" in note


def test_scope_all_includes_smtp_certificates_for_other_names():
    server = snapshot(("public", "IIS, SMTP"), ("self_mail", "SMTP"), send=send_connector(tls_name("public")))
    # self_mail covers mail.contoso.com: pinned, so mitigated in both scopes.
    assert states(server)[thumbprint("self_mail")] == _plan.MITIGATED
    server = snapshot(("public", "IIS, SMTP"), ("public_server", "IMAP, SMTP"), send=send_connector(tls_name("public")))
    # public_server covers only the server FQDN, which nothing presents to Exchange Online here.
    assert states(server)[thumbprint("public_server")] == _plan.OUT_OF_SCOPE
    assert states(server, scope="all")[thumbprint("public_server")] == _plan.NONCOMPLIANT
    assert actions(plan(server, scope="all")) == [(_plan.DROP_SMTP, thumbprint("public_server"))]


def test_format_services_follows_the_dotnet_flag_order():
    assert _plan.format_services({"SMTP", "IIS", "POP", "IMAP"}) == "IMAP, POP, IIS, SMTP"
    assert _plan.format_services(()) == "None"


# ---------------------------------------------------------------------------------------------
# send_connector_tls: examples
# ---------------------------------------------------------------------------------------------


def test_the_newest_trusted_certificate_is_pinned():
    server = snapshot(("public", "IIS, SMTP"), ("public_both", "SMTP"))
    result = pins(server)
    assert [(s.target, s.tls_certificate_name) for s in result.steps] == [(SEND_CONNECTOR, tls_name("public_both"))]


def test_the_hybrid_configuration_name_wins_over_a_newer_certificate():
    server = snapshot(("public", "IIS, SMTP"), ("public_both", "SMTP"), hybrid=hybrid_configuration(tls_name("public")))
    assert [s.tls_certificate_name for s in pins(server).steps] == [tls_name("public")]
    assert pins(server).notes == ()


def test_a_renewal_with_the_same_issuer_and_subject_keeps_the_pin():
    server = snapshot(("public", "SMTP"), ("public_renewed", "IIS, SMTP"), send=send_connector(tls_name("public")))
    assert pins(server).steps == ()
    assert _plan.selected_certificate(server, tls_name("public")).thumbprint == thumbprint("public_renewed")


def test_a_group_whose_latest_member_cannot_serve_is_not_pinned():
    # public_renewed has the same issuer and subject and expires later, but is not enabled for SMTP:
    # pinning that name would make Exchange use it (UnknownCredentials).
    server = snapshot(("public", "SMTP"), ("public_renewed", "IIS"), ("public_both", "SMTP"))
    assert [s.tls_certificate_name for s in pins(server).steps] == [tls_name("public_both")]


def test_a_stale_name_is_repointed_and_the_hybrid_configuration_mismatch_reported():
    server = snapshot(("public_renewed", "IIS, SMTP"), send=send_connector(tls_name("public_expired")),
                      hybrid=hybrid_configuration(tls_name("public_expired")))
    result = pins(server)
    assert [s.tls_certificate_name for s in result.steps] == [tls_name("public_renewed")]
    assert "names no certificate on this server" in result.steps[0].reason
    assert any("Hybrid Configuration Wizard" in note for note in result.notes)


def test_a_trusted_certificate_without_smtp_blocks_pinning_and_points_to_smtp_certificate():
    result = pins(snapshot(("public", "IIS")))
    assert result.blocked and result.steps == ()
    assert "Enable SMTP on %s" % thumbprint("public") in result.blockers[0]
    assert "smtp_certificate" in result.blockers[0]


def test_receive_connectors_are_pinned_only_when_asked():
    server = snapshot(("public", "IIS, SMTP"), send=send_connector(tls_name("public")), receive=receive_connector(),
                      hybrid=hybrid_configuration())
    assert pins(server).steps == ()
    assert [(s.connector_kind, s.target) for s in pins(server, receive_connectors=True).steps] == [(_plan.RECEIVE, RECEIVE_CONNECTOR)]


def test_a_receive_connector_is_judged_by_the_name_exchange_online_connects_to():
    server = snapshot(("public", "IIS, SMTP"), receive=receive_connector(tls_name("public")), hybrid=hybrid_configuration())
    connectors = _plan.assess(server, verdicts_of(server))[1]
    assert {a.connector.identity: a.state for a in connectors}[RECEIVE_CONNECTOR] == _plan.PINNED


def test_without_a_hybrid_configuration_a_receive_connector_takes_the_send_connectors_names():
    # An Edge server cannot read Get-HybridConfiguration; its pinned receive connector serves the
    # certificate the wizard chose for the send connector too.
    server = snapshot(("public", "IIS, SMTP"), send=send_connector(tls_name("public")), receive=receive_connector(tls_name("public")))
    receive = _plan.cloud_connectors(server)[1]
    assert receive.exchange_online_names == (MAIL,)
    assert {a.connector.kind: a.state for a in _plan.assess(server, verdicts_of(server))[1]} == {"send": "pinned", "receive": "pinned"}


def test_a_pin_of_an_organisation_wide_send_connector_names_the_other_source_servers():
    shared = _model.SendConnector.from_object({
        "Identity": SEND_CONNECTOR, "Enabled": True, "Fqdn": MAIL, "CloudServicesMailEnabled": True,
        "SourceTransportServers": ["EX01", "ex02.contoso.com"]})
    server = snapshot(("public", "IIS, SMTP"), send=shared)
    step = pins(server).steps[0]
    assert step.shared_with == ("ex02.contoso.com",) and step.certificate == thumbprint("public")


# ---------------------------------------------------------------------------------------------
# Properties over random servers
# ---------------------------------------------------------------------------------------------

SERVICE_SETS = st.sets(st.sampled_from(["IMAP", "POP", "IIS", "SMTP"])).map(_plan.format_services)
TLS_NAMES = st.one_of(st.none(), st.sampled_from(POOL_IDS).map(tls_name), st.just("<I>CN=Nobody<S>CN=mail.contoso.com"))


@st.composite
def servers(draw):
    ids = draw(st.lists(st.sampled_from(POOL_IDS), unique=True, max_size=5))
    certs = [(cert_id, draw(SERVICE_SETS), draw(st.sampled_from([True, True, True, False]))) for cert_id in ids]
    with_smtp = [cert_id for cert_id, services, key in certs if "SMTP" in services and key]
    # Also what optional reads and earlier runs can leave: Get-TransportService failed, an empty or a
    # missing internal transport certificate, one without SMTP (the self-signed one's services vary).
    itc = draw(st.sampled_from(["exchange", "exchange", None, TRANSPORT_READ_FAILED, "public_server"] + with_smtp + ids))
    # An organisation-wide send connector other servers send through too, or this server's alone.
    send = send_connector(draw(TLS_NAMES), draw(st.sampled_from([MAIL, None])), draw(st.sampled_from([(SERVER,), (SERVER, "EX02")])))
    receive = draw(st.one_of(st.none(), TLS_NAMES.map(receive_connector)))
    hybrid = draw(st.one_of(st.none(), TLS_NAMES.map(hybrid_configuration)))
    exchange = draw(st.sampled_from([EXCHANGE[1], EXCHANGE[1], "IMAP, POP, SMTP", "IMAP, POP, IIS"]))
    return snapshot(*certs, itc=itc, send=send, receive=receive, hybrid=hybrid, exchange=exchange)


@st.composite
def options(draw, server):
    exempt = draw(st.sets(st.sampled_from([c.thumbprint for c in server.certificates])))
    return _plan.SmtpOptions(scope=draw(st.sampled_from(_plan.SCOPES)), exempt_thumbprints=frozenset(exempt),
                             remove_untrusted=draw(st.booleans()), pin_connectors=draw(st.booleans()))


# filter_too_much: assume() drops the blocked plans and unconverging readings, which for some seeds are most of the
# drawn servers; Hypothesis then fails its health check rather than the property (seed 77149267672259455169229397259217916635, once in a make test run).
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _has_trusted_smtp_certificate(server, verdicts, name) -> bool:
    return any(verdicts[c.thumbprint].trusted and "SMTP" in c.services and c.has_private_key is not False
               and _model.name_matches(name, c) for c in server.certificates)


@PROPERTY_SETTINGS
@given(data=st.data(), behavior=st.sampled_from(["additive", "replace"]))
def test_no_name_exchange_online_checks_is_left_without_a_trusted_smtp_certificate(data, behavior):
    server = data.draw(servers())
    result = _plan.plan_smtp_certificate(server, verdicts_of(server), data.draw(options(server)))
    if result.blocked:
        assert result.steps == ()
        return
    after = apply_plan(server, result, behavior)
    verdicts = verdicts_of(after)
    for connector in _plan.cloud_connectors(after):
        assert any(_has_trusted_smtp_certificate(after, verdicts, name) for name in connector.exchange_online_names), connector


@PROPERTY_SETTINGS
@given(data=st.data(), behavior=st.sampled_from(["additive", "replace"]))
def test_exempt_certificates_are_never_touched(data, behavior):
    server = data.draw(servers())
    chosen = data.draw(options(server))
    exempt = _plan.exemptions(server, chosen)
    result = _plan.plan_smtp_certificate(server, verdicts_of(server), chosen)
    for step in result.steps:
        # Restoring the internal transport certificate re-states its own services (it has SMTP).
        assert step.target not in exempt or step.action == _plan.RESTORE_INTERNAL_TRANSPORT
    after = {c.thumbprint: c.services for c in apply_plan(server, result, behavior).certificates}
    for certificate in server.certificates:
        if certificate.thumbprint in exempt:
            assert after[certificate.thumbprint] == certificate.services
    expected = server.internal_transport_thumbprint
    healed = _plan.internal_transport_to_restore(server, verdicts_of(server), _plan.cloud_connectors(server))
    if healed is not None and not result.blocked and server.internal_transport_thumbprint not in chosen.exempt_thumbprints:
        # A certificate facing Exchange Online left as the internal transport certificate (by -Force and a
        # failed restore) gives way to the server's own self-signed certificate.
        expected = healed.thumbprint
    assert apply_plan(server, result, behavior).internal_transport_thumbprint == expected == result.internal_transport_thumbprint


@PROPERTY_SETTINGS
@given(data=st.data(), behavior=st.sampled_from(["additive", "replace"]))
def test_the_internal_transport_certificate_keeps_smtp_whatever_the_plan(data, behavior):
    # Issue 16's invariant, over servers whose optional reads may be missing: a plan either changes
    # nothing, or leaves the internal transport certificate it intends on the server, enabled for SMTP,
    # under both readings of Enable-ExchangeCertificate; and none runs while that certificate is unknown.
    server = data.draw(servers())
    chosen = data.draw(options(server))
    for result in (_plan.plan_smtp_certificate(server, verdicts_of(server), chosen), pins(server, data.draw(st.booleans()))):
        if not result.steps:
            continue
        assert server.internal_transport_thumbprint, [step.describe() for step in result.steps]
        after = apply_plan(server, result, behavior)
        assert after.internal_transport_thumbprint == result.internal_transport_thumbprint
        itc = next(c for c in after.certificates if c.thumbprint == after.internal_transport_thumbprint)
        assert "SMTP" in itc.services, [step.describe() for step in result.steps]
        assert _plan.invariant_violations(server, result.steps, result.internal_transport_thumbprint,
                                          _plan.exemptions(server, chosen, {server.internal_transport_thumbprint,
                                                                            result.internal_transport_thumbprint})) == []


@PROPERTY_SETTINGS
@given(data=st.data())
def test_only_smtp_is_ever_added_and_only_to_trusted_certificates(data):
    server = data.draw(servers())
    verdicts = verdicts_of(server)
    result = _plan.plan_smtp_certificate(server, verdicts, data.draw(options(server)))
    before = {c.thumbprint: c.services for c in server.certificates}
    for step in result.steps:
        if step.services is None:
            continue
        added = step.services - before[step.target]
        assert added <= {"SMTP"}
        if added and step.action == _plan.ENABLE_SMTP:
            assert verdicts[step.target].trusted


@PROPERTY_SETTINGS
@given(data=st.data(), behavior=st.sampled_from(["additive", "replace"]))
def test_planning_again_after_the_plan_changes_nothing(data, behavior):
    server = data.draw(servers())
    chosen = data.draw(options(server))
    # Under the additive reading SMTP cannot be dropped: only pinning makes such a server converge,
    # and only for certificates a cloud connector could offer (scope hybrid).
    assume(behavior == "replace" or (chosen.pin_connectors and chosen.scope == "hybrid"))
    result = _plan.plan_smtp_certificate(server, verdicts_of(server), chosen)
    after = apply_plan(server, result, behavior)
    again = _plan.plan_smtp_certificate(after, verdicts_of(after), chosen)
    assert again.steps == (), [step.describe() for step in again.steps]


@PROPERTY_SETTINGS
@given(data=st.data())
def test_after_the_plan_no_connector_can_offer_an_untrusted_certificate(data):
    server = data.draw(servers())
    chosen = dataclasses.replace(data.draw(options(server)), pin_connectors=True)
    result = _plan.plan_smtp_certificate(server, verdicts_of(server), chosen)
    assume(not result.blocked)
    after = apply_plan(server, result, "additive")
    certificates = _plan.assess(after, verdicts_of(after), chosen)[0]
    assert all(not a.exposed_by for a in certificates), certificates


@PROPERTY_SETTINGS
@given(data=st.data(), receive=st.booleans())
def test_send_connector_tls_only_pins_and_converges(data, receive):
    server = data.draw(servers())
    result = _plan.plan_send_connector_tls(server, verdicts_of(server), receive)
    assert all(step.action == _plan.PIN_CONNECTOR for step in result.steps)
    after = apply_plan(server, result)
    assert _plan.plan_send_connector_tls(after, verdicts_of(after), receive).steps == ()
    connectors = _plan.assess(after, verdicts_of(after))[1]
    if not result.blocked:
        assert all(a.state == _plan.PINNED for a in connectors if a.connector.kind == _plan.SEND or receive)


@pytest.mark.parametrize("behavior", ["additive", "replace"])
def test_a_certificate_a_repaired_pin_stops_naming_is_judged_as_the_next_run_will_judge_it(behavior):
    # The receive connector's TlsCertificateName names "public" by issuer and subject, but selects the
    # later-expiring "public_renewed", which is not enabled for SMTP: the pin is repaired to
    # "public_server". "public" (it does not cover ex01.contoso.com, so untrusted for it) faced Exchange
    # Online only through the old name; under scope all it is then an untrusted certificate enabled
    # for SMTP, and the first plan must already drop SMTP from it (found by hypothesis, seed 1).
    server = snapshot(("public", "IMAP, POP, IIS, SMTP"), ("public_renewed", ""), ("public_server", "SMTP"),
                      send=send_connector(fqdn=None), receive=receive_connector(tls=tls_name("public")))
    result = plan(server, scope="all")
    assert (_plan.DROP_SMTP, thumbprint("public")) in actions(result)
    assert (_plan.PIN_CONNECTOR, RECEIVE_CONNECTOR) in actions(result)
    after = apply_plan(server, result, behavior)
    if behavior == "replace":
        assert plan(after, scope="all").steps == ()
