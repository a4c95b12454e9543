#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a documentation-only module: the logic runs on the controller, in
# plugins/action/send_connector_tls.py (plugins/plugin_utils/_plan.py and _enforce.py), and talks to
# the server through runner.ps1.

DOCUMENTATION = r"""
---
module: send_connector_tls
short_description: Pin the Exchange Online connectors to the best trusted certificate through TlsCertificateName
version_added: 0.1.0
description:
  - Sets C(TlsCertificateName) (C(<I>issuer<S>subject)) of every cloud send connector this server is a source
    of, and with O(receive_connectors) of its cloud receive connectors, so that transport presents a
    certificate Exchange Online trusts whatever other certificates are enabled for SMTP. This is the fix of
    KB 2888788 that survives renewals - a renewed certificate with the same issuer and subject is picked up
    by the same name (Exchange uses the latest to expire).
  - The certificate chosen for a connector is trusted, valid, enabled for SMTP with its private key, covers the
    name Exchange Online checks, and is what its own name selects (no later-expiring certificate with the
    same issuer and subject that could not serve). Among those, the ones Get-HybridConfiguration's
    C(TlsCertificateName) names come first, so that every hybrid server pins the same name; then the newest
    (latest expiry, then latest start). When the hybrid configuration names none of them, RV(notes) says so.
  - A connector already selecting that certificate is left alone. When a connector has no usable certificate,
    the module changes nothing on this server and fails, naming the certificate to enable for SMTP
    (M(hybridmail.exchange.smtp_certificate) does that safely) or what to install.
  - "The modules share one planner - M(hybridmail.exchange.smtp_certificate) pins with the same choice when it needs
    to, and the certificate states returned here are its states with its default options: after pinning,
    an untrusted certificate that is still enabled for SMTP is C(mitigated)."
author:
  - hybridmail.exchange contributors (@hybridmail)
extends_documentation_fragment:
  - hybridmail.exchange.enforce
  - hybridmail.exchange.trust
  - hybridmail.exchange.session
  - ansible.builtin.action_common_attributes
options:
  receive_connectors:
    description:
      - Also pin the cloud receive connectors of this server (those with C(TlsDomainCapabilities)
        C(mail.protection.outlook.com:AcceptCloudServicesMail), which the Hybrid Configuration Wizard sets on
        C(Default Frontend <server>)). Their certificate must cover the name Exchange Online connects to
        (C(OnPremisesSmartHost)).
    type: bool
    default: false
seealso:
  - module: hybridmail.exchange.smtp_certificate
  - module: hybridmail.exchange.certificate_info
  - name: TLS certificates in Exchange hybrid
    description: Exchange team blog, common issues and how to fix them (TlsCertificateName selection).
    link: https://techcommunity.microsoft.com/blog/exchange/tls-certificates-in-exchange-hybrid---common-issues--how-to-fix-them/4424330
"""

EXAMPLES = r"""
- name: Pin the connectors to Exchange Online, send and receive
  hybridmail.exchange.send_connector_tls:
    receive_connectors: true

- name: After a renewal, see which connectors would move (no change)
  hybridmail.exchange.send_connector_tls:
  check_mode: true
  diff: true
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
