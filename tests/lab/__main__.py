"""Command line of the lab (run from the repository root).

  python -m tests.lab serve --fleet FILE --inventory OUT.yml [--https] [--auth basic|ntlm]
                            [--user U --password P] [--latency S] [--pidfile F] [--first-port N]
  python -m tests.lab status --inventory OUT.yml
  python -m tests.lab fault --inventory OUT.yml --server NAME --kind KIND [--seconds S] [--times N]
                            [--after N] [--cmdlet NAME] [--message M]
  python -m tests.lab clear --inventory OUT.yml [--server NAME]
  python -m tests.lab reset-counters --inventory OUT.yml
  python -m tests.lab pfx --fleet FILE --certificate ID --out FILE.pfx [--password P] [--no-key] [--no-chain]

`serve` writes the inventory and a state directory next to it (<inventory stem>.state: the listener
CA, the trust bundle, the NTLM user file), prints `LAB READY <control url> <inventory path>` and
runs until SIGTERM or SIGINT. The other commands find the control URL in the inventory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request

import yaml

from tests.lab import psh
from tests.lab.auth import Authenticator
from tests.lab.control import FAULT_KINDS, ControlServer, LabControl
from tests.lab.tlsca import create_listener_certificates
from tests.lab.wsman import ServerEndpoint, WsmanService

DEFAULT_USER = "Administrator"
DEFAULT_PASSWORD = "Lab-Passw0rd!"
GROUP = "exchange"


def state_dir_for(inventory: str) -> str:
    return os.path.splitext(os.path.abspath(inventory))[0] + ".state"


def build_inventory(
    endpoints: list[ServerEndpoint],
    *,
    scheme: str,
    auth: str,
    user: str,
    password: str,
    control_url: str,
    trust_bundle: str,
    ca_path: str | None,
) -> dict:
    group_vars = {
        "ansible_connection": "winrm",
        "ansible_winrm_scheme": scheme,
        "ansible_winrm_transport": auth,
        "ansible_user": user,
        "ansible_password": password,
        # auto: NTLM over HTTP encrypts every message, HTTPS relies on TLS, Basic over HTTP cannot.
        "ansible_winrm_message_encryption": "auto",
        # pywinrm's defaults; a slow command answers w:TimedOut after 20 s and the client asks again.
        "ansible_winrm_operation_timeout_sec": 20,
        "ansible_winrm_read_timeout_sec": 30,
        "hybridmail_lab_control_url": control_url,
        "hybridmail_trust_bundle": trust_bundle,
        # The role's trust bundle too, so that the README's lab commands need no -e: the lab's "public" root
        # stands in for the Microsoft Trusted Root Program (design.md, "The lab").
        "hybrid_readiness_trust_bundle": trust_bundle,
    }
    if scheme == "https":
        group_vars["ansible_winrm_server_cert_validation"] = "validate"
        group_vars["ansible_winrm_ca_trust_path"] = ca_path
    hosts = {
        endpoint.server.name.lower(): {
            "ansible_host": "127.0.0.1",
            "ansible_port": endpoint.port,
            "hybridmail_lab_server": endpoint.server.name,
        }
        for endpoint in endpoints
    }
    return {"all": {"children": {GROUP: {"hosts": hosts, "vars": group_vars}}}}


def _write_atomically(path: str, data: bytes) -> None:
    temporary = path + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def serve(args: argparse.Namespace) -> int:
    from tests.lab.exchange.fleet import Fleet  # the Exchange emulation is only needed to serve

    inventory = os.path.abspath(args.inventory)
    state_dir = state_dir_for(inventory)
    os.makedirs(state_dir, exist_ok=True)

    fleet = Fleet.load(args.fleet)
    trust_bundle = os.path.join(state_dir, "trust-bundle.pem")
    _write_atomically(trust_bundle, fleet.trust_bundle_pem())

    tls_context = ca_path = channel_binding_hash = None
    if args.https:
        certificates = create_listener_certificates()
        tls_context = certificates.server_context(state_dir)
        ca_path = os.path.join(state_dir, "winrm-ca.pem")
        channel_binding_hash = certificates.channel_binding_hash()
    authenticator = Authenticator(args.user, args.password, state_dir, channel_binding_hash)

    powershell = psh.PowerShellHost()
    endpoints = [
        ServerEndpoint(server, powershell, base_latency=args.latency)
        for server in fleet.servers.values()
    ]
    service = WsmanService(endpoints, authenticator, tls_context=tls_context)
    service.start(first_port=args.first_port)
    control = ControlServer(LabControl(fleet, {endpoint.server.name: endpoint for endpoint in endpoints}))
    control.start()

    document = build_inventory(
        endpoints,
        scheme=service.scheme,
        auth=args.auth,
        user=args.user,
        password=args.password,
        control_url=control.url,
        trust_bundle=trust_bundle,
        ca_path=ca_path,
    )
    _write_atomically(inventory, yaml.safe_dump(document, sort_keys=False).encode("utf-8"))
    if args.pidfile:
        _write_atomically(args.pidfile, b"%d\n" % os.getpid())

    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    print("LAB READY %s %s" % (control.url, inventory), flush=True)
    stop_requested.wait()

    service.stop()
    control.stop()
    if args.pidfile and os.path.exists(args.pidfile):
        os.remove(args.pidfile)
    return 0


def control_url_from(inventory: str) -> str:
    with open(inventory, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    return document["all"]["children"][GROUP]["vars"]["hybridmail_lab_control_url"]


def call_control(inventory: str, path: str, body: dict | None = None) -> dict:
    """One control API call (GET without a body, POST with one); raises RuntimeError on refusal."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        control_url_from(inventory) + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise RuntimeError("lab control %s: %s" % (path, exc.read().decode("utf-8", "replace"))) from None


