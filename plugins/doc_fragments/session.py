# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  exchange_session:
    description:
      - How the Exchange cmdlets are loaded on the server, once per round trip.
      - C(auto) uses cmdlets already present, then the Exchange 2013+ snap-in, then
        C(RemoteExchange.ps1) with C(Connect-ExchangeServer -Auto). Edge Transport servers load the
        snap-ins listed in C(bin\exShell.psc1).
      - C(snapin) loads only that snap-in (widely used, but not supported by Microsoft except for
        transport agent cmdlets).
      - C(remote_exchange) is the supported way; it opens a second hop to Exchange, which needs
        Kerberos delegation, CredSSP or C(become).
      - C(none) expects the cmdlets to be loaded already, for example by a PowerShell profile or a
        custom endpoint.
      - C(e2010) is refused with an error before any server is contacted; Exchange 2010 is not supported
        (its shell is Windows PowerShell 2.0, and the runner needs PowerShell 3 or later).
    type: str
    choices: [auto, none, snapin, e2010, remote_exchange]
    default: auto
notes:
  - The connection must be a normal PowerShell session on the Exchange server (C(ansible.builtin.winrm),
    C(ansible.builtin.psrp) or C(ansible.builtin.ssh) with the PowerShell shell). The restricted
    C(Microsoft.Exchange) endpoint runs in no-language mode and cannot run the collection's script.
  - The script that runs on the server is C(plugins/plugin_utils/runner.ps1) of this collection. It
    only calls an allow-list of Exchange cmdlets with data decoded from the request; user input never
    becomes PowerShell source.
  - Tested through C(ansible.builtin.winrm) (pywinrm, Basic and NTLM, HTTP and HTTPS) against the
    collection's simulated Exchange lab. C(psrp) and C(ssh) follow the same C(exec_command) contract
    but are not exercised by the test suite.
"""
