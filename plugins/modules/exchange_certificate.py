#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a documentation-only module: the logic runs on the controller, in
# plugins/action/exchange_certificate.py (plugins/plugin_utils/_pfx.py and _rollout.py), and talks to
# the server through runner.ps1.

DOCUMENTATION = r"""
---
module: exchange_certificate
short_description: Roll out the hybrid certificate - import a PFX, bind it, pin it, verify it, retire the old one
version_added: 0.2.0
description:
  - "O(state=present) imports a PFX with C(Import-ExchangeCertificate) (C(-FileData) as bytes, C(-Password) as a
    SecureString built on the server from the request) unless a certificate with the same thumbprint is already
    there, enables the services in O(services), and restores the internal transport certificate that enabling SMTP
    with C(-Force) replaces, as M(hybridmail.exchange.smtp_certificate) does (the same code)."
  - Before any round trip the PFX is opened on the controller and refused, with every reason and naming the host,
    when it cannot be opened with O(pfx_password), holds no private key, is expired or not yet valid, is not
    trusted by the trust bundle with the intermediates the PFX carries, or its names cover none of O(names). The
    result's RV(certificate) says what the file holds.
  - With O(pin_connectors), the cloud send connectors this server sends through and its receive connectors that
    accept cloud mail (C(TlsDomainCapabilities mail.protection.outlook.com:AcceptCloudServicesMail)) are pinned to
    the certificate through C(TlsCertificateName). Send connectors are organisation-wide; right before pinning one,
    the module checks that each of its other source servers holds the certificate with its private key (import it
    on every hybrid server first, see C(playbooks/renew.yml)).
  - With O(hybrid_configuration), C(Get-HybridConfiguration)'s organisation-wide C(TlsCertificateName) is set to
    the certificate (C(Set-HybridConfiguration)); run that once per organisation (C(run_once)).
  - After the change the server is re-read, and the chain the server builds for the certificate
    (C(Get-HybridmailCertificateChain), from its own stores) is checked; Exchange Online does not fetch
    intermediates, so an incomplete chain is a warning and RV(chain) says so.
  - O(state=absent) removes the certificate O(thumbprint) only when nothing references it - no connector's
    C(TlsCertificateName), no C(Get-HybridConfiguration) C(TlsCertificateName), not the internal transport
    certificate, not the Auth certificate, not bound to IIS; otherwise it fails listing every reference.
  - O(state=retired) removes every certificate that a newer trusted certificate with the same issuer and subject
    supersedes, once nothing references it; the ones kept are listed in RV(notes).
  - The PFX and its password travel only inside the request on standard input; they are never on a command line,
    in the result, in a log or in C(-vvv) output.
author:
  - hybridmail.exchange contributors (@hybridmail)
extends_documentation_fragment:
  - hybridmail.exchange.trust
  - hybridmail.exchange.session
  - ansible.builtin.action_common_attributes
options:
  state:
    description:
      - C(present) - the certificate of the PFX is on the server with O(services).
      - C(absent) - the certificate O(thumbprint) is not on the server.
      - C(retired) - no superseded certificate is left on the server.
    type: str
    choices: [present, absent, retired]
    default: present
  pfx_path:
    description:
      - A PFX (PKCS 12) file on the controller, looked up like M(ansible.builtin.copy)'s C(src) (a role's C(files)
        directory too). A file encrypted with Ansible Vault is decrypted on the controller.
      - One of O(pfx_path) and O(pfx_content) is required with O(state=present).
    type: path
  pfx_content:
    description: The PFX itself, base64-encoded.
    type: str
  pfx_password:
    description: The PFX's password; omit it for a PFX that is not encrypted.
    type: str
  names:
    description:
      - The hybrid FQDNs the certificate is meant for (for example C(mail.contoso.com)); the PFX is refused before
        any round trip when its names cover none of them.
      - When empty, the certificate must cover one of the names Exchange Online checks on the server (read in the
        audit), and is refused before any change when it does not.
    type: list
    elements: str
    default: []
  services:
    description:
      - The services the certificate gets (added to those it has). C(IIS) only when listed, because it binds the
        Default Web Site to the certificate.
    type: list
    elements: str
    choices: [SMTP, IIS, IMAP, POP]
    default: [SMTP]
  do_not_require_ssl:
    description: With C(IIS) in O(services), pass C(-DoNotRequireSsl) so that enabling IIS does not turn on "require SSL".
    type: bool
    default: false
  private_key_exportable:
    description: Import the private key as exportable (C(-PrivateKeyExportable $true)).
    type: bool
    default: false
  friendly_name:
    description: C(-FriendlyName) of the import; default the PFX's friendly name.
    type: str
  pin_connectors:
    description: Pin the cloud send and receive connectors of the server to the certificate (C(TlsCertificateName)).
    type: bool
    default: false
  hybrid_configuration:
    description: Set C(Get-HybridConfiguration)'s C(TlsCertificateName) to the certificate (organisation-wide; run once).
    type: bool
    default: false
  thumbprint:
    description: With O(state=absent), the certificate to remove (SHA-1 thumbprint, any case, spaces ignored).
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Check mode runs only the audit round trip (refused by the server-side script if it named anything but a
        C(Get-) cmdlet) and returns every import, bind and pin it would do in RV(plan) and RV(steps).
  diff_mode:
    support: full
    details:
      - Before and after - the services of the certificates concerned (C(absent) when not on the server), the
        internal transport certificate, the C(TlsCertificateName) of every cloud connector and of the hybrid
        configuration. In check mode the after side is what the plan intends.
  platform:
    platforms: windows
notes:
  - At most two round trips - the audit, and one mutating round trip that re-checks what the plan was computed
    from (guards), imports, enables, restores, pins, and ends with the audit reads for verification.
seealso:
  - module: hybridmail.exchange.smtp_certificate
  - module: hybridmail.exchange.send_connector_tls
  - name: Import-ExchangeCertificate
    description: The cmdlet that imports the PFX.
    link: https://learn.microsoft.com/en-us/powershell/module/exchange/import-exchangecertificate
  - name: Set-HybridConfiguration
    description: The cmdlet that sets the organisation's hybrid TlsCertificateName.
    link: https://learn.microsoft.com/en-us/powershell/module/exchange/set-hybridconfiguration
"""

