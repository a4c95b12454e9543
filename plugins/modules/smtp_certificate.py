#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a documentation-only module: the logic runs on the controller, in
# plugins/action/smtp_certificate.py (plugins/plugin_utils/_plan.py and _enforce.py), and talks to
# the server through runner.ps1.

DOCUMENTATION = r"""
---
module: smtp_certificate
short_description: Only certificates Exchange Online trusts reach it over SMTP (KB 2888788), without breaking mail
version_added: 0.1.0
description:
  - Brings the SMTP bindings of an Exchange server to a state in which no certificate that Exchange Online
    would refuse can be offered to it, the remedy of Microsoft KB 2888788 (C(454 4.7.0 ... UntrustedRoot)).
  - For every name Exchange Online checks, a trusted certificate must be enabled for SMTP. When none is,
    the best trusted certificate (the same choice as M(hybridmail.exchange.send_connector_tls)) is enabled
    for SMTP with C(-Force), and the internal transport certificate that C(-Force) silently replaced is
    restored right after, as Microsoft's own scripts do (C(Enable-ExchangeCertificate -Thumbprint <previous>
    -Services SMTP -Force), here with its other services listed too).
  - "SMTP is dropped from an untrusted certificate that a cloud connector can offer, the way the KB does it:
    C(Enable-ExchangeCertificate) with the certificate's current services minus SMTP. C(IIS) is never
    passed, because it would rebind the Default Web Site; a certificate left with no service gets
    C(-Services None)."
  - Exchange documents C(Enable-ExchangeCertificate) as additive, so SMTP may well stay. The module does not
    pretend, it re-reads. With O(pin_connectors) (the default) the cloud connectors that could offer the
    untrusted certificate are pinned, in the same round trip, to a trusted certificate through
    C(TlsCertificateName); the certificate is then C(mitigated), which the module accepts as converged and
    does not try to change again. Without pinning it stays C(noncompliant) and the module fails.
  - The interlock - when a name Exchange Online checks would be left without a trusted, valid certificate
    enabled for SMTP with its private key, the module changes nothing and fails with a message naming the
    server, the name and what to install.
  - Never touched - the Exchange Server Auth certificate, the internal transport certificate, and the
    certificates listed in O(exempt_thumbprints). The state a plan leaves is checked against this before
    anything runs, the mutating round trip re-checks the internal transport certificate on the server
    before the first change, and the re-read afterwards must find it enabled for SMTP, else the module fails.
author:
  - hybridmail.exchange contributors (@hybridmail)
extends_documentation_fragment:
  - hybridmail.exchange.enforce
  - hybridmail.exchange.trust
  - hybridmail.exchange.session
  - ansible.builtin.action_common_attributes
options:
  scope:
    description:
      - C(hybrid) applies the policy to the certificates that face Exchange Online - those whose names cover a
        cloud send connector's FQDN (the server FQDN when it has none), a cloud receive connector's FQDN or
        the name Exchange Online connects to, and those a C(TlsCertificateName) toward Exchange Online names.
      - C(all) also drops SMTP from every other untrusted certificate enabled for SMTP. Trust is judged for
        the names above, so a certificate for an internal name only is untrusted; list it in
        O(exempt_thumbprints) to keep it. Under the additive behaviour of C(Enable-ExchangeCertificate)
        such certificates cannot lose SMTP, and the module fails every run until they are removed or
        exempted.
    type: str
    choices: [hybrid, all]
    default: hybrid
  exempt_thumbprints:
    description:
      - Certificates the module must never change or remove (SHA-1 thumbprints, any case, spaces and colons
        ignored). They still count as trusted certificates for the interlock when they are.
    type: list
    elements: str
    default: []
  exempt_internal_transport:
    description:
      - Deprecated, and ignored since 1.1.0; it will be removed in 2.0.0. The internal transport certificate
        (C(InternalTransportCertificateThumbprint)) is never changed, whatever this option says; removing SMTP
        from it breaks mail flow between Exchange servers (CSS-Exchange InternalTransportCertificateCheck).
      - Every plan must leave it on the server and enabled for SMTP; a plan that would not, or that would run
        while it is unknown (C(Get-TransportService) failed), is refused whole and the module fails.
      - When it can be offered to Exchange Online, it is listed in RV(notes) and, with O(pin_connectors), the
        connectors that could offer it are pinned. Setting C(false) only gives a warning.
    type: bool
    default: true
  remove_untrusted:
    description:
      - Remove (C(Remove-ExchangeCertificate)) an untrusted in-scope certificate enabled for SMTP, instead of
        dropping SMTP from it, when that is safe - it has no other service (IIS, POP, IMAP, UM ...), it is
        neither the internal transport nor the Auth certificate nor exempt, no connector names it in
        C(TlsCertificateName) once the plan has pinned them, and the hybrid configuration does not name it.
      - Otherwise SMTP is dropped and RV(notes) says why it was not removed. This also removes C(mitigated)
        certificates, the one way to get rid of SMTP on them under the additive behaviour.
    type: bool
    default: false
  pin_connectors:
    description:
      - Set C(TlsCertificateName) of the cloud send and receive connectors that could offer an untrusted
        certificate (or whose C(TlsCertificateName) selects nothing usable) to the best trusted certificate,
        as M(hybridmail.exchange.send_connector_tls) would. This is what keeps mail flowing when
        C(Enable-ExchangeCertificate) cannot drop SMTP.
      - With C(false), such connectors are only listed in RV(notes), and a certificate that keeps SMTP stays
        C(noncompliant).
    type: bool
    default: true
seealso:
  - module: hybridmail.exchange.send_connector_tls
  - module: hybridmail.exchange.certificate_info
  - name: Microsoft KB 2888788
    description: Mail flow to Exchange Online stops with 454 4.7.0 UntrustedRoot.
    link: https://learn.microsoft.com/en-us/exchange/troubleshoot/send-emails/mail-flow-to-exchange-online-stops
  - name: Enable-ExchangeCertificate
    description: The cmdlet the module uses to change services.
    link: https://learn.microsoft.com/en-us/powershell/module/exchange/enable-exchangecertificate
"""

