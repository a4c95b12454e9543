#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a documentation-only module: the logic runs on the controller, in
# plugins/action/certificate_info.py, and talks to the server through runner.ps1.

DOCUMENTATION = r"""
---
module: certificate_info
short_description: Gather Exchange certificate facts for hybrid mail flow, with a real trust verdict
version_added: 0.1.0
description:
  - Gathers, in one WinRM round trip, every certificate of an Exchange server with its services,
    its chain as the server builds it and a trust verdict computed on the controller; the transport
    identity and internal transport certificate; the send and receive connectors with their
    C(TlsCertificateName) resolved to certificates; the hybrid configuration; Event ID 2004
    (C(454 4.7.0 ... UntrustedRoot)) from the last days; and the queue to Exchange Online.
  - Marks each certificate that faces Exchange Online, that is one an enabled cloud connector may present
    as Exchange selects it. With C(TlsCertificateName) empty, any certificate enabled for SMTP, with its private
    key, whose domains match the connector's FQDN (the server FQDN when it has none). With it set, the certificate
    it names that expires last. The same answer the enforcement modules plan with (RV(exposure)).
  - Trust verdicts are judged for the names Exchange Online checks (the send connectors' FQDNs, the hybrid
    configuration's C(OnPremisesSmartHost)), once per run; the enforcement modules read the same verdicts.
  - This is the detection half of Microsoft KB 2888788. It never changes anything on the server.
author:
  - hybridmail.exchange contributors (@hybridmail)
extends_documentation_fragment:
  - hybridmail.exchange.trust
  - hybridmail.exchange.session
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; the script that runs on the server refuses any cmdlet that is not a C(Get-) cmdlet.
  diff_mode:
    support: none
  platform:
    platforms: windows
options:
  thumbprints:
    description:
      - Return only these certificates (SHA-1 thumbprints, any case, spaces and colons ignored).
      - The module fails, naming the host, when none of them is on the server.
      - Trust verdicts and hybrid facts are still computed over every certificate of the server.
    type: list
    elements: str
  event_lookback_days:
    description:
      - How many days back to look for Event ID 2004 from C(MSExchangeTransport) in the Application log.
      - C(0) skips the event log.
    type: int
    default: 7
  max_events:
    description:
      - At most this many of the newest matching events are returned.
    type: int
    default: 50
seealso:
  - name: Microsoft KB 2888788
    description: Mail flow to Exchange Online stops with 454 4.7.0 UntrustedRoot.
    link: https://learn.microsoft.com/en-us/exchange/troubleshoot/send-emails/mail-flow-to-exchange-online-stops
  - name: Get-ExchangeCertificate
    description: The cmdlet whose objects this module parses.
    link: https://learn.microsoft.com/en-us/powershell/module/exchange/get-exchangecertificate
"""

EXAMPLES = r"""
- name: Gather certificate facts from every Exchange server
  hybridmail.exchange.certificate_info:
  register: exchange_certs

- name: Show the certificates that face Exchange Online and are not trusted
  ansible.builtin.debug:
    msg: "{{ exchange_certs.certificates | selectattr('faces_exchange_online') | rejectattr('verdict.trusted') | map(attribute='thumbprint') }}"

- name: Use a private trust bundle (for example a proxy that re-signs TLS) and look back 30 days
  hybridmail.exchange.certificate_info:
    trust_bundle: /etc/pki/hybrid/microsoft-trusted-roots.pem
    event_lookback_days: 30

- name: Facts for one certificate only
  hybridmail.exchange.certificate_info:
    thumbprints:
      - 0123456789ABCDEF0123456789ABCDEF01234567
"""

