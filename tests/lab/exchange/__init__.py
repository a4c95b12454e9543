"""The Exchange emulation of the lab: what runner.ps1 would see on a real Exchange server.

`Fleet.load(path)` (fleet.py) reads a fleet file (tests/lab/fleets/README.md) and builds the
organisation, its servers (server.py) and their certificates (tests/lab/pki.py). Each server answers
one decoded runner request at a time (runner.py executes it along docs/wire-contract.md; cmdlets.py
holds the emulated cmdlets) and keeps a mail-flow model toward Exchange Online (mailflow.py) whose
certificate choices and gateway verdicts follow /work/shared/docs/exchange-facts.md.

Modules: model (state records), services (the AllowedServices flags), chain (Windows chain building
and Exchange's Status/RootCAType opinion), texts (localised event texts), errors (PowerShell error
shapes), params (parameter binding), convert (value conversion), generate (large synthetic fleets).
"""
