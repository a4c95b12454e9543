"""Findings (plugins/plugin_utils/_findings.py) from facts built the production way (hybrid_world.py)."""

from __future__ import annotations

import dataclasses

import copy
import datetime
import json
import os
import re

import pytest

import hybrid_world as world
from hybrid_world import HYBRID_NAME, NOW, Installed
from tests.lab import pki

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _catalogue, _compliance, _facts, _findings, _plan, _snapshot

DAY = datetime.timedelta(days=1)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def findings_of(server: world.Server, options=None, **facts_options):
    return _findings.server_findings(server.facts(**facts_options), options)


def ids(findings) -> set:
    return {finding.id for finding in findings}


def only(findings, check_id):
    matching = [finding for finding in findings if finding.id == check_id]
    assert len(matching) == 1, (check_id, [(f.id, f.title) for f in findings])
    return matching[0]


def add(server: world.Server, issued, **options) -> Installed:
    installed = Installed(issued, **options)
    server.certificates.append(installed)
    return installed


def hybrid(server: world.Server) -> Installed:
    return server.certificates[0]


# ---------------------------------------------------------------------------------------------
# Scenarios, one per check (every catalogue id must have one: test_every_check_has_a_triggering_scenario)
# ---------------------------------------------------------------------------------------------


def s_kb2888788():
    return world.kb2888788()


def s_only_untrusted():
    """No trusted certificate at all: an enterprise certificate for mail.contoso.com, nothing pinned."""
    server = world.healthy()
    server.certificates[0] = Installed(world.enterprise_cert(), services="IIS, SMTP", root_ca_type="Enterprise",
                                       chain=(world.authorities()[2],))
    server.send_connectors[0]["TlsCertificateName"] = None
    server.receive_connectors[0]["TlsCertificateName"] = None
    server.hybrid["TlsCertificateName"] = None
    return server


def s_expired_facing():
    server = world.healthy()
    expired = world.public_cert(HYBRID_NAME, not_before=NOW - 400 * DAY, not_after=NOW - 2 * DAY)
    server.certificates[0] = Installed(expired, services="IIS, SMTP", chain=world.public_chain())
    for connector in server.send_connectors + server.receive_connectors:
        connector["TlsCertificateName"] = world.tls_name(expired)
    server.hybrid["TlsCertificateName"] = world.tls_name(expired)
    return server


def s_self_signed_competing():
    server = world.healthy()
    add(server, world.self_signed_cert(HYBRID_NAME), services="SMTP", root_ca_type="Registry")
    server.send_connectors[0]["TlsCertificateName"] = None
    return server


def s_unpinned_receive():
    """The receive connector unpinned: its FQDN is the server FQDN, which the internal transport certificate covers."""
    server = world.healthy()
    server.receive_connectors[0]["TlsCertificateName"] = None
    return server


def s_malformed():
    server = world.healthy()
    server.send_connectors[0]["TlsCertificateName"] = "CN=Lab Public TLS CA 2026<S>CN=mail.contoso.com"
    return server


def s_not_found():
    server = world.healthy()
    server.send_connectors[0]["TlsCertificateName"] = "<I>CN=Another CA, O=Elsewhere<S>CN=mail.contoso.com, O=Contoso, C=US"
    return server


def s_pinned_untrusted():
    server = world.healthy()
    internal = add(server, world.enterprise_cert(), services="SMTP", root_ca_type="Enterprise", chain=(world.authorities()[2],))
    server.send_connectors[0]["TlsCertificateName"] = world.tls_name(internal.issued)
    return server


def s_pinned_not_smtp():
    server = world.healthy()
    web = add(server, world.public_cert(HYBRID_NAME, subject="CN=mail.contoso.com, O=Contoso Web, C=US"), services="IIS",
              chain=world.public_chain())
    server.send_connectors[0]["TlsCertificateName"] = world.tls_name(web.issued)
    return server


def s_differs_from_hybrid():
    server = world.healthy()
    other = add(server, world.public_cert(HYBRID_NAME, subject="CN=mail.contoso.com, O=Contoso 2027, C=US"), services="SMTP",
                chain=world.public_chain())
    server.hybrid["TlsCertificateName"] = world.tls_name(other.issued)
    return server


def s_disabled_connector():
    server = world.healthy()
    server.send_connectors[0]["Enabled"] = False
    return server


def s_connector_settings():
    server = world.healthy()
    server.send_connectors[0].update(RequireTLS=False, TlsAuthLevel="DomainValidation", TlsDomain=None, CloudServicesMailEnabled=True)
    second = world.send_connector("Second", ["EX01"], hybrid(server).issued, Identity="Outbound to Office 365 - Second",
                                  TlsAuthLevel="CertificateValidation", CloudServicesMailEnabled=False)
    server.send_connectors.append(second)
    return server


def s_expiring(days=20, services="IIS"):
    server = world.healthy()
    add(server, world.public_cert("owa.contoso.com", not_before=NOW - 300 * DAY, not_after=NOW + days * DAY), services=services,
        chain=world.public_chain())
    return server


def s_expired_unused():
    server = world.healthy()
    add(server, world.public_cert("old.contoso.com", not_before=NOW - 400 * DAY, not_after=NOW - 10 * DAY), services="IIS",
        chain=world.public_chain())
    return server


def s_weak_key():
    server = world.healthy()
    add(server, world.public_cert("legacy.contoso.com", key=pki.make_key("rsa", 1024, 0)), services="IIS", chain=world.public_chain())
    return server


def s_weak_signature():
    server = world.healthy()
    add(server, world.public_cert("legacy.contoso.com", hash="sha1"), services="IIS", chain=world.public_chain())
    return server


def s_missing_key():
    server = world.healthy()
    add(server, world.public_cert("owa.contoso.com"), services="IIS", has_private_key=False, chain=world.public_chain())
    return server