EXAMPLES = r"""
- name: See what would change (check mode returns the plan; diff mode shows before and after)
  hybridmail.exchange.smtp_certificate:
  check_mode: true
  diff: true
  register: smtp_plan

- name: Leave only trusted certificates able to reach Exchange Online
  hybridmail.exchange.smtp_certificate:

- name: Also remove untrusted certificates where that is safe, and keep a certificate used by an internal relay
  hybridmail.exchange.smtp_certificate:
    remove_untrusted: true
    exempt_thumbprints:
      - 0123456789ABCDEF0123456789ABCDEF01234567

- name: Hold every SMTP certificate to the standard, with a private trust bundle
  hybridmail.exchange.smtp_certificate:
    scope: all
    trust_bundle: /etc/pki/hybrid/microsoft-trusted-roots.pem
"""

RETURN = r"""
plan:
  description: The steps planned from the audit, in the order they run. Empty when the server is converged or the interlock blocked the run.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: What the step does.
      type: str
      choices: [enable_smtp, restore_internal_transport, drop_smtp, pin_connector, remove_certificate]
    target: {description: "The certificate thumbprint, or the connector identity for C(pin_connector).", type: str}
    description: {description: The step in words., type: str}
    reason: {description: Why the plan has this step., type: str}
    services: {description: "For C(Enable-ExchangeCertificate) steps, every service the certificate should end up with.", type: list, elements: str}
    force: {description: Whether C(-Force) is passed (enabling SMTP needs it; it replaces the internal transport certificate)., type: bool}
    connector_kind: {description: "C(send) or C(receive), for C(pin_connector).", type: str}
    tls_certificate_name: {description: The C(TlsCertificateName) a C(pin_connector) step sets., type: str}
    certificate: {description: The thumbprint of the certificate a C(pin_connector) step makes the connector select., type: str}
    shared_with: {description: "The other source servers of the send connector; each must hold that certificate.", type: list, elements: str}
steps:
  description: The planned steps with their outcome.
  returned: when the interlock did not block the run
  type: list
  elements: dict
  contains:
    status:
      description:
        - C(planned) (check mode), C(applied), C(failed) or C(skipped) (not run after a failure or a guard mismatch).
        - C(unknown) when the mutating round trip got no usable answer (see RV(changed_unknown)).
      type: str
    error: {description: "The error of a failed step (type, category, message, fqid).", type: dict}
changed_unknown:
  description:
    - True when the mutating round trip was sent but gave no usable answer (HTTP 500, a dropped connection, a read
      or task timeout, a truncated or garbled answer, a runner defect), so that some, all or none of its steps may
      have run. The task then fails, is not marked unreachable (the host answered the audit), and reports
      C(changed=true), because Ansible needs a boolean and a change that happened must never be reported as none.
    - The next run's audit sees what the server holds and plans the rest.
  returned: when true
  type: bool
may_have_applied:
  description: With RV(changed_unknown), the steps of that round trip in words ("step 1 (...)"), any of which may have been applied.
  returned: with RV(changed_unknown)
  type: list
  elements: str
certificates:
  description: >-
    Every certificate of the server as re-read after the changes (as audited when nothing was changed or in check
    mode), with its state.
  returned: unless the re-read failed
  type: list
  elements: dict
  contains:
    thumbprint: {description: SHA-1 thumbprint., type: str}
    subject: {description: Subject as Exchange shows it., type: str}
    issuer: {description: Issuer as Exchange shows it., type: str}
    friendly_name: {description: Friendly name., type: str}
    services: {description: Services the certificate is enabled for., type: list, elements: str}
    trusted: {description: Exchange Online would accept it (see the notes for the names it is judged for)., type: bool}
    reasons: {description: "Reason codes of the trust verdict, as M(hybridmail.exchange.certificate_info) reports them.", type: list, elements: str}
    in_scope: {description: The policy applies to it (see O(hybridmail.exchange.smtp_certificate#module:scope))., type: bool}
    exempt:
      description: Why the certificate is never touched, or null.
      type: str
      choices: [auth_certificate, internal_transport, listed]
    exposed_by: {description: The cloud connectors that can offer this untrusted certificate to Exchange Online., type: list, elements: str}
    state:
      description:
        - C(compliant) - trusted, or not enabled for SMTP.
        - C(mitigated) - untrusted and still enabled for SMTP, but every cloud connector that could offer it is
          pinned to a trusted certificate through C(TlsCertificateName).
        - C(noncompliant) - untrusted, and a cloud connector can offer it to Exchange Online (with O(hybridmail.exchange.smtp_certificate#module:scope=all),
          also any untrusted certificate enabled for SMTP).
        - C(exempt), C(out_of_scope).
      type: str
connectors:
  description: The cloud send and receive connectors of the server, as re-read.
  returned: unless the re-read failed
  type: list
  elements: dict
  contains:
    kind: {description: C(send) or C(receive)., type: str}
    identity: {description: Connector identity., type: str}
    fqdn: {description: The name transport selects a certificate by when C(TlsCertificateName) is empty., type: str}
    exchange_online_names: {description: "The names Exchange Online may check the certificate against, preferred first.", type: list, elements: str}
    shared_with: {description: "Send connectors: the other source servers, which a change of C(TlsCertificateName) affects too.", type: list, elements: str}
    tls_certificate_name: {description: C(TlsCertificateName)., type: str}
    selected_thumbprint: {description: The certificate C(TlsCertificateName) selects (the latest to expire of those it names)., type: str}
    state: {description: "C(pinned), C(unpinned) or C(broken) (set, but it selects nothing usable).", type: str}
    problem: {description: Why a connector is C(broken)., type: str}
internal_transport_certificate:
  description: C(InternalTransportCertificateThumbprint) as re-read; the module fails when a run changed it.
  returned: unless the re-read failed
  type: str
facts:
  description:
    - What M(hybridmail.exchange.certificate_info) would return for the server in the same state as RV(certificates)
      (re-read after the changes), with its own trust verdicts; without events. The hybrid_readiness role builds its
      reports from it.
  returned: unless the re-read failed
  type: dict
notes:
  description: What the administrator should know although it did not stop the run (also shown as warnings).
  returned: always
  type: list
  elements: str
blocked:
  description:
    - The interlock's reasons for refusing the plan whole (the task fails with them; nothing was sent).
    - Or why the mutating round trip stopped before pinning a shared send connector, because another of its source
      servers does not hold the certificate; the steps before that one stay applied (RV(steps)).
  returned: when the plan was refused, or stopped at a shared send connector
  type: list
  elements: str
"""
