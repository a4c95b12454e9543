#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a documentation-only module: the logic runs on the controller, in
# plugins/action/server_preflight.py and plugins/plugin_utils/_preflight.py.

DOCUMENTATION = r"""
---
module: server_preflight
short_description: Prove, read-only, that the collection can work on an Exchange server before a fleet run
version_added: 0.1.0
description:
  - Runs one read-only round trip (one WinRM command) on the server and reports, as checks with the
    status C(ok), C(warning) or C(failed), whether the collection can audit and enforce there.
  - The checks are C(runner) (the result line came back and decoded), C(powershell) (edition and
    version), C(language_mode) (C(FullLanguage) is needed), C(session_user) (the user the session
    runs as), C(exchange_version) (product from C(AdminDisplayVersion); out-of-support versions are
    flagged), C(exchange_role) (Mailbox or Edge Transport), C(cmdlet_loading) (how the Exchange cmdlets
    were loaded and how long that took), C(audit_reads) (each read cmdlet of an audit ran once),
    C(rbac_audit) and C(rbac_enforce) (whether RBAC lets the user run the audit's C(Get-) cmdlets and
    C(Enable-ExchangeCertificate), C(Remove-ExchangeCertificate), C(Set-SendConnector),
    C(Set-ReceiveConnector)), C(application_log) (read access to the Application log),
    C(tls) (TLS 1.2 and .NET strong crypto registry state), C(ecc_support) (Exchange's ECC certificate
    support, as the audit reads it with C(Get-SettingOverride) and the C(EnableEccCertificateSupport)
    registry value; a warning when it cannot be read) and C(certificate_read) (the certificates
    the runner returned, with their C(RawData) parsed on the controller).
  - RBAC is read with C(Get-ManagementRole -Cmdlet) per cmdlet and
    C(Get-ManagementRoleAssignment -RoleAssignee <user> -Delegating $false); write scopes are not
    evaluated. Edge Transport servers do not use RBAC.
  - A request in a C(ConstrainedLanguage) session, or a session in the restricted
    C(Microsoft.Exchange) endpoint (no result line at all), fails with one line naming the host.
  - Never changes anything on the server; check mode changes nothing either.
author:
  - hybridmail.exchange contributors (@hybridmail)
extends_documentation_fragment:
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
  rbac_user:
    description:
      - The account whose RBAC role assignments are read (C(Get-ManagementRoleAssignment -RoleAssignee)).
      - Any form Exchange accepts, for example C(CONTOSO\svc-exchange), C(svc-exchange@contoso.com).
      - Defaults to the connection's user (C(ansible_user)). When the session runs as another account
        (C(become), a Kerberos ticket of another user), set it to that account; the C(session_user)
        check warns when the two differ.
    type: str
  required_for:
    description:
      - What the server must be ready for. A missing RBAC role for a purpose not listed here is a
        warning instead of a failure (for example C([audit]) for a read-only audit account).
    type: list
    elements: str
    choices: [audit, enforce]
    default: [audit, enforce]
  fail_on_warning:
    description:
      - Fail the host on warnings too, not only on failed checks.
    type: bool
    default: false
  diagnostics_dir:
    description:
      - Directory on the controller for a diagnostics file, written on any surprise (a failed check,
        a runner error, output that is not a result line), named C(<host>-preflight-<UTC time>.json).
      - It holds the request, the decoded answer with certificate bodies (C(RawData), C(ChainRawData))
        reduced to their thumbprints, timings and the checks; no password, no authorization header and
        no connection variables. Attach it to a bug report.
      - Not set, no file is written.
    type: path
  report_dir:
    description:
      - Directory on the controller where the host's result is written as C(<host>.json) on every run.
      - Not set, no file is written.
    type: path
notes:
  - The RBAC check reads role assignments, which Microsoft documents as needing the Role Management
    role; an account without it gets a warning ("could not tell") rather than a failure, and
    C(audit_reads) still proves the audit's cmdlets by running each of them once.
seealso:
  - module: hybridmail.exchange.certificate_info
  - name: Get-ManagementRoleAssignment
    description: Microsoft's cmdlet reference.
    link: https://learn.microsoft.com/powershell/module/exchange/get-managementroleassignment
"""

EXAMPLES = r"""
- name: Preflight one server first
  hybridmail.exchange.server_preflight:
    diagnostics_dir: hybrid_readiness_reports/preflight/diagnostics
    report_dir: hybrid_readiness_reports/preflight
  register: preflight

- name: Preflight for a read-only audit account (a missing enforce role is only a warning)
  hybridmail.exchange.server_preflight:
    required_for: [audit]
    rbac_user: CONTOSO\svc-exchange-audit
"""

RETURN = r"""
checks:
  description: One entry per check, in a fixed order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check (see the description above).
      type: str
    status:
      description: C(ok), C(warning) or C(failed).
      type: str
    detail:
      description: One line for a person.
      type: str
  sample:
    - {name: language_mode, status: ok, detail: FullLanguage}
    - {name: rbac_enforce, status: failed, detail: "CONTOSO\\svc may not run Set-SendConnector (no role assignment for Send Connectors)"}
ready_for:
  description: Whether the collection can audit and enforce on this server.
  returned: always
  type: dict
  sample: {audit: true, enforce: false}
server:
  description:
    - The facts behind the checks - host, PowerShell, language mode, session user, Exchange version and
      role, how the cmdlets were loaded (C(session.load), C(session.load_ms), C(session.elapsed_ms)),
      RBAC (roles per cmdlet, assigned roles, allowed per cmdlet), TLS state, C(ecc_support) (true, false or null), certificates (count,
      parsed, thumbprints), timings.
    - When the round trip failed, only C(error_type) and C(timings).
  returned: always
  type: dict
lines:
  description: The checks as table lines, one per check - host, check, status, detail.
  returned: always
  type: list
  elements: str
diagnostics:
  description: Path of the diagnostics file written for this run, or null.
  returned: always
  type: str
report:
  description: Path of the C(<host>.json) written into I(report_dir), or null.
  returned: always
  type: str
"""