def s_incomplete_chain():
    server = world.healthy()
    hybrid(server).chain = ()  # the server lacks the issuing CA: it sends the leaf alone
    return server


def s_ecc_without_support():
    # A renewal with an ECC key, imported but not enabled, where Exchange's ECC support is off.
    server = world.healthy()
    server.setting_overrides = []
    add(server, world.public_cert(HYBRID_NAME, subject="CN=mail.contoso.com, O=Contoso ECC, C=US", key=pki.make_key("ec", 256, 5)),
        services="None", chain=world.public_chain())
    return server


def s_out_of_support():
    server = world.healthy()
    server.version = "Version 15.1 (Build 2507.6)"  # Exchange 2016: support ended 2025-10-14
    return server


def s_exchange_status():
    server = world.healthy()
    hybrid(server).status = "Revoked"
    return server


def s_internal_missing():
    server = world.healthy()
    server.certificates = [item for item in server.certificates if item.issued.thumbprint != server.internal_transport]
    return server


def s_internal_expired():
    server = world.healthy()
    expired = pki.make_exchange_self_signed(
        "EX01", "ex01.contoso.com", not_before=NOW - (5 * 365 + 10) * DAY, now=NOW, key=pki.make_key("ec", 256, 77))
    server.certificates[1] = Installed(expired, services="IMAP, POP, IIS, SMTP", root_ca_type="Registry")
    server.internal_transport = expired.thumbprint
    return server


def s_internal_without_smtp():
    # What the probe of issue 16 left: SMTP dropped from the self-signed internal transport certificate.
    server = world.healthy()
    index = next(n for n, item in enumerate(server.certificates) if item.issued.thumbprint == server.internal_transport)
    server.certificates[index] = dataclasses.replace(server.certificates[index], services="IMAP, POP, IIS")
    return server


def s_events_only():
    server = world.healthy()
    server.events = [world.event_2004(world.UNTRUSTED_ROOT_TEXT)]
    return server


def s_queue_dns():
    server = world.healthy()
    server.queues = [world.cloud_queue(Status="Retry", MessageCount=3, LastError="451 4.4.0 DNS query failed")]
    return server


def s_tls_disabled():
    server = world.healthy()
    server.tls = {"Tls12ClientEnabled": False, "Tls12ServerEnabled": None, "StrongCryptoNet4": True}
    return server


def s_events_unreadable():
    server = world.healthy()
    server.failures["events"] = {"type": "System.UnauthorizedAccessException", "category": "PermissionDenied",
                                 "message": "Attempted to perform an unauthorized operation.",
                                 "fqid": "System.UnauthorizedAccessException,Microsoft.PowerShell.Commands.GetWinEventCommand"}
    return server


TRIGGERS = {
    "HM101": s_kb2888788,
    "HM102": s_only_untrusted,
    "HM103": s_kb2888788,
    "HM104": s_expired_facing,
    "HM105": s_self_signed_competing,
    "HM201": s_kb2888788,
    "HM202": s_malformed,
    "HM203": s_not_found,
    "HM204": s_pinned_untrusted,
    "HM205": s_pinned_not_smtp,
    "HM206": s_differs_from_hybrid,
    "HM207": s_disabled_connector,
    "HM211": s_connector_settings,
    "HM212": s_connector_settings,
    "HM213": s_connector_settings,
    "HM214": s_connector_settings,
    "HM301": s_expiring,
    "HM302": s_expired_unused,
    "HM303": s_weak_key,
    "HM304": s_weak_signature,
    "HM305": s_missing_key,
    "HM306": s_incomplete_chain,
    "HM307": s_exchange_status,
    "HM308": s_ecc_without_support,
    "HM311": s_internal_missing,
    "HM312": s_internal_expired,
    "HM313": s_internal_without_smtp,
    "HM401": s_kb2888788,
    "HM402": s_kb2888788,
    "HM403": s_tls_disabled,
    "HM404": s_out_of_support,
    "HM901": s_events_unreadable,
}


@pytest.mark.parametrize("check_id", sorted(check.id for check in _catalogue.SERVER_CHECKS))
def test_every_check_has_a_triggering_scenario(check_id):
    assert check_id in TRIGGERS, "add a scenario for %s" % check_id
    assert check_id in ids(findings_of(TRIGGERS[check_id]()))


def test_a_server_as_the_hybrid_wizard_leaves_it_has_no_finding():
    """Every check, not triggered: the baseline all scenarios start from."""
    assert findings_of(world.healthy()) == []


# ---------------------------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------------------------


def test_catalogue_ids_and_names_are_unique_and_stable_shaped():
    assert len({c.id for c in _catalogue.CHECKS}) == len(_catalogue.CHECKS)
    assert len({c.name for c in _catalogue.CHECKS}) == len(_catalogue.CHECKS)
    for check in _catalogue.CHECKS:
        assert re.fullmatch(r"HM\d{3}", check.id)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", check.name)
        assert check.severity in _catalogue.SEVERITIES and check.scope in ("server", "fleet")


def test_docs_findings_md_lists_the_catalogue_exactly():
    with open(os.path.join(REPO_ROOT, "docs", "findings.md"), encoding="utf-8") as handle:
        rows = {line.split("|")[1].strip(): line for line in handle if re.match(r"\| HM\d{3} \|", line)}
    assert set(rows) == {check.id for check in _catalogue.CHECKS}
    for check in _catalogue.CHECKS:
        cells = [cell.strip() for cell in rows[check.id].strip().strip("|").split("|")]
        assert cells == [check.id, "`%s`" % check.name, check.severity, check.title, check.auto_fix, check.healthchecker or "-"]


def test_the_kb_is_linked_from_the_kb_finding():
    finding = only(findings_of(world.kb2888788()), "HM101")
    assert _catalogue.KB_2888788 in finding.references and _catalogue.KB_2888788 in finding.remediation


# ---------------------------------------------------------------------------------------------
# KB 2888788 and the certificate Exchange Online sees
# ---------------------------------------------------------------------------------------------


