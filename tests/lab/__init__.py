"""The hybridmail lab: a simulated Exchange fleet behind a real WinRM (WS-Management) endpoint.

Run `python -m tests.lab serve --fleet tests/lab/fleets/<scenario>.yml --inventory <out>.yml` from
the repository root; see tests/lab/__main__.py for the commands and tests/lab/testing.py for the
pytest helpers. Modules: wsman (HTTP(S) listeners and WinRS operations), auth (Basic, NTLM and NTLM
message encryption), psh (PowerShell host emulation), tlsca (the listener certificate), control
(transport faults and the control API), exchange (the Exchange emulation) and pki (its X.509).
"""
