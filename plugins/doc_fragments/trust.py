# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  trust_bundle:
    description:
      - PEM file of the root certificates that Exchange Online trusts, used for the trust verdict.
      - Each certificate is path-validated for TLS server authentication (RFC 5280) on the
        controller, using only the intermediate certificates the Exchange server itself holds,
        because Exchange Online does not fetch missing intermediates.
      - When omitted or empty, the Mozilla root program bundled with the Python package C(certifi) on the
        controller is used, a close stand-in for the Microsoft Trusted Root Program.
      - Exchange's own C(Status) and C(RootCAType) are reported beside the verdict but never used
        as proof of trust.
    type: path
  min_key_size:
    description:
      - RSA keys shorter than this many bits are reported as weak (elliptic-curve keys below 256 bits
        are always weak).
    type: int
    default: 2048
"""