def test_kb2888788_condition_names_both_certificates_and_is_auto_fixed():
    server = world.kb2888788()
    findings = findings_of(server)
    finding = only(findings, "HM101")
    enterprise = server.certificates[-1].issued.thumbprint
    assert finding.severity == "critical" and finding.auto_fix
    assert finding.subject == HYBRID_NAME
    assert [c["thumbprint"] for c in finding.evidence["trusted_certificates"]] == [hybrid(server).issued.thumbprint]
    assert [c["thumbprint"] for c in finding.evidence["untrusted_certificates"]] == [enterprise]
    assert finding.evidence["untrusted_certificates"][0]["reasons"][0]["code"] == "unknown_root"
    assert finding.evidence["untrusted_root_events"] == 1
    assert finding.evidence["connectors"] == [{"kind": "send", "identity": "Outbound to Office 365 - Contoso"}]
    assert only(findings, "HM103").subject == enterprise
    assert {f.id: f.severity for f in findings} == {
        "HM101": "critical", "HM103": "critical", "HM201": "warning", "HM401": "critical", "HM402": "critical"}


def test_kb_condition_is_gone_once_the_send_connector_pins_the_trusted_certificate():
    server = world.kb2888788()
    server.send_connectors[0]["TlsCertificateName"] = world.tls_name(hybrid(server).issued)
    server.queues = []
    found = findings_of(server)
    assert not ids(found) & {"HM101", "HM103", "HM201", "HM402"}
    assert only(found, "HM401").severity == "info"  # the events stay in the log; their cause is gone


def test_kb_condition_is_gone_once_smtp_is_dropped_from_the_untrusted_certificate():
    server = world.kb2888788()
    server.certificates[-1].services = "IIS"
    assert not ids(findings_of(server)) & {"HM101", "HM103"}


@pytest.mark.parametrize("change", [
    pytest.param(lambda item: setattr(item, "has_private_key", False), id="no-private-key"),
    pytest.param(lambda item: setattr(item, "services", "IIS"), id="not-smtp"),
])
def test_a_certificate_transport_cannot_present_does_not_compete(change):
    server = world.kb2888788()
    change(server.certificates[-1])
    assert "HM101" not in ids(findings_of(server))


def test_two_trusted_certificates_for_the_fqdn_are_not_the_kb_condition():
    server = world.healthy()
    add(server, world.public_cert(HYBRID_NAME, subject="CN=mail.contoso.com, O=Contoso Renewed, C=US"), services="SMTP",
        chain=world.public_chain())
    server.send_connectors[0]["TlsCertificateName"] = None
    assert "HM101" not in ids(findings_of(server))


@pytest.mark.parametrize("locale", ["de", "cs"])
def test_localized_event_2004_is_recognised(locale):
    texts = {
        "de": "Sendeconnector Outbound to Office 365: Die Nachrichtenübermittlung war nicht erfolgreich. Die Nachricht mit der "
              "Nachrichten-ID <id> wurde mit der SMTP-Antwort 454 4.7.0 Unable to establish an appropriate TLS channel: "
              "UntrustedRoot: Access Denied bestätigt.",
        "cs": "Konektor pro odesílání Outbound to Office 365: doručení zprávy nebylo úspěšné. Zpráva s ID <id> byla potvrzena "
              "odpovědí SMTP 454 4.7.0 Unable to establish an appropriate TLS channel: UntrustedRoot: Access Denied.",
    }
    server = world.kb2888788()
    server.events = [world.event_2004(texts[locale])]
    finding = only(findings_of(server), "HM401")
    assert finding.severity == "critical" and finding.evidence["sample_message"] == texts[locale]
    assert "HM101" in finding.evidence["causes_found"]
    assert "its cause is still present (%s)" % ", ".join(finding.evidence["causes_found"]) in finding.title, finding.title


def test_event_2004_without_the_tls_reply_is_not_reported():
    server = world.healthy()
    server.events = [world.event_2004("Send connector X: The message delivery was not successful. 451 4.4.0 DNS query failed")]
    assert "HM401" not in ids(findings_of(server))


def test_event_2004_is_critical_while_the_queue_fails_with_a_tls_error_even_without_a_found_cause():
    server = s_events_only()
    server.queues = [world.cloud_queue(Status="Retry", MessageCount=4, LastError="454 4.7.0 ... UntrustedRoot")]
    found = findings_of(server)
    finding = only(found, "HM401")
    assert finding.severity == "critical" and finding.evidence["queue_failing"] and finding.evidence["causes_found"] == []
    # The text agrees with the evidence (issue 14.4): no "cause still present", no "fix causes_found" when it is empty.
    assert "no certificate cause" in finding.title and "cause is still present" not in finding.title, finding.title
    assert "causes_found is empty" in finding.remediation, finding.remediation


def test_no_trusted_certificate_for_the_fqdn():
    findings = findings_of(s_only_untrusted())
    finding = only(findings, "HM102")
    assert finding.severity == "critical" and not finding.auto_fix
    assert finding.subject == HYBRID_NAME and finding.evidence["trusted_but_not_usable"] == []
    assert {c["identity"] for c in finding.evidence["connectors"]} == {"Outbound to Office 365 - Contoso", "EX01\\Default Frontend EX01"}
    # nothing trusted: enforce is blocked, so no finding claims an automatic fix
    assert not any(f.auto_fix for f in findings)


def test_no_trusted_smtp_certificate_but_a_trusted_one_without_smtp_is_auto_fixed():
    server = s_only_untrusted()
    add(server, world.public_cert(HYBRID_NAME), services="IIS", chain=world.public_chain())
    finding = only(findings_of(server), "HM102")
    assert finding.auto_fix
    assert len(finding.evidence["trusted_but_not_usable"]) == 1 and "Enable-ExchangeCertificate" in finding.remediation