def _print_control(args: argparse.Namespace, path: str, body: dict | None = None) -> int:
    try:
        document = call_control(args.inventory, path, body)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2, sort_keys=True))
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__.split("\n\n", maxsplit=1)[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the lab until SIGTERM/SIGINT")
    serve_parser.add_argument("--fleet", required=True, help="fleet YAML (tests/lab/fleets/*.yml)")
    serve_parser.add_argument("--inventory", required=True, help="Ansible inventory to write")
    serve_parser.add_argument("--https", action="store_true", help="HTTPS listeners with the lab CA")
    serve_parser.add_argument("--auth", choices=("basic", "ntlm"), default="basic", help="transport in the inventory")
    serve_parser.add_argument("--user", default=DEFAULT_USER)
    serve_parser.add_argument("--password", default=DEFAULT_PASSWORD)
    serve_parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every command")
    serve_parser.add_argument("--first-port", type=int, default=0, help="consecutive ports from here (default: any)")
    serve_parser.add_argument("--pidfile")

    for name in ("status", "clear", "reset-counters", "fault"):
        sub = commands.add_parser(name)
        sub.add_argument("--inventory", required=True, help="the inventory written by serve")
        if name in ("clear", "fault"):
            sub.add_argument("--server", required=name == "fault", help="fleet server name, e.g. EX01")
        if name == "fault":
            sub.add_argument("--kind", required=True, choices=FAULT_KINDS)
            sub.add_argument("--seconds", type=float)
            sub.add_argument("--times", type=int, help="default: until cleared")
            sub.add_argument("--after", type=int, default=0)
            sub.add_argument("--cmdlet")
            sub.add_argument("--message")
    pfx_parser = commands.add_parser("pfx", help="write a PFX of a fleet certificate (e.g. the renewed one to import)")
    pfx_parser.add_argument("--fleet", required=True)
    pfx_parser.add_argument("--certificate", required=True, help="an id under certificates: in the fleet file")
    pfx_parser.add_argument("--out", required=True)
    pfx_parser.add_argument("--password", help="default: an unencrypted PFX")
    pfx_parser.add_argument("--no-key", action="store_true", help="leave the private key out")
    pfx_parser.add_argument("--no-chain", action="store_true", help="leave the CA certificates out")
    return parser.parse_args(argv)


def write_pfx(args: argparse.Namespace) -> int:
    from tests.lab.exchange.fleet import Fleet, FleetError  # pylint: disable=import-outside-toplevel

    try:
        data = Fleet.load(args.fleet).pfx(args.certificate, args.password, include_key=not args.no_key,
                                          include_chain=not args.no_chain)
    except FleetError as exc:
        print(exc, file=sys.stderr)
        return 1
    with open(args.out, "wb") as handle:
        handle.write(data)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "pfx":
        return write_pfx(args)
    if args.command == "status":
        return _print_control(args, "/status")
    if args.command == "clear":
        return _print_control(args, "/clear", {"server": args.server} if args.server else {})
    if args.command == "reset-counters":
        return _print_control(args, "/reset-counters", {})
    options = ("server", "kind", "seconds", "times", "after", "cmdlet", "message")
    return _print_control(args, "/fault", {name: getattr(args, name) for name in options if getattr(args, name) is not None})


if __name__ == "__main__":
    sys.exit(main())
