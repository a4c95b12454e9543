# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # What smtp_certificate and send_connector_tls share: how a change reaches the server safely.
    DOCUMENTATION = r"""
options:
  event_lookback_days:
    description:
      - Also read Event ID 2004 of the last this many days, so that RV(facts) carries the same events as
        M(hybridmail.exchange.certificate_info) returns (the C(hybridmail.exchange.hybrid_readiness) role
        reports them). No decision depends on events. C(0) skips the event log.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    details:
      - Check mode runs only the audit round trip and returns the plan in RV(plan); the script on the server
        refuses any cmdlet that is not a C(Get-) cmdlet in such a request.
  diff_mode:
    support: full
    details:
      - The diff shows, before and after, the services of every certificate, the C(TlsCertificateName) of
        every cloud connector and the internal transport certificate. In check mode the after side is what
        the plan intends.
  platform:
    platforms: windows
notes:
  - A run is one read-only round trip (the audit) and, only when there is something to change, one
    mutating round trip; so at most two WinRM commands per host. The mutating round trip first re-reads
    what the plan was computed from (the certificates and their services; the internal transport
    certificate when SMTP is enabled; the receive connectors it pins) and changes nothing when that
    differs from the audit. It stops at the first step that fails, reports which steps were applied
    and which were not run, and always ends with the audit reads, so the result shows the state as
    re-read from the server, not as intended.
  - The desired state is checked on the re-read state with the same planner. The module fails when it
    was not reached, for example when C(Enable-ExchangeCertificate) kept a service it was asked to drop.
  - Send connectors are organisation-wide. Pinning one from this server changes it for its other source
    servers too, so right before that step the module checks that each of them holds the very certificate
    pinned (same thumbprint, with its private key); when one does not, that step and the ones after it are
    not run, and the result says which server lacks what. Several hybrid servers of one run may pin the
    same connector at the same time with the same value, so the connector's own guard only checks that it
    still exists.
  - "Trust is judged as M(hybridmail.exchange.certificate_info) judges it, and also for the names Exchange
    Online checks: each cloud send connector's FQDN (the server FQDN when it has none); for cloud receive
    connectors the hybrid configuration's C(OnPremisesSmartHost) or the names of this server's cloud send
    connectors (on Edge servers, which cannot read the hybrid configuration, only those), else the receive
    connector's FQDN."
"""
