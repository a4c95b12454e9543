"""Fleet benchmark: the collection's audit against Ansible's own floor over the lab.

    python benchmarks/fleet.py                       # 50 servers, forks 10, no latency
    python benchmarks/fleet.py --servers 50 200 500 --forks 10 50 --latency 0 0.3

For each case it starts a generated lab fleet, runs the same inventory three ways and prints, per
case: wall time; controller CPU seconds per host (ansible-playbook and its forks: RUSAGE_CHILDREN);
peak controller memory (the largest controller process of that run); WinRM commands per host (lab counters);
the lab's own CPU per host (it shares the machine, so it is part of the wall time, not of the controller's CPU);
and the latency floor ceil(N / forks) x round trips x latency.
  raw     ansible.builtin.raw: exit 0            one round trip per host, Ansible's own floor
  info    hybridmail.exchange.certificate_info   one round trip per host
  audit   playbooks/hybrid_readiness.yml         the whole audit playbook (role, findings, reports)
  remediate playbooks/remediate.yml              enforce in batches (canary, 25 %, the rest); it changes the
                                                 lab, so it runs last; its latency floor ignores the batches
Lines for people first; the last line is one JSON object with every figure. --rounds N runs the kinds N
times, interleaved, and prints each figure's median (a ratio's median is that of the rounds' own ratios)
with the ratios' ranges: on a shared machine one round's figures drift by a third.
This prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.lab.exchange.generate import generate_fleet  # noqa: E402
from tests.lab.testing import ansible_env, running_lab  # noqa: E402

import yaml  # noqa: E402

PLAYS = {
    "raw": "- hosts: exchange\n  gather_facts: false\n  tasks:\n    - ansible.builtin.raw: exit 0\n",
    "info": ("- hosts: exchange\n  gather_facts: false\n  tasks:\n"
             "    - hybridmail.exchange.certificate_info:\n        trust_bundle: \"{{ hybridmail_benchmark_trust_bundle }}\"\n"),
}
AUDIT_PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "hybrid_readiness.yml")
ROLE_PLAYBOOKS = {"audit": AUDIT_PLAYBOOK, "remediate": os.path.join(REPO_ROOT, "playbooks", "remediate.yml")}
KINDS = ("raw", "info", "audit", "remediate")


# Runs one command and prints its children's resource usage: RUSAGE_CHILDREN's ru_maxrss is the
# largest process ever waited for, so each run needs a parent of its own to get its own peak.
_MEASURE = """
import json, resource, subprocess, sys
code = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": code, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024.0}))
"""


def run_playbook(playbook: str, inventory: str, forks: int, extra: list) -> dict:
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, "-f", str(forks), playbook] + extra
    with tempfile.NamedTemporaryFile("r", encoding="utf-8", suffix=".log") as output:
        start = time.perf_counter()
        measured = subprocess.run([sys.executable, "-c", _MEASURE, output.name] + command, env=ansible_env(), capture_output=True,
                                  text=True, check=True)
        wall = time.perf_counter() - start
        usage = json.loads(measured.stdout)
        tail = output.read()[-400:]
    return {
        "wall_s": wall,
        "cpu_s": usage["cpu_s"],
        "peak_rss_mb": usage["peak_rss_mb"],
        "rc": usage["rc"],
        "tail": tail if usage["rc"] not in (0, 2) else "",
    }


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), None where that cannot be read."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def commands_per_host(lab) -> tuple[float, int]:
    """(mean, most) WinRM commands per server since the counters were reset."""
    commands = [s["winrm"]["requests"]["Command"] for s in lab.status()["servers"].values()]
    return sum(commands) / max(1, len(commands)), max(commands, default=0)


# --trust-bundle: "lab" judges as the lab's Exchange Online does; "default" (certifi's roots, which trust
# nothing in the lab) measures what the modules cost with the bundle most installations use.
TRUST_BUNDLES = {"lab": "{{ hybridmail_trust_bundle }}", "default": ""}


def bench_case(servers: int, forks: int, latency: float, kinds: list, workdir: str, trust_bundle: str = "lab",
               rounds: int = 1) -> dict:
    fleet_path = os.path.join(workdir, "fleet-%d.yml" % servers)
    if not os.path.exists(fleet_path):
        with open(fleet_path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(generate_fleet(servers), handle, allow_unicode=True, sort_keys=False)
    case = {"servers": servers, "forks": forks, "latency_s": latency, "trust_bundle": trust_bundle, "rounds": rounds, "runs": {}}
    measured = {kind: [] for kind in kinds}
    with running_lab(fleet_path, tmp_path=tempfile.mkdtemp(dir=workdir), latency=latency, startup_timeout=300) as lab:
        # Rounds interleave the kinds (raw, info, audit, raw, info, audit, ...), so that a shared machine whose
        # speed drifts during the benchmark slows every kind of a round alike; remediate changes the lab, so
        # it runs once, after the last round.
        for round_number in range(rounds):
            for kind in kinds:
                if kind == "remediate" and round_number != rounds - 1:
                    continue
                measured[kind].append(measure(lab, kind, servers, forks, latency, workdir, trust_bundle, round_number))
    raws = measured.get("raw") or []
    for kind, runs in measured.items():
        for run, raw in zip(runs, raws[-len(runs):] if raws else [None] * len(runs)):
            # Each run against the raw run of its own round.
            run["wall_vs_raw"] = run["wall_s"] / raw["wall_s"] if raw else None
            run["cpu_vs_raw"] = run["cpu_s"] / raw["cpu_s"] if raw else None
        case["runs"][kind] = median_run(runs)
    return case


def measure(lab, kind: str, servers: int, forks: int, latency: float, workdir: str, trust_bundle: str, round_number: int) -> dict:
    lab.reset_counters()
    if kind in ROLE_PLAYBOOKS:
        playbook = ROLE_PLAYBOOKS[kind]
        # The lab's trust bundle, as for certificate_info: judged as the lab's Exchange Online judges; the lab's
        # inventory sets hybrid_readiness_trust_bundle (a path), as the README's lab commands use it.
        # fail_on never: a rollout is not stopped by the servers a person has to fix.
        extra = ["-e", "hybrid_readiness_report_dir=%s" % os.path.join(workdir, "reports-%s-%d" % (kind, round_number)), "-e",
                 "hybrid_readiness_fail_on=never"]
        if trust_bundle != "lab":
            extra += ["-e", "hybrid_readiness_trust_bundle=" + TRUST_BUNDLES[trust_bundle]]
    else:
        playbook = os.path.join(workdir, kind + ".yml")
        with open(playbook, "w", encoding="utf-8") as handle:
            handle.write(PLAYS[kind])
        extra = ["-e", "hybridmail_benchmark_trust_bundle=" + TRUST_BUNDLES[trust_bundle]]
    lab_cpu = process_cpu_s(lab.process.pid)
    run = run_playbook(playbook, lab.inventory, forks, extra)
    lab_cpu_after = process_cpu_s(lab.process.pid)
    run["lab_cpu_ms_per_host"] = None if None in (lab_cpu, lab_cpu_after) else 1000.0 * (lab_cpu_after - lab_cpu) / servers
    run["commands_per_host"], run["commands_max"] = commands_per_host(lab)
    run["cpu_ms_per_host"] = 1000.0 * run["cpu_s"] / servers
    run["latency_floor_s"] = math.ceil(servers / forks) * run["commands_per_host"] * latency
    run["wall_vs_latency_floor"] = run["wall_s"] / run["latency_floor_s"] if run["latency_floor_s"] else None
    return run


def median_run(runs: list) -> dict:
    """One kind's figures over its rounds: the median of each figure (ratios too: each is the median of the
    rounds' own ratios, not a ratio of medians), and for the ratios their range over the rounds."""
    if len(runs) == 1:
        return runs[0]
    merged = {}
    for key, value in runs[0].items():
        values = [run[key] for run in runs]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and None not in values:
            merged[key] = statistics.median(values)
        else:
            merged[key] = next((v for v in values if v), value)  # tail: the first run's that has one
    merged["rc"] = max(run["rc"] for run in runs)
    for ratio in ("wall_vs_raw", "cpu_vs_raw"):
        values = [run[ratio] for run in runs if run.get(ratio) is not None]
        merged[ratio + "_range"] = [min(values), max(values)] if values else None
    return merged