def test_expired_certificate_facing_exchange_online():
    findings = findings_of(s_expired_facing())
    finding = only(findings, "HM104")
    assert finding.severity == "critical" and "expired" in finding.title
    assert "HM301" not in ids(findings) and "HM302" not in ids(findings)
    assert "HM103" not in ids(findings)  # expiry has its own check


def test_not_yet_valid_certificate_facing_exchange_online():
    server = world.healthy()
    future = world.public_cert(HYBRID_NAME, not_before=NOW + 2 * DAY, not_after=NOW + 400 * DAY)
    server.certificates[0] = Installed(future, services="IIS, SMTP", chain=world.public_chain())
    for connector in server.send_connectors + server.receive_connectors:
        connector["TlsCertificateName"] = world.tls_name(future)
    assert "not yet valid" in only(findings_of(server), "HM104").title


def test_self_signed_competitor_is_self_signed_not_untrusted_root():
    findings = findings_of(s_self_signed_competing())
    assert only(findings, "HM105").severity == "critical"
    assert "HM103" not in ids(findings)  # unknown_root of a self-signed certificate says nothing more
    assert only(findings, "HM105").auto_fix


def test_unpinned_receive_connector_exposes_the_internal_transport_certificate():
    server = s_unpinned_receive()
    findings = findings_of(server)
    assert only(findings, "HM105").subject == server.internal_transport
    empty = only(findings, "HM201")
    assert empty.auto_fix and empty.evidence["kind"] == "receive" and empty.evidence["verified_name"] == HYBRID_NAME


def test_unpinned_connector_offering_only_trusted_certificates_is_a_warning_enforce_leaves():
    server = world.healthy()
    server.send_connectors[0]["TlsCertificateName"] = None
    finding = only(findings_of(server), "HM201")
    assert finding.severity == "warning" and not finding.auto_fix


def test_name_mismatch_of_a_pinned_certificate():
    server = world.healthy()
    other = world.public_cert("www.contoso.com")
    server.certificates[0] = Installed(other, services="IIS, SMTP", chain=world.public_chain())
    for connector in server.send_connectors + server.receive_connectors:
        connector["TlsCertificateName"] = world.tls_name(other)
    findings = findings_of(server)
    assert "name_mismatch" in only(findings, "HM103").title
    assert {f.subject for f in findings if f.id == "HM204"} == {"Outbound to Office 365 - Contoso", "EX01\\Default Frontend EX01"}


# ---------------------------------------------------------------------------------------------
# Connectors
# ---------------------------------------------------------------------------------------------


def test_malformed_tls_certificate_name():
    finding = only(findings_of(s_malformed()), "HM202")
    assert finding.severity == "critical" and finding.evidence["problem"] == "does not start with <I>"
    assert finding.auto_fix  # a trusted certificate for the name is there to pin


def test_tls_certificate_name_not_found():
    findings = findings_of(s_not_found())
    assert only(findings, "HM203").severity == "critical"
    assert "HM102" not in ids(findings)  # a trusted certificate to pin exists


def test_pinned_to_an_untrusted_certificate():
    findings = findings_of(s_pinned_untrusted())
    finding = only(findings, "HM204")
    assert finding.severity == "critical" and finding.auto_fix
    assert finding.evidence["certificate"]["reasons"][0]["code"] == "unknown_root"
    assert "Get-ExchangeCertificate -Thumbprint %s" % world.healthy().certificates[0].issued.thumbprint in finding.remediation
    assert "HM103" in ids(findings)


def test_pinned_to_a_certificate_without_smtp():
    finding = only(findings_of(s_pinned_not_smtp()), "HM205")
    assert finding.severity == "critical" and _catalogue.KB_4051498 in finding.references


def test_tls_certificate_name_differs_from_hybrid_configuration():
    found = [f for f in findings_of(s_differs_from_hybrid()) if f.id == "HM206"]
    assert all(f.severity == "warning" and not f.auto_fix for f in found)
    assert {f.subject for f in found} == {"Outbound to Office 365 - Contoso", "EX01\\Default Frontend EX01"}


def test_tls_certificate_name_compared_without_case_and_spacing():
    server = world.healthy()
    server.hybrid["TlsCertificateName"] = server.hybrid["TlsCertificateName"].upper().replace(", ", ",  ")
    assert "HM206" not in ids(findings_of(server))


def test_disabled_cloud_connector_is_reported_once():
    server = s_disabled_connector()
    server.send_connectors[0]["TlsCertificateName"] = None
    findings = findings_of(server)
    assert only(findings, "HM207").severity == "warning"
    assert not ids(findings) & {"HM201", "HM211", "HM212", "HM213", "HM214"}


def test_send_connector_tls_settings():
    findings = findings_of(s_connector_settings())
    first, second = "Outbound to Office 365 - Contoso", "Outbound to Office 365 - Second"
    assert {(f.id, f.subject) for f in findings if f.id.startswith("HM21")} == {
        ("HM211", first), ("HM213", first), ("HM212", second), ("HM214", second)}
    assert all(f.severity == "warning" and not f.auto_fix for f in findings if f.id.startswith("HM21"))


def test_smart_host_connector_to_exchange_online_is_checked_like_healthchecker():
    server = world.healthy()
    server.send_connectors.append({
        "Identity": "Relay via EOP", "Name": "Relay via EOP", "Enabled": True, "Fqdn": HYBRID_NAME, "AddressSpaces": ["smtp:*;1"],
        "SourceTransportServers": ["EX01"], "SmartHosts": ["contoso-com.mail.protection.outlook.com"], "DNSRoutingEnabled": False,
        "CloudServicesMailEnabled": False, "RequireTLS": True, "TlsAuthLevel": "DomainValidation",
        "TlsDomain": "mail.protection.outlook.com", "TlsCertificateName": None})
    findings = [f for f in findings_of(server) if f.subject == "Relay via EOP"]
    assert {f.id for f in findings} == {"HM201", "HM214"}
    assert not any(f.auto_fix for f in findings)  # enforce does not manage such connectors


