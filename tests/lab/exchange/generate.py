"""Synthetic fleets of any size: `python -m tests.lab.exchange.generate 500 > fleet.yml`.

One organisation, mostly healthy servers, and the problems of the scenario files in rough
real-world proportions. The Hybrid Configuration Wizard's connector pins the public certificate;
the servers with the KB 2888788 incident (and those with only an internal certificate) send
through an older connector without TlsCertificateName, which is how the incident arises.
Everything is decided by `random.Random(seed)`: the same (n, seed) gives the same file.
"""

from __future__ import annotations

import argparse
import random
import sys

import yaml

# scenario -> weight (per 100 servers)
SCENARIOS = {
    "healthy": 78,
    "kb2888788": 6,
    "expiring": 5,
    "only_untrusted": 3,
    "stale_tls_name": 3,
    "missing_intermediate": 2,
    "edge": 2,
    "tls12_disabled": 1,
}
LOCALES = {"en": 80, "de": 12, "cs": 8}
VERSIONS = {"2019": 60, "2016": 25, "SE": 15}
BEHAVIORS = {"additive": 70, "replace": 30}
PINNED = "Outbound to Office 365"
LEGACY = "Outbound to Office 365 - Legacy"


def _pick(rng: random.Random, weights: dict) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _organization() -> dict:
    return {
        "name": "Contoso Ltd",
        "domain": "contoso.com",
        "tenant": "contoso",
        "hybrid": {"tls_certificate": "public"},
        "send_connectors": [
            {"name": PINNED, "cloud": True, "fqdn": "mail.contoso.com", "tls_certificate": "public",
             "source_servers": []},
            {"name": LEGACY, "cloud": True, "fqdn": "mail.contoso.com", "tls_certificate": None,
             "source_servers": []},
        ],
    }


def _certificates() -> dict:
    subject = "CN=mail.contoso.com, O=Contoso Ltd, L=Redmond, S=Washington, C=US"
    sans = ["mail.contoso.com", "autodiscover.contoso.com"]
    return {
        "public": {"subject": subject, "issuer": "public_ca", "sans": sans, "not_before": "-90d",
                   "not_after": "+275d", "friendly_name": "Contoso public 2026"},
        "public_expiring": {"subject": subject, "issuer": "public_ca", "sans": sans, "not_before": "-345d",
                            "not_after": "+20d", "friendly_name": "Contoso public 2025"},
        "public_renewed": {"subject": subject, "issuer": "public_ca_2026", "sans": sans, "not_before": "-10d",
                           "not_after": "+355d", "friendly_name": "Contoso public 2027"},
        "internal": {"subject": "CN=mail.contoso.com, OU=IT, O=Contoso Ltd, C=US", "issuer": "enterprise_ca",
                     "sans": ["mail.contoso.com"], "not_before": "-12d", "not_after": "+718d",
                     "friendly_name": "Contoso internal mail (AD CS)"},
    }


def _server(name: str, scenario: str, rng: random.Random) -> tuple:
    """(server entry, send connector it uses or None)."""
    entry = {"name": name, "version": _pick(rng, VERSIONS), "locale": _pick(rng, LOCALES),
             "enable_behavior": _pick(rng, BEHAVIORS)}
    public = {"id": "public", "services": "IIS, SMTP"}
    connector = PINNED
    if scenario == "kb2888788":
        iis_on_internal = rng.random() < 0.5
        entry["certificates"] = [
            {"id": "public", "services": "SMTP" if iis_on_internal else "IIS, SMTP"},
            {"id": "internal", "services": "IMAP, POP, IIS, SMTP" if iis_on_internal else "IMAP, POP, SMTP"},
        ]
        entry["queue"] = {"messages": rng.randint(1, 60)}
        connector = LEGACY
    elif scenario == "only_untrusted":
        entry["certificates"] = [{"id": "internal", "services": "IIS, SMTP"}]
        connector = LEGACY
    elif scenario == "expiring":
        entry["certificates"] = [{"id": "public_expiring", "services": "IIS, SMTP"}]
    elif scenario == "stale_tls_name":
        entry["certificates"] = [{"id": "public_renewed", "services": "IIS, SMTP"}]
    elif scenario == "missing_intermediate":
        entry["certificates"] = [public]
        entry["intermediates"] = []
    elif scenario == "tls12_disabled":
        entry["certificates"] = [public]
        entry["version"] = "2016"
        entry["tls"] = {"tls12_client": False, "tls12_server": False, "strong_crypto_net4": False}
    elif scenario == "edge":
        entry["role"] = "edge"
        entry["certificates"] = [{"id": "public", "services": "SMTP"}]
    else:
        entry["certificates"] = [public]
        if rng.random() < 0.1:
            connector = None  # not a hybrid sending server
    return entry, connector


def generate_fleet(n: int, seed: int = 0) -> dict:
    """Fleet data (as a fleet YAML file holds it) with n servers."""
    if n < 1:
        raise ValueError("a fleet needs at least one server")
    rng = random.Random(seed)
    width = max(2, len(str(n)))
    organization = _organization()
    connectors = {connector["name"]: connector for connector in organization["send_connectors"]}
    servers = []
    mailbox_count = edge_count = 0
    for index in range(n):
        # The first server is a healthy Mailbox server: an organisation always has one.
        scenario = _pick(rng, SCENARIOS) if index else "healthy"
        if scenario == "edge":
            edge_count += 1
            name = "EDGE%0*d" % (width, edge_count)
        else:
            mailbox_count += 1
            name = "EX%0*d" % (width, mailbox_count)
        entry, connector = _server(name, scenario, rng)
        servers.append(entry)
        if connector:
            connectors[connector]["source_servers"].append(name)
    organization["send_connectors"] = [c for c in connectors.values() if c["source_servers"]]
    return {
        "organization": organization,
        "authorities": {
            "public_ca_2026": {
                "subject": "CN=Hybridmail Lab Public TLS CA 2026, O=Hybridmail Lab Trust Services, C=US",
                "issuer": "public_root", "not_before": "-30d", "not_after": "+8y",
            }
        },
        "certificates": _certificates(),
        "servers": servers,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic lab fleet (YAML) to stdout.")
    parser.add_argument("servers", type=int, help="number of servers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = generate_fleet(args.servers, args.seed)
    sys.stdout.write("# Generated by: python -m tests.lab.exchange.generate %d --seed %d\n"
                     "# Schema: tests/lab/fleets/README.md\n" % (args.servers, args.seed))
    yaml.safe_dump(data, sys.stdout, allow_unicode=True, sort_keys=False, default_flow_style=None, width=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