EXAMPLES = r"""
- name: Import the renewed certificate and enable it for SMTP (refused before any round trip when the PFX is not good)
  hybridmail.exchange.exchange_certificate:
    pfx_path: files/mail.contoso.com-2026.pfx   # may be encrypted with ansible-vault
    pfx_password: "{{ vault_pfx_password }}"
    names: [mail.contoso.com]

- name: Once the certificate is on every hybrid server, pin the connectors and the hybrid configuration to it
  hybridmail.exchange.exchange_certificate:
    pfx_path: files/mail.contoso.com-2026.pfx
    pfx_password: "{{ vault_pfx_password }}"
    names: [mail.contoso.com]
    pin_connectors: true
    hybrid_configuration: "{{ inventory_hostname == ansible_play_hosts_all[0] }}"

- name: Remove the old certificate, unless something still uses it
  hybridmail.exchange.exchange_certificate:
    state: absent
    thumbprint: 0123456789ABCDEF0123456789ABCDEF01234567

- name: Remove every certificate that a newer one with the same issuer and subject supersedes
  hybridmail.exchange.exchange_certificate:
    state: retired
"""

RETURN = r"""
changed_unknown:
  description:
    - True when the mutating round trip was sent but gave no usable answer (HTTP 500, a dropped connection, a
      timeout, a truncated or garbled answer), so that some, all or none of its steps may have run. The task then
      fails, is not marked unreachable (the host answered the audit), and reports C(changed=true).
  returned: when true
  type: bool
may_have_applied:
  description: With RV(changed_unknown), the steps of that round trip in words, any of which may have been applied.
  returned: with RV(changed_unknown)
  type: list
  elements: str
certificate:
  description: What the PFX holds (also when it is refused and could be opened).
  returned: with O(state=present)
  type: dict
  contains:
    thumbprint: {description: SHA-1 thumbprint., type: str}
    subject: {description: Subject as Exchange shows it., type: str}
    issuer: {description: Issuer as Exchange shows it., type: str}
    names: {description: DNS names (subjectAltName; the CN when there is none)., type: list, elements: str}
    not_before: {description: Start of validity (ISO 8601 UTC)., type: str}
    not_after: {description: End of validity (ISO 8601 UTC)., type: str}
    tls_certificate_name: {description: "The C(TlsCertificateName) that selects it (C(<I>issuer<S>subject))", type: str}
    key: {description: Key type and size., type: str}
    intermediates: {description: The CA certificates in the PFX (subject and thumbprint)., type: list, elements: dict}
pfx_problems:
  description: Why the PFX was refused (codes unreadable, no_certificate, no_private_key, key_mismatch, expired, not_yet_valid, untrusted, name_mismatch).
  returned: when the PFX was refused
  type: list
  elements: str
plan:
  description: Every change planned from the audit, in words, in the order it runs.
  returned: after the audit
  type: list
  elements: str
steps:
  description: Every change with its outcome.
  returned: unless the plan was blocked
  type: list
  elements: dict
  contains:
    action:
      description: What it does.
      type: str
      choices: [import_certificate, enable_smtp, enable_iis, restore_internal_transport, pin_connector, pin_hybrid_configuration, remove_certificate]
    description: {description: The change in words., type: str}
    status: {description: "C(planned) (check mode), C(applied), C(failed) or C(skipped).", type: str}
    error: {description: "The error of a failed change (type, category, message, fqid).", type: dict}
chain:
  description: The chain the server builds for the certificate after the change, and whether Exchange Online can complete it.
  returned: with O(state=present), unless check mode changed something
  type: dict
  contains:
    complete: {description: The server can send a chain Exchange Online accepts., type: bool}
    thumbprints: {description: "The chain as the server builds it, leaf first.", type: list, elements: str}
    status: {description: C(X509ChainStatusFlags) names Windows reported., type: list, elements: str}
    problem: {description: "What is wrong, or null.", type: str}
internal_transport_certificate:
  description: C(InternalTransportCertificateThumbprint) as re-read; the module fails when a run changed it.
  returned: after the audit
  type: str
notes:
  description: What the administrator should know although it did not stop the run (also shown as warnings).
  returned: after the audit
  type: list
  elements: str
"""