def ranges(run: dict) -> str:
    """The ratios' ranges over the rounds, after a median line."""
    if not run.get("wall_vs_raw_range"):
        return ""
    return "   rounds: wall/raw %.2f-%.2f cpu/raw %.2f-%.2f" % (tuple(run["wall_vs_raw_range"]) + tuple(run["cpu_vs_raw_range"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, nargs="+", default=[50])
    parser.add_argument("--forks", type=int, nargs="+", default=[10])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0], help="seconds the lab adds per command")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run each kind this many times, interleaved, and print medians (and the ratios' ranges)")
    parser.add_argument("--trust-bundle", default="lab", choices=sorted(TRUST_BUNDLES),
                        help="lab: the lab's roots (default); default: certifi's, as most installations run")
    args = parser.parse_args()
    kinds = [kind for kind in KINDS if kind in args.kinds]  # remediate last: it changes the lab

    cases = []
    header = "%7s %5s %7s  %-9s %8s %10s %10s %10s %12s %9s %8s %9s %4s" % (
        "servers", "forks", "latency", "kind", "wall_s", "cpu_ms/host", "lab_ms/host", "peak_MB", "cmd mean/max", "floor_s", "wall/raw",
        "cpu/raw", "rc")
    print(header)
    with tempfile.TemporaryDirectory(prefix="hybridmail-bench-") as workdir:
        for servers in args.servers:
            for forks in args.forks:
                for latency in args.latency:
                    case = bench_case(servers, forks, latency, kinds, workdir, args.trust_bundle, max(1, args.rounds))
                    cases.append(case)
                    for kind, run in case["runs"].items():
                        print("%7d %5d %7.3f  %-9s %8.2f %10.1f %10.1f %10.1f %12s %9.2f %8.2f %9.2f %4d" % (
                            servers, forks, latency, kind, run["wall_s"], run["cpu_ms_per_host"], run["lab_cpu_ms_per_host"] or 0, run["peak_rss_mb"],
                            "%.2f/%d" % (run["commands_per_host"], run["commands_max"]), run["latency_floor_s"], run.get("wall_vs_raw") or 0,
                            run.get("cpu_vs_raw") or 0, run["rc"]) + ranges(run), flush=True)
                        if run["tail"]:
                            print("        output tail: %s" % run["tail"].replace("\n", " | "))
    print(json.dumps({"benchmark": "hybridmail.exchange fleet", "cases": [
        dict(case, runs={kind: {k: v for k, v in run.items() if k != "tail"} for kind, run in case["runs"].items()})
        for case in cases]}))


if __name__ == "__main__":
    main()