RETURN = r"""
gathered_at:
  description: When the facts were evaluated on the controller (ISO 8601 UTC); trust verdicts and C(days_remaining) refer to this instant.
  returned: success
  type: str
  sample: "2026-03-01T08:00:00Z"
server:
  description: The Exchange server the facts come from.
  returned: success
  type: dict
  contains:
    name: {description: Server name (C(Get-ExchangeServer).Name)., type: str, sample: EX01}
    fqdn: {description: Server FQDN., type: str, sample: ex01.contoso.com}
    version: {description: C(AdminDisplayVersion)., type: str, sample: Version 15.2 (Build 1544.4)}
    roles: {description: Server roles., type: list, elements: str, sample: [Mailbox]}
    is_edge: {description: Whether this is an Edge Transport server., type: bool}
    powershell: {description: PowerShell version that ran the script., type: str}
    ecc_support:
      description: >-
        Whether Exchange's ECC certificate support is on for this server (the ECCCertificateSupport setting override
        and the registry value EnableEccCertificateSupport of Microsoft's "Exchange Server support for ECC
        certificates", as CSS-Exchange HealthChecker checks them); null when unknown (not readable, or an Edge
        Transport server). The enforcement modules enable a certificate with an ECC key only where it is true.
      type: bool
    ecc_support_reason: {description: Why ecc_support is what it is., type: str}
hybrid_fqdns:
  description: The names this server presents to Exchange Online, lower case.
  returned: success
  type: list
  elements: str
  sample: [mail.contoso.com]
internal_transport_certificate:
  description: Thumbprint of the internal transport certificate (C(InternalTransportCertificateThumbprint)).
  returned: success
  type: str
certificates:
  description: Every certificate of the server (or those selected by O(thumbprints)).
  returned: success
  type: list
  elements: dict
  contains:
    thumbprint: {description: SHA-1 thumbprint (upper case hex)., type: str}
    friendly_name: {description: Friendly name., type: str}
    subject: {description: Subject as Exchange shows it., type: str, sample: "CN=mail.contoso.com, O=Contoso, C=US"}
    issuer: {description: Issuer as Exchange shows it., type: str}
    serial_number: {description: Serial number (hex)., type: str}
    domains: {description: "DNS names (SAN, or the subject CN when there is no SAN).", type: list, elements: str}
    services: {description: Exchange services the certificate is enabled for., type: list, elements: str, sample: [IIS, SMTP]}
    status: {description: "Exchange's own C(Status) (its opinion, not proof of trust).", type: str, sample: Valid}
    root_ca_type: {description: Exchange's own C(RootCAType)., type: str, sample: ThirdParty}
    is_self_signed: {description: Self-signed., type: bool}
    has_private_key: {description: The server holds the private key., type: bool}
    not_before: {description: Start of validity (ISO 8601 UTC)., type: str}
    not_after: {description: End of validity (ISO 8601 UTC)., type: str}
    days_remaining: {description: Whole days until C(not_after) (negative when expired)., type: int}
    key_type: {description: Public key algorithm., type: str, sample: RSA}
    key_size: {description: Public key size in bits., type: int, sample: 2048}
    signature_hash: {description: Signature hash algorithm., type: str, sample: sha256}
    is_internal_transport: {description: This is the internal transport certificate., type: bool}
    is_auth_certificate: {description: This is the Exchange Server Auth (OAuth) certificate., type: bool}
    faces_exchange_online: {description: The certificate can be offered to Exchange Online (see the description)., type: bool}
    hybrid_names: {description: The hybrid FQDNs this certificate covers., type: list, elements: str}
    chain:
      description: The chain as the server builds it from its own stores, leaf first.
      type: list
      elements: dict
      contains:
        thumbprint: {description: Thumbprint., type: str}
        subject: {description: Subject., type: str}
    verdict:
      description: The trust verdict for Exchange Online.
      type: dict
      contains:
        trusted: {description: Exchange Online will accept this certificate., type: bool}
        reasons:
          description: Every reason it will not, with a stable code.
          type: list
          elements: dict
          sample: [{code: unknown_root, message: "the chain does not reach a root in the trust bundle"}]
        missing_intermediates:
          description: >-
            With reason C(incomplete_chain), the intermediate CA certificates the server lacks (known from the trust
            bundle), nearest the leaf first; importing them into its Intermediate Certification Authorities store
            completes the chain.
          type: list
          elements: dict
          contains:
            thumbprint: {description: Thumbprint., type: str}
            subject: {description: Subject., type: str}
        missing_issuer:
          description: >-
            With reason C(unknown_root) where the chain stops at a certificate that is not self-signed, the issuer that
            neither the server nor the trust bundle holds (with a bundle of roots only, a missing public intermediate
            looks like this); null otherwise.
          type: str
send_connectors:
  description: Send connectors of the organisation that this server is a source of (all of them on Edge).
  returned: success
  type: list
  elements: dict
  contains:
    identity: {description: Identity., type: str}
    is_cloud:
      description: >-
        Sends to Exchange Online: C(CloudServicesMailEnabled), a C(*.mail.onmicrosoft.com) address space, or a
        C(*.mail.protection.outlook.com) smart host (as HealthChecker counts it).
      type: bool
    fqdn: {description: FQDN the connector presents (empty means the server FQDN)., type: str}
    tls_certificate_name: {description: C(TlsCertificateName) as configured (C(<I>issuer<S>subject))., type: str}
    tls_certificate_thumbprints: {description: Certificates of this server that C(TlsCertificateName) matches., type: list, elements: str}
receive_connectors:
  description: Receive connectors of this server, same keys as RV(send_connectors) where they apply.
  returned: success
  type: list
  elements: dict
exposure:
  description: >-
    What faces Exchange Online, as the planner of the enforcement modules sees it: every cloud connector with the
    name it selects certificates by, the names Exchange Online checks, and the certificates it may present.
    Findings built from these facts read it instead of deriving it again.
  returned: success
  type: dict
  contains:
    connectors:
      description: Every cloud send and receive connector of this server, disabled ones too.
      type: list
      elements: dict
      contains:
        kind: {description: C(send) or C(receive)., type: str}
        identity: {description: Identity., type: str}
        enabled: {description: Enabled (a disabled connector presents nothing)., type: bool}
        selection_name: {description: The FQDN transport selects certificates by when C(TlsCertificateName) is empty., type: str}
        exchange_online_names: {description: "The names Exchange Online checks the certificate against, preferred first.", type: list, elements: str}
        tls_certificate_name: {description: C(TlsCertificateName) as configured., type: str}
        pin: {description: "C(empty), C(malformed), C(not_found) or C(resolved).", type: str}
        pin_problem: {description: Why a C(TlsCertificateName) is malformed., type: str}
        named: {description: "Thumbprints C(TlsCertificateName) names, the one Exchange selects first.", type: list, elements: str}
        presents: {description: Thumbprints the connector may present to Exchange Online., type: list, elements: str}
        shared_with: {description: "Send connectors: the other source servers a change to it affects too.", type: list, elements: str}
    referenced:
      description: Thumbprints some C(TlsCertificateName) names (any connector, the hybrid configuration).
      type: list
      elements: str
    hybrid_fqdns: {description: Same as RV(hybrid_fqdns)., type: list, elements: str}
enforce:
  description: >-
    What hybridmail.exchange.smtp_certificate (its defaults) would clear: the findings, by id and subject, that
    are gone once its plan ran, under both readings of C(Enable-ExchangeCertificate). Findings read their
    C(auto_fix) from it. Absent when O(thumbprints) is set.
  returned: success
  type: dict
  contains:
    clears: {description: "[finding id, subject] pairs.", type: list, elements: list}
hybrid_configuration:
  description: C(Get-HybridConfiguration), or null on Edge servers and organisations without hybrid.
  returned: success
  type: dict
events:
  description: Event ID 2004 from C(MSExchangeTransport) in the lookback window, newest first.
  returned: success
  type: list
  elements: dict
  contains:
    time: {description: When (ISO 8601 UTC)., type: str}
    message: {description: The localized description., type: str}
    untrusted_root: {description: The message carries C(454 4.7.0) or C(UntrustedRoot) (matched without relying on its language)., type: bool}
exchange_online_queue:
  description: The queue toward Exchange Online, or null when there is none.
  returned: success
  type: dict
tls12:
  description: SCHANNEL TLS 1.2 and .NET strong crypto registry state (null values are absent keys, which mean enabled on current Windows).
  returned: success
  type: dict
"""
