"""_pfx.inspect: a PFX is judged on the controller, and refused with every reason, before any round trip."""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _pfx, _trust
from tests.lab import pki
from tests.lab.exchange.fleet import Fleet

RENEWAL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab", "fleets", "renewal.yml")
PASSWORD = "Pfx-Unit-Pw!"
NAMES = ("mail.contoso.com",)


@pytest.fixture(scope="module")
def fleet():
    return Fleet.load(RENEWAL)


@pytest.fixture(scope="module")
def store(fleet):
    return _trust.trust_store_from_pem(fleet.trust_bundle_pem(), "lab-trust-bundle.pem")


@pytest.fixture(scope="module")
def public_roots_only(fleet):
    return _trust.trust_store_from_pem(pki.pem_bundle(a.issued for a in fleet.organization.public_roots()), "roots.pem")


NOW = datetime.datetime.now(datetime.timezone.utc)


def inspect(data, store, password=PASSWORD, names=NAMES):
    return _pfx.inspect(data, password, store=store, names=list(names), now=NOW)


def refusal(data, store, **kwargs) -> _pfx.PfxError:
    with pytest.raises(_pfx.PfxError) as caught:
        inspect(data, store, **kwargs)
    assert PASSWORD not in str(caught.value)
    return caught.value


def test_a_good_pfx_reports_what_it_holds(fleet, public_roots_only):
    renewed = fleet.issued("renewed")
    pfx = inspect(fleet.pfx("renewed", PASSWORD), public_roots_only)
    facts = pfx.facts()
    assert pfx.thumbprint == renewed.thumbprint == facts["thumbprint"]
    assert facts["subject"] == renewed.subject and facts["issuer"] == renewed.issuer
    assert facts["names"] == ["mail.contoso.com", "autodiscover.contoso.com"]
    assert facts["tls_certificate_name"] == "<I>%s<S>%s" % (renewed.issuer, renewed.subject)
    assert [ca["subject"] for ca in facts["intermediates"]][0].startswith("CN=Hybridmail Lab Public TLS CA 2026")
    assert facts["not_after"].endswith("Z") and pfx.verdict.trusted


def test_wrong_password(fleet, store):
    error = refusal(fleet.pfx("renewed", PASSWORD), store, password="not-it")
    assert error.codes == (_pfx.UNREADABLE,) and "wrong pfx_password" in str(error) and error.facts == {}


def test_not_a_pfx(store):
    assert refusal(b"not a pfx at all", store).codes == (_pfx.UNREADABLE,)
    with pytest.raises(_pfx.PfxError):
        _pfx.decode_content("%%% not base64")


def test_no_private_key(fleet, store):
    error = refusal(fleet.pfx("renewed", PASSWORD, include_key=False), store)
    assert error.codes == (_pfx.NO_PRIVATE_KEY,)
    assert error.facts["thumbprint"] == fleet.issued("renewed").thumbprint


def test_expired(fleet, store):
    error = refusal(fleet.pfx("renewed_expired", PASSWORD), store)
    assert error.codes == (_pfx.EXPIRED,)


def test_not_yet_valid(fleet, store):
    renewed = fleet.issued("renewed")
    early = NOW - datetime.timedelta(days=30)
    with pytest.raises(_pfx.PfxError) as caught:
        _pfx.inspect(fleet.pfx("renewed", PASSWORD), PASSWORD, store=store, names=NAMES, now=early)
    error = caught.value
    assert error.codes == (_pfx.NOT_YET_VALID,) and error.facts["thumbprint"] == renewed.thumbprint


def test_untrusted_internal_ca(fleet, store):
    error = refusal(fleet.pfx("renewed_internal", PASSWORD), store)
    assert error.codes == (_pfx.UNTRUSTED,) and "unknown_root" in str(error)


def test_incomplete_chain_without_the_intermediate(fleet, public_roots_only):
    error = refusal(fleet.pfx("renewed", PASSWORD, include_chain=False), public_roots_only)
    assert error.codes == (_pfx.UNTRUSTED,) and "the intermediates in the PFX" in str(error)


def test_names_cover_none_of_the_hybrid_fqdns(fleet, store):
    error = refusal(fleet.pfx("other_name", PASSWORD), store)
    assert error.codes == (_pfx.NAME_MISMATCH,) and "mail.contoso.com" in str(error)


def test_every_reason_at_once(fleet, store):
    error = refusal(fleet.pfx("renewed_expired", PASSWORD, include_key=False), store, names=["smtp.fabrikam.com"])
    assert error.codes == (_pfx.NO_PRIVATE_KEY, _pfx.EXPIRED, _pfx.NAME_MISMATCH)


def test_unencrypted_pfx_opens_without_a_password(fleet, store):
    assert inspect(fleet.pfx("renewed", None), store, password=None).thumbprint == fleet.issued("renewed").thumbprint


def test_names_are_required(fleet, store):
    with pytest.raises(ValueError, match="names"):
        inspect(fleet.pfx("renewed", PASSWORD), store, names=[])