# ---------------------------------------------------------------------------------------------
# Every certificate: thresholds and tiers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("days, services, expected", [
    (90, "IIS", None),
    (60, "IIS", None),
    (59, "IIS", "warning"),
    (30, "IIS", "warning"),
    (29, "IIS", "critical"),
    (1, "IIS", "critical"),
    (20, "None", "info"),
])
def test_expiry_thresholds(days, services, expected):
    server = s_expiring(days, services)
    thumbprint = server.certificates[-1].issued.thumbprint
    found = [f for f in findings_of(server) if f.id == "HM301" and f.subject == thumbprint]
    assert [f.severity for f in found] == ([expected] if expected else [])


def test_expiry_thresholds_are_options():
    server = s_expiring(45)
    options = {"expiry_warning_days": 100, "expiry_critical_days": 50}
    assert only(findings_of(server, options), "HM301").severity == "critical"
    assert "HM301" not in ids(findings_of(server, {"expiry_warning_days": 40, "expiry_critical_days": 10}))


def test_expiry_of_the_hybrid_certificate_is_critical_under_the_threshold():
    server = world.healthy(hybrid_cert=world.public_cert(HYBRID_NAME, not_before=NOW - 300 * DAY, not_after=NOW + 10 * DAY))
    finding = only(findings_of(server), "HM301")
    assert finding.severity == "critical" and finding.evidence["faces_exchange_online_via"]


