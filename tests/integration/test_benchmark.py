"""benchmarks/fleet.py runs with one command and ends with one JSON object holding every figure.

A small fleet, so that it stays cheap: this checks the benchmark works and reads the lab's counters
right, not how fast anything is (the figures are for people, see README "Benchmark").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.lab.testing import REPO_ROOT

FIGURES = {"wall_s", "cpu_s", "cpu_ms_per_host", "lab_cpu_ms_per_host", "peak_rss_mb", "rc", "commands_per_host", "commands_max",
           "latency_floor_s", "wall_vs_raw", "cpu_vs_raw", "wall_vs_latency_floor"}


def test_the_benchmark_prints_a_table_then_every_figure_as_json():
    completed = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", "fleet.py"), "--servers", "4", "--forks", "4",
                                "--latency", "0.05"], capture_output=True, text=True, timeout=600, check=False, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["servers", "forks", "latency", "kind"]
    assert [line.split()[3] for line in lines[1:-1]] == ["raw", "info", "audit", "remediate"]
    document = json.loads(lines[-1])
    (case,) = document["cases"]
    assert (case["servers"], case["forks"], case["latency_s"], case["trust_bundle"]) == (4, 4, 0.05, "lab")
    runs = case["runs"]
    assert all(set(run) == FIGURES for run in runs.values()), {kind: sorted(run) for kind, run in runs.items()}
    # One round trip per server to read, at most two to change (the lab counted them).
    assert [runs[kind]["commands_per_host"] for kind in ("raw", "info", "audit")] == [1.0, 1.0, 1.0]
    assert runs["remediate"]["commands_max"] <= 2 and runs["remediate"]["commands_per_host"] >= 1
    assert all(run["rc"] in (0, 2) and run["cpu_s"] > 0 and run["peak_rss_mb"] > 10 for run in runs.values())
    assert runs["raw"]["wall_vs_raw"] == 1.0 and runs["audit"]["latency_floor_s"] == 0.05
