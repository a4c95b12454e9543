"""The internal transport certificate is an invariant of every plan (issue 16), through ansible-playbook,
the real winrm plugin and the lab.

What counts is what the lab reports: its internal mail flow (tests/lab/exchange/mailflow.py: the
internal transport certificate must be installed, enabled for SMTP, with its private key, within its
dates; CSS-Exchange HealthChecker InternalTransportCertificateCheck), its mutation log, and mail flow
to Exchange Online. Each scenario runs on EX01 (Enable-ExchangeCertificate additive, as documented)
and EX02 ("replace", as KB 2888788 assumes), where dropping SMTP really strips it.
"""

from __future__ import annotations

import yaml

from tests.integration.test_enforce import SERVERS, play, protected, status
from tests.lab.testing import running_lab

PUBLIC = {"subject": "CN=mail.contoso.com, O=Contoso Ltd, C=US", "issuer": "public_ca", "sans": ["mail.contoso.com"],
          "friendly_name": "Contoso public 2026"}

# What an earlier `Enable-ExchangeCertificate -Force` leaves (exchange-facts.md: -Force silently makes
# the certificate the internal transport certificate): the trusted public certificate is the internal
# transport certificate. The "Default Frontend" receive connectors accept cloud mail but are not
# pinned, so transport may offer the self-signed certificate (CN=<server>) for the server FQDN.
PUBLIC_IS_INTERNAL_TRANSPORT = {
    "organization": {"name": "Contoso Ltd", "domain": "contoso.com", "hybrid": {"tls_certificate": "public"}},
    "certificates": {"public": PUBLIC},
    "servers": [
        {"name": name, "enable_behavior": behavior,
         "certificates": [{"id": "public", "services": "IIS, SMTP", "internal_transport": True}],
         "receive_connectors": {"Default Frontend %s" % name: {"tls_certificate": None}}}
        for name, behavior in (("EX01", "additive"), ("EX02", "replace"))
    ],
}

# KB 2888788 where the internal-CA certificate is the internal transport certificate (a common choice
# of admins who replaced the self-signed one).
INTERNAL_CA_IS_INTERNAL_TRANSPORT = {
    "organization": {"name": "Contoso Ltd", "domain": "contoso.com", "hybrid": {"tls_certificate": "public"},
                     "send_connectors": [{"name": "Outbound to Office 365", "cloud": True, "fqdn": "mail.contoso.com",
                                          "tls_certificate": None, "source_servers": ["EX01", "EX02"]}]},
    "certificates": {"public": PUBLIC,
                     "internal": {"subject": "CN=mail.contoso.com, OU=IT, O=Contoso Ltd, C=US", "issuer": "enterprise_ca",
                                  "sans": ["mail.contoso.com", "ex01.contoso.com", "ex02.contoso.com"], "not_before": "-12d",
                                  "not_after": "+718d"}},
    "servers": [
        {"name": name, "enable_behavior": behavior,
         "certificates": [{"id": "public", "services": "IIS, SMTP"},
                          {"id": "internal", "services": "IMAP, POP, SMTP", "internal_transport": True}]}
        for name, behavior in (("EX01", "additive"), ("EX02", "replace"))
    ],
}


def _fleet(tmp_path, name: str, fleet: dict) -> str:
    path = tmp_path / ("%s.yml" % name)
    path.write_text(yaml.safe_dump(fleet), encoding="utf-8")
    return str(path)


def _self_signed(server: dict) -> dict:
    return next(c for c in server["certificates"] if c["source"] == "exchange_self_signed")


def test_healing_a_public_internal_transport_certificate_keeps_smtp_on_the_one_restored(tmp_path):
    with running_lab(_fleet(tmp_path, "public_itc", PUBLIC_IS_INTERNAL_TRANSPORT), tmp_path=tmp_path) as lab:
        completed, results = play(lab, tmp_path, "smtp_certificate")
        after = status(lab)
        again, results_again = play(lab, tmp_path, "smtp_certificate")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for name in SERVERS:
        self_signed = _self_signed(after[name])
        assert after[name]["internal_mail_flow"]["ok"] is True, (name, after[name]["internal_mail_flow"])
        assert after[name]["internal_transport_certificate"] == self_signed["thumbprint"]
        assert "SMTP" in self_signed["services"]
        # The fix for the exposed self-signed certificate is the pin, never dropping SMTP from it.
        assert not [m for m in after[name]["mutations"] if m["parameters"].get("Thumbprint") == self_signed["thumbprint"]
                    and "SMTP" not in m["parameters"].get("Services", "SMTP")], after[name]["mutations"]
        assert {c["state"] for c in results[name]["connectors"]} == {"pinned"}
        assert after[name]["mail_flow"]["delivered"] is True
        assert results_again[name]["changed"] is False
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_failed_get_transportservice_read_refuses_every_change(tmp_path):
    with running_lab(_fleet(tmp_path, "internal_ca_itc", INTERNAL_CA_IS_INTERNAL_TRANSPORT), tmp_path=tmp_path) as lab:
        before = status(lab)
        for name in SERVERS:
            lab.fault(name, "cmdlet", cmdlet="Get-TransportService", times=1,
                      message="Active Directory server dc01.contoso.com is not available.")
        completed, results = play(lab, tmp_path, "smtp_certificate")
        after = status(lab)
        # Once Get-TransportService answers, the internal-CA certificate is exempt: the connector is pinned.
        healed, healed_results = play(lab, tmp_path, "smtp_certificate", limit="ex02")
        final = status(lab)
    assert completed.returncode != 0
    for name in SERVERS:
        message = results[name]["msg"]
        assert message.startswith("%s: the internal transport certificate is unknown (Get-TransportService failed: " % name.lower())
        assert "nothing was changed" in message and "-Thumbprint None" not in message
        assert after[name]["mutations"] == []
        assert protected(after[name]) == protected(before[name])
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert [step["action"] for step in healed_results["EX02"]["steps"]] == ["pin_connector"]
    assert final["EX02"]["internal_mail_flow"]["ok"] is True and final["EX02"]["mail_flow"]["delivered"] is True
    assert protected(final["EX02"]) == protected(before["EX02"])


def test_a_verification_read_of_the_internal_transport_certificate_that_fails_is_never_success(tmp_path):
    # The audit's Get-TransportService answers, the mutating round trip's guard too; its re-read fails
    # (the third call of the cmdlet on the server): the steps applied, but the internal transport
    # certificate is not verified, and the run must say so rather than report success.
    with running_lab(_fleet(tmp_path, "internal_ca_itc", INTERNAL_CA_IS_INTERNAL_TRANSPORT), tmp_path=tmp_path) as lab:
        lab.fault("EX02", "cmdlet", cmdlet="Get-TransportService", after=2, times=1,
                  message="Active Directory server dc01.contoso.com is not available.")
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex02")
        after = status(lab)
    assert completed.returncode != 0
    message = results["EX02"]["msg"]
    assert message.startswith("ex02: the re-read of Get-TransportService failed (")
    assert "the internal transport certificate is not verified" in message
    assert [m["cmdlet"] for m in after["EX02"]["mutations"]] == ["Set-SendConnector"]
    assert after["EX02"]["internal_mail_flow"]["ok"] is True