def test_expiry_is_judged_at_the_facts_time_unless_now_is_given():
    facts = s_expiring(45).facts()
    assert only(_findings.server_findings(facts), "HM301").severity == "warning"
    later = {"now": (NOW + 20 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert only(_findings.server_findings(facts, later), "HM301").severity == "critical"


@pytest.mark.parametrize("options, message", [
    ({"expiry_warning_days": 10, "expiry_critical_days": 30}, "must not exceed"),
    ({"expiry_warning_days": -1}, "non-negative"),
    ({"min_key_size": "2048"}, "non-negative integer"),
    ({"thresholds": 1}, "unknown finding options"),
    ({"now": "tomorrow"}, "not an ISO 8601 date"),
])
def test_invalid_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        _findings.Options.of(options)


def test_expired_certificate_not_facing_exchange_online():
    # Issue 12 item 1: still in use (IIS), an expired certificate rates no lower than one about to expire.
    server = s_expired_unused()
    assert only(findings_of(server), "HM302").severity == "critical"
    server.certificates[-1].services = "None"
    assert only(findings_of(server), "HM302").severity == "info"


def _with_renewal(server, name, **dates):
    renewal = add(server, world.public_cert(name, not_before=NOW - 5 * DAY, not_after=NOW + 360 * DAY, **dates),
                  services="None", chain=world.public_chain())
    return renewal.issued.thumbprint


def test_an_expired_certificate_with_its_renewal_installed_says_move_and_retire():
    server = s_expired_unused()
    renewal = _with_renewal(server, "old.contoso.com")
    finding = only(findings_of(server), "HM302")
    assert finding.severity == "warning" and finding.evidence["renewal"] == renewal
    assert "Renewal %s is already on the server" % renewal in finding.remediation and "state=retired" in finding.remediation


def test_the_old_copy_of_a_renewed_certificate_is_not_told_to_renew():
    # Issue 12 item 1: the renewal is on the server; the old copy (in use, 20 days left) needs retiring, not renewing.
    server = s_expiring(20)
    renewal = _with_renewal(server, "owa.contoso.com")
    old = server.certificates[-2].issued.thumbprint
    finding = next(f for f in findings_of(server) if f.id == "HM301" and f.subject == old)
    assert finding.severity == "warning" and finding.evidence["renewal"] == renewal
    assert "a renewal is installed" in finding.title and "Renew it before" not in finding.remediation


def test_weak_key_follows_the_minimum_key_size():
    assert only(findings_of(s_weak_key()), "HM303").severity == "warning"
    assert "HM303" not in ids(findings_of(s_weak_key(), {"min_key_size": 1024}, min_key_bits=1024))


def test_weak_key_of_the_hybrid_certificate_is_critical_and_not_reported_twice():
    weak = world.public_cert(HYBRID_NAME, key=pki.make_key("rsa", 1024, 0))
    findings = findings_of(world.healthy(hybrid_cert=weak))
    assert only(findings, "HM303").severity == "critical"
    assert "HM103" not in ids(findings)  # weak_key has its own check


def test_ec_keys_of_256_bits_are_not_weak():
    assert "HM303" not in ids(findings_of(world.healthy()))


def test_weak_signature():
    assert only(findings_of(s_weak_signature()), "HM304").severity == "warning"
    sha1 = world.public_cert(HYBRID_NAME, hash="sha1")
    assert only(findings_of(world.healthy(hybrid_cert=sha1)), "HM304").severity == "critical"


def test_missing_private_key():
    assert only(findings_of(s_missing_key()), "HM305").severity == "warning"
    server = world.healthy()
    hybrid(server).has_private_key = False
    finding = only(findings_of(server), "HM305")
    assert finding.severity == "critical"
    unused = world.healthy()
    add(unused, world.public_cert("spare.contoso.com"), services="None", has_private_key=False, chain=world.public_chain())
    assert "HM305" not in ids(findings_of(unused))


def test_incomplete_chain_on_the_server():
    finding = only(findings_of(s_incomplete_chain()), "HM306")
    assert finding.severity == "critical"
    assert "Lab Public TLS CA 2026" in finding.evidence["detail"]


@pytest.mark.parametrize("status, where, expected", [
    ("Revoked", "hybrid", "critical"),
    ("Invalid", "web", "warning"),
    ("DateInvalid", "unused", "info"),
    ("Untrusted", "hybrid", "warning"),
    ("RevocationCheckFailure", "web", "info"),
    ("PendingRequest", "hybrid", "info"),
    ("Valid", "hybrid", None),
])
def test_exchange_status_colours(status, where, expected):
    server = world.healthy()
    if where == "hybrid":
        target = hybrid(server)
    else:
        target = add(server, world.public_cert("owa.contoso.com"), services="IIS" if where == "web" else "None", chain=world.public_chain())
    target.status = status
    found = [f for f in findings_of(server) if f.id == "HM307"]
    assert [f.severity for f in found] == ([expected] if expected else [])
    if found:
        assert found[0].evidence["exchange_status"] == status
        assert found[0].evidence["healthchecker_status_colour"] == ("red" if status in ("Revoked", "Invalid", "DateInvalid") else "yellow")


def test_internal_transport_certificate_missing_or_unset():
    assert only(findings_of(s_internal_missing()), "HM311").severity == "critical"
    server = world.healthy()
    server.internal_transport = None
    assert only(findings_of(server), "HM311").title == "No internal transport certificate is set"


def test_internal_transport_certificate_unknown_when_transport_cannot_be_read():
    server = world.healthy()
    server.failures["transport"] = {"type": "ManagementObjectNotFoundException", "category": "NotSpecified",
                                    "message": "The operation couldn't be performed because object 'EX01' couldn't be found.",
                                    "fqid": "x"}
    assert ids(findings_of(server)) == {"HM901"}


def test_internal_transport_certificate_without_smtp_is_critical_and_says_how_to_restore_it():
    finding = only(findings_of(s_internal_without_smtp()), "HM313")
    assert finding.severity == "critical" and not finding.auto_fix
    assert "Enable-ExchangeCertificate -Thumbprint %s -Services SMTP -Force" % finding.subject in finding.remediation
    assert "HM313" not in ids(findings_of(world.healthy()))


def test_internal_transport_certificate_expired():
    findings = findings_of(s_internal_expired())
    assert only(findings, "HM312").severity == "critical"
    assert "HM302" not in ids(findings)


# ---------------------------------------------------------------------------------------------
# Mail flow
# ---------------------------------------------------------------------------------------------


def test_queue_states():
    assert only(findings_of(s_queue_dns()), "HM402").severity == "warning"
    server = world.healthy()
    server.queues = [world.cloud_queue(Status="Ready", MessageCount=5, LastError="451 4.4.0 ... TLS negotiation failed with error UnknownCredentials")]
    assert only(findings_of(server), "HM402").severity == "critical"
    server.queues = [world.cloud_queue(Status="Ready", MessageCount=0, LastError="454 4.7.0 old error")]
    assert "HM402" not in ids(findings_of(server))


def test_tls12_state():
    assert only(findings_of(s_tls_disabled()), "HM403").severity == "critical"
    server = world.healthy()
    server.tls = {"Tls12ClientEnabled": None, "Tls12ServerEnabled": None, "StrongCryptoNet4": False}
    assert only(findings_of(server), "HM403").severity == "warning"
    server.tls = {"Tls12ClientEnabled": None, "Tls12ServerEnabled": None, "StrongCryptoNet4": None}
    assert "HM403" not in ids(findings_of(server))


def test_failed_reads_are_reported():
    finding = only(findings_of(s_events_unreadable()), "HM901")
    assert "Get-WinEvent" in finding.evidence["warnings"][0]


# ---------------------------------------------------------------------------------------------
# auto_fix agrees with what the planner does
# ---------------------------------------------------------------------------------------------


def _enforce(server: world.Server, drop_semantics: str) -> _plan.Plan:
    """Run the planner on the server and apply its steps to the record, as the lab would."""
    calls = _snapshot.audit_calls()
    snapshot = _snapshot.ServerSnapshot.from_response(server.response(), server.name, calls)
    verdicts = _facts.evaluate(snapshot, world.trust_store(), NOW)
    plan = _plan.plan_smtp_certificate(snapshot, verdicts)
    for step in plan.steps:
        if step.action == _plan.PIN_CONNECTOR:
            connectors = server.send_connectors if step.connector_kind == _plan.SEND else server.receive_connectors
            next(c for c in connectors if c["Identity"] == step.target)["TlsCertificateName"] = step.tls_certificate_name
        elif step.action == _plan.REMOVE_CERTIFICATE:
            server.certificates = [c for c in server.certificates if c.issued.thumbprint != step.target]
        else:
            installed = server.find(step.target)
            current = {name.strip() for name in installed.services.split(",")} - {"None"}
            wanted = set(step.services) | (current if drop_semantics == "additive" else set())
            installed.services = _plan.format_services(wanted)
            if step.force:
                server.internal_transport = step.target
    return plan


SCENARIOS = {
    "kb2888788": s_kb2888788, "only_untrusted": s_only_untrusted, "self_signed_competing": s_self_signed_competing,
    "unpinned_receive": s_unpinned_receive, "malformed": s_malformed, "not_found": s_not_found,
    "pinned_untrusted": s_pinned_untrusted, "pinned_not_smtp": s_pinned_not_smtp, "expired_facing": s_expired_facing,
    "trusted_without_smtp": lambda: _with_trusted_without_smtp(s_only_untrusted()),
}


def _with_trusted_without_smtp(server):
    add(server, world.public_cert(HYBRID_NAME), services="IIS", chain=world.public_chain())
    return server


@pytest.mark.parametrize("semantics", ["replace", "additive"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_auto_fix_findings_are_gone_after_the_planner_ran_and_the_others_stay(scenario, semantics):
    server = SCENARIOS[scenario]()
    before = findings_of(server)
    _enforce(server, semantics)
    server.queues, server.events = [], []
    after = {(f.id, f.subject) for f in findings_of(server)}
    for finding in before:
        if finding.id in ("HM401", "HM402"):
            continue  # mail flow evidence, cleared above
        key = (finding.id, finding.subject)
        if finding.auto_fix:
            assert key not in after, "%s claims auto_fix but survives enforce (%s)" % (key, semantics)
        elif finding.id.startswith(("HM1", "HM2")):
            assert key in after, "%s does not claim auto_fix but enforce removed it (%s)" % (key, semantics)


# ---------------------------------------------------------------------------------------------
# Fleet
# ---------------------------------------------------------------------------------------------


def fleet_findings_of(per_host_facts):
    """The fleet findings as readiness_report collects them: each audited host's hybrid certificates."""
    return _findings.fleet_findings({host: _findings.hybrid_certificates(facts) for host, facts in per_host_facts.items()
                                     if isinstance(facts, dict)})


def test_same_hybrid_certificate_everywhere_is_consistent():
    fleet = {name: world.healthy(name, servers=["EX01", "EX02", "EX03"]).facts() for name in ("EX01", "EX02", "EX03")}
    assert fleet_findings_of(fleet) == []


def test_a_server_presenting_another_certificate_is_named():
    servers = ["EX01", "EX02", "EX03"]
    fleet = {name: world.healthy(name, servers=servers).facts() for name in servers[:2]}
    other = world.public_cert(HYBRID_NAME, subject="CN=mail.contoso.com, O=Contoso Branch, C=US")
    fleet["EX03"] = world.healthy("EX03", hybrid_cert=other, servers=servers).facts()
    fleet["EX04"] = None  # unreachable: skipped
    finding = only(fleet_findings_of(fleet), "HM501")
    assert finding.severity == "warning" and finding.subject == "fleet"
    assert finding.evidence["majority_hosts"] == ["EX01", "EX02"] and finding.evidence["deviating_hosts"] == ["EX03"]
    assert [group["count"] for group in finding.evidence["groups"]] == [2, 1]
    assert finding.evidence["groups"][1]["certificates"] == [{"issuer": other.issuer, "subject": other.subject}]


def test_a_server_in_the_kb_condition_is_not_a_fleet_inconsistency():
    servers = ["EX01", "EX02"]
    fleet = {"EX01": world.kb2888788("EX01").facts(), "EX02": world.healthy("EX02", servers=servers).facts()}
    assert fleet_findings_of(fleet) == []


def test_a_server_with_only_an_untrusted_certificate_is_a_fleet_inconsistency():
    fleet = {"EX01": world.healthy("EX01").facts(), "EX02": s_only_untrusted().facts()}
    finding = only(fleet_findings_of(fleet), "HM501")
    assert finding.evidence["groups"][1]["certificates"][0]["issuer"] == "CN=Contoso Enterprise Root CA, DC=contoso, DC=com"


def test_servers_without_cloud_connectors_are_not_compared():
    facts = world.healthy("EX01").facts()
    mailbox_only = world.healthy("EX09", hybrid_cert=world.public_cert(HYBRID_NAME, subject="CN=mail.contoso.com, O=Other, C=US"))
    mailbox_only.send_connectors, mailbox_only.receive_connectors = [], []
    assert fleet_findings_of({"EX01": facts, "EX09": mailbox_only.facts()}) == []


def _holding_another_certificate(name, servers):
    """A server of a shared send connector that names the majority's certificate, which this one does not
    hold: it holds another trusted certificate for the name (issue 12 item 3)."""
    other = world.public_cert(HYBRID_NAME, subject="CN=mail.contoso.com, O=Contoso Branch, C=US")
    server = world.healthy(name, hybrid_cert=other, servers=servers)
    majority = world.healthy(servers[0], servers=servers)
    server.send_connectors[0]["TlsCertificateName"] = majority.send_connectors[0]["TlsCertificateName"]
    server.receive_connectors[0]["TlsDomainCapabilities"] = []  # sends only: the send connector is all it presents
    return server, other


def test_a_server_of_a_shared_connector_without_the_named_certificate_is_a_fleet_inconsistency():
    servers = ["EX01", "EX02", "EX03"]
    ex03, other = _holding_another_certificate("EX03", servers)
    fleet = {name: world.healthy(name, servers=servers).facts() for name in servers[:2]}
    fleet["EX03"] = ex03.facts()
    finding = only(fleet_findings_of(fleet), "HM501")
    assert finding.evidence["deviating_hosts"] == ["EX03"]
    deviating = finding.evidence["groups"][1]["certificates"]
    assert {"issuer": other.issuer, "subject": other.subject} in deviating
    assert any(c.get("installed") is False for c in deviating)


def test_hm203_on_a_shared_connector_does_not_advise_re_pointing_it_for_everyone():
    ex02, _other = _holding_another_certificate("EX02", ["EX01", "EX02"])
    finding = next(f for f in findings_of(ex02) if f.id == "HM203")
    assert "EX01 send through it too" in finding.remediation and "Import-ExchangeCertificate" in finding.remediation
    assert not finding.auto_fix  # re-pointing it depends on EX01 holding EX02's certificate


def test_an_edge_send_connector_is_pinned_on_a_mailbox_server():
    server = world.kb2888788("EDGE01")
    facts = server.facts()
    facts["server"]["is_edge"] = True
    finding = next(f for f in _findings.server_findings(facts) if f.id == "HM201")
    assert "run the command on a Mailbox server" in finding.remediation


def _light_facts(index: int, subject: str) -> dict:
    cert = {"thumbprint": "%040X" % index, "subject": subject, "issuer": "CN=Lab Public TLS CA 2026", "services": ["SMTP"],
            "domains": [HYBRID_NAME], "hybrid_names": [HYBRID_NAME], "has_private_key": True, "verdict": {"trusted": True, "reasons": []}}
    connector = {"identity": "Outbound", "enabled": True, "is_cloud": True, "fqdn": HYBRID_NAME, "tls_certificate_name": None}
    exposure = {"connectors": [{"kind": "send", "identity": "Outbound", "enabled": True, "selection_name": HYBRID_NAME,
                                "exchange_online_names": [HYBRID_NAME], "pin": "empty", "presents": [cert["thumbprint"]]}]}
    return {"server": {"name": "EX%05d" % index, "fqdn": "ex%05d.contoso.com" % index}, "certificates": [cert],
            "send_connectors": [connector], "exposure": exposure}


def test_fleet_consistency_is_linear(monkeypatch):
    calls = []
    original = _findings.hybrid_certificates
    monkeypatch.setattr(_findings, "hybrid_certificates", lambda facts: calls.append(1) or original(facts))
    hosts = 20000
    fleet = {"h%05d" % i: _light_facts(i, "CN=mail.contoso.com, O=%s" % ("Odd" if i % 1000 == 7 else "Contoso")) for i in range(hosts)}
    finding = only(fleet_findings_of(fleet), "HM501")
    assert len(calls) == hosts  # each host's certificates computed once, grouped by key; no pairwise comparison
    assert len(finding.evidence["deviating_hosts"]) == hosts // 1000


# ---------------------------------------------------------------------------------------------
# Compliance, exemptions, serialization
# ---------------------------------------------------------------------------------------------


def _f(severity, exemption=None, check_id="HM301"):
    return _catalogue.Finding(id=check_id, severity=severity, title="t", subject="s", exemption=exemption)


@pytest.mark.parametrize("severities, fail_on, expected", [
    ([], "critical", True),
    (["info", "warning"], "critical", True),
    (["info", "warning"], "warning", False),
    (["critical"], "critical", False),
    (["critical"], "warning", False),
    (["critical"], "never", True),
    (["info"], "warning", True),
])
def test_compliance_levels(severities, fail_on, expected):
    assert _compliance.compliance([_f(s) for s in severities], fail_on) is expected


def test_compliance_ignores_exempt_findings_and_accepts_dicts():
    assert _compliance.compliance([_f("critical", exemption="accepted risk").to_dict()], "warning")


def test_compliance_refuses_an_unknown_level():
    with pytest.raises(ValueError, match="fail_on"):
        _compliance.compliance([], "error")


def test_exemptions_match_by_id_host_subject_and_date():
    server = world.kb2888788()
    findings = findings_of(server)
    enterprise = server.certificates[-1].issued.thumbprint
    exempted = _compliance.apply_exemptions(findings, [
        {"id": "HM103", "hosts": ["ex0*"], "subjects": [enterprise.lower()], "reason": "replacing in June"},
        {"id": "HM101", "hosts": ["edge*"], "reason": "other hosts"},
        {"id": "HM402", "reason": "expired exemption", "until": "2026-02-28"},
    ], host="EX01", now=NOW)
    assert {f.id: f.exemption for f in exempted if f.exemption} == {"HM103": "replacing in June"}
    assert _compliance.counts(exempted) == {"critical": 3, "warning": 1, "info": 0, "exempted": 1}


@pytest.mark.parametrize("exemption, message", [
    ({"id": "HM999", "reason": "x"}, "not a finding id"),
    ({"id": "HM101"}, "needs a reason"),
    ({"id": "HM101", "reason": "x", "until": "soon"}, "not a date"),
    ({"id": "HM101", "reason": "x", "host": "ex01"}, "unknown keys: host"),
])
def test_invalid_exemptions_are_refused(exemption, message):
    with pytest.raises(ValueError, match=message):
        _compliance.validate_exemptions([exemption])


def test_findings_round_trip_through_json():
    findings = findings_of(world.kb2888788())
    restored = [_catalogue.Finding.from_dict(item) for item in json.loads(json.dumps([f.to_dict() for f in findings]))]
    assert restored == findings


def test_findings_of_stored_facts_equal_findings_of_fresh_facts():
    facts = world.kb2888788().facts()
    assert _findings.server_findings(json.loads(json.dumps(facts))) == _findings.server_findings(copy.deepcopy(facts))


@pytest.mark.parametrize("data, message", [
    ("HM101", "must be a mapping"),
    ({"id": "HM101", "title": "t"}, "lacks severity"),
    ({"id": "HM101", "title": "t", "severity": "fatal"}, "severity 'fatal'"),
])
def test_finding_from_dict_refuses_garbage(data, message):
    with pytest.raises(ValueError, match=message):
        _catalogue.Finding.from_dict(data)


def test_facts_that_are_not_a_mapping_are_refused():
    with pytest.raises(ValueError, match="facts must be a mapping"):
        _findings.server_findings(["not", "facts"])


# ---------------------------------------------------------------------------------------------
# Hostile strings from the server
# ---------------------------------------------------------------------------------------------


HOSTILE = "Q3 \"web\" 'cert'\n$(Remove-Item C:\\ -Recurse) `whoami` \u2018x\u2019 Zertifikat für Čechy | <b>"


@pytest.mark.parametrize("text, literal", [
    ("plain", "'plain'"),
    ("it's", "'it''s'"),
    ("$(evil) `x` $env:PATH", "'$(evil) `x` $env:PATH'"),
    ("a\u2019b\u2018c", "'a\u2019\u2019b\u2018\u2018c'"),
])
def test_powershell_literals_never_expand(text, literal):
    assert _findings.ps_literal(text) == literal


def test_hostile_connector_identity_only_appears_quoted_in_commands():
    server = world.kb2888788()
    server.send_connectors[0]["Identity"] = HOSTILE
    finding = only(findings_of(server), "HM101")
    assert _findings.ps_literal(HOSTILE) in finding.remediation
    assert finding.evidence["connectors"][0]["identity"] == HOSTILE


def test_hostile_friendly_name_is_evidence_and_a_one_line_title():
    server = world.kb2888788()
    server.certificates[-1].friendly_name = HOSTILE
    finding = only(findings_of(server), "HM103")
    assert finding.evidence["friendly_name"] == HOSTILE
    assert "\n" not in finding.title
    json.dumps(finding.to_dict())
