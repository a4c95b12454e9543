"""Findings and plans over lab fleets (in-process: the lab answers the audit request as runner.ps1 would),
for issue 12's items 6-8; the integration tests run the same fleets through WinRM."""

from __future__ import annotations

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _facts, _findings, _plan, _snapshot, _trust
from tests.lab.exchange.calls import call, request
from tests.unit.plugins.plugin_utils.test_snapshot_facts import NOW, fleet


def snapshot_of(server):
    calls = _snapshot.audit_calls()
    return _snapshot.ServerSnapshot.from_response(server.handle_request(_snapshot.request(calls, read_only=True)),
                                                  server.name.lower(), calls)


def findings_of(server, store):
    snapshot = snapshot_of(server)
    facts = _facts.server_facts(snapshot, _facts.evaluate(snapshot, store, NOW), NOW)
    return _findings.server_findings(facts)


# -- 12.6: a missing intermediate -------------------------------------------------------------


def test_a_missing_intermediate_is_imported_not_replaced_and_importing_it_fixes_mail_flow(lab_store):
    lab = fleet("missing_intermediate")
    ex01, ex02 = lab.servers["EX01"], lab.servers["EX02"]
    assert ex02.status()["mail_flow"]["delivered"] is False
    findings = findings_of(ex02, lab_store)
    advice = {f.id: f.remediation for f in findings if f.id in ("HM102", "HM204", "HM306")}
    assert set(advice) == {"HM102", "HM204", "HM306"}, [f.id for f in findings]
    intermediate = next(iter(ex01.intermediate_store.values()))  # the issuing CA EX01 holds and EX02 lacks
    for check, text in advice.items():
        assert "-CertStoreLocation Cert:\\LocalMachine\\CA" in text and intermediate.thumbprint in text, (check, text)
        assert "Trusted Root Program" not in text and "Obtain one" not in text and "Install a trusted" not in text, (check, text)
    # The advice is the fix: with that intermediate in EX02's store, the findings are gone and mail flows.
    ex02.intermediate_store[intermediate.thumbprint] = intermediate
    assert not [f.id for f in findings_of(ex02, lab_store) if f.severity == "critical" and f.id.startswith(("HM1", "HM2", "HM3"))]
    assert ex02.status()["mail_flow"]["delivered"] is True


def test_enforce_refuses_a_missing_intermediate_with_the_import_to_do(lab_store):
    server = fleet("missing_intermediate").servers["EX02"]
    snapshot = snapshot_of(server)
    plan = _plan.plan_smtp_certificate(snapshot, _facts.evaluate(snapshot, lab_store, NOW))
    assert plan.blockers, plan
    text = " ".join(plan.blockers)
    assert "Cert:\\LocalMachine\\CA" in text and "Trusted Root Program" not in text, text


# -- 12.7: ECC certificates and Exchange's ECC support ----------------------------------------


def _ecc(server):
    return next(c for c in server.certificates.values() if c.friendly_name == "Contoso public ECC 2026")


def test_the_lab_refuses_an_ecc_certificate_without_the_ecc_override():
    lab = fleet("ecc")
    for name, ok in (("EX01", False), ("EX02", True)):
        server = lab.servers[name]
        enable = call("Enable-ExchangeCertificate", Thumbprint=_ecc(server).thumbprint, Services="SMTP", Force=True)
        result = server.handle_request(request(enable))["calls"][0]
        assert result["ok"] is ok, (name, result)
        if not ok:
            assert "(reason: KeyAlgorithmUnsupported)" in result["error"]["message"], result


def test_enforce_does_not_enable_an_ecc_certificate_where_ecc_support_is_off_or_unknown(lab_store):
    off = fleet("ecc").servers["EX01"]  # no ECCCertificateSupport override applies to EX01
    unknown = fleet("ecc").servers["EX02"]  # support on, but the audit cannot read the setting overrides
    unknown.inject_cmdlet_fault("Get-SettingOverride", "Active Directory operation failed on DC01.contoso.com.", times=0)
    for server, state, words in ((off, False, "no ECCCertificateSupport setting override"), (unknown, None, "unknown")):
        snapshot = snapshot_of(server)
        assert snapshot.ecc_support is state, (server.name, snapshot.ecc_support_reason)
        plan = _plan.plan_smtp_certificate(snapshot, _facts.evaluate(snapshot, lab_store, NOW))
        assert not [s for s in plan.steps if s.target == _ecc(server).thumbprint], plan.steps
        text = " ".join(plan.blockers)
        assert "KeyAlgorithmUnsupported" in text and "New-SettingOverride" in text and words in text, text
        hm308 = [f for f in findings_of(server, lab_store) if f.id == "HM308"]
        assert [f.subject for f in hm308] == [_ecc(server).thumbprint] and hm308[0].severity == "warning", hm308
        assert words in hm308[0].remediation, hm308[0].remediation


def test_enforce_enables_ecc_where_the_override_and_the_registry_value_are_on(lab_store):
    lab = fleet("ecc")
    off, on = snapshot_of(lab.servers["EX01"]), snapshot_of(lab.servers["EX02"])
    assert (off.ecc_support, on.ecc_support) == (False, True)
    assert on.tls["EccCertificateSupport"] is True and off.tls["EccCertificateSupport"] is None
    refused = _plan.plan_smtp_certificate(off, _facts.evaluate(off, lab_store, NOW))
    assert "not enabled on this server" in " ".join(refused.blockers) and not refused.steps
    planned = _plan.plan_smtp_certificate(on, _facts.evaluate(on, lab_store, NOW))
    assert not planned.blockers and [s.target for s in planned.steps if s.action == _plan.ENABLE_SMTP] == [_ecc(lab.servers["EX02"]).thumbprint]
    assert not [f for f in findings_of(lab.servers["EX02"], lab_store) if f.id == "HM308"]


def test_with_a_bundle_of_roots_only_a_missing_intermediate_is_offered_as_the_likely_fix(tmp_path):
    # certifi's bundle (the default) holds roots only: the intermediate EX02 lacks is known nowhere, so the
    # verdict is unknown_root, and the advice must not be only "get a Trusted Root Program certificate".
    lab = fleet("missing_intermediate")
    roots = tmp_path / "roots.pem"
    roots.write_bytes(b"".join(root.issued.pem for root in lab.organization.public_roots()))
    store = _trust.load_trust_bundle(str(roots))
    server = lab.servers["EX02"]
    intermediate = next(iter(lab.servers["EX01"].intermediate_store.values()))
    findings = findings_of(server, store)
    for check in ("HM102", "HM103", "HM204"):
        texts = [f.remediation for f in findings if f.id == check]
        assert texts and all("Cert:\\LocalMachine\\CA" in t and intermediate.subject in t for t in texts), (check, texts)
    snapshot = snapshot_of(server)
    text = " ".join(_plan.plan_smtp_certificate(snapshot, _facts.evaluate(snapshot, store, NOW)).blockers)
    assert "Cert:\\LocalMachine\\CA" in text and intermediate.subject in text, text
