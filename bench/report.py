"""`make bench`: every benchmark in one go, and docs/benchmarks.md written from what they print.

Runs bench.ladder, bench.operator, bench.first_segment, bench.api and bench.throughput one
after another (each measures its own baselines in the same process), shows their output as it
comes, and writes docs/benchmarks.md: the date, the machine and the commit, each benchmark's
output as printed, and two plots drawn from the figures they wrote (time to the first segment
and to Ready against the source's length; the ladder's CPU per way). Nothing in the report is
typed by hand.

Needs the stack (make up), the images (make images) and matplotlib (the bench extra). Usage:
    python -m bench.report [--quick]   (--quick: shorter sources and fewer resources)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
REPORT = DOCS / "benchmarks.md"


def run(module: str, *args: str) -> tuple[str, float]:
    """Run ``python -m module args``, echoing its output; what it printed and how long it took."""
    print(f"==> python -m {module} {' '.join(args)}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if proc.wait() != 0:
        raise SystemExit(f"python -m {module} failed (exit {proc.returncode})")
    return "".join(lines), time.monotonic() - start


def machine() -> str:
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    cgroup = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()} cores ({model}), {mem_kb / 2**20:.0f} GiB, "
        f"{platform.system()} {platform.release()}, cgroup {cgroup}"
    )


def commit() -> str:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    return out.stdout.strip() or "unknown"


def pyplot() -> Any:
    """matplotlib's pyplot drawing to files (imported here: only `make bench` installs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_first_segment(rows: list[dict[str, float]], path: Path) -> None:
    plt = pyplot()
    lengths = [r["source_s"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(lengths, [r["first_segment_s"] for r in rows], "o-", label="vtx (through the API)")
    left.plot(lengths, [r["bare_first_segment_s"] for r in rows], "s--", label="bare FFmpeg")
    left.plot(lengths, [r["noop_job_s"] for r in rows], "^:", label="no-op Job")
    left.set(title="time to the first 480p segment", xlabel="source length (s)", ylabel="s")
    right.plot(lengths, [r["ready_s"] for r in rows], "o-", label="vtx, complete → Ready")
    right.plot(lengths, [r["bare_ready_s"] for r in rows], "s--", label="bare FFmpeg, whole ladder")
    right.set(title="time to Ready", xlabel="source length (s)", ylabel="s")
    for ax in (left, right):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ladder(costs: dict[str, dict[str, float]], path: Path) -> None:
    plt = pyplot()
    ways = list(costs)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(ways, [costs[w]["cpu_s"] for w in ways], color="#4c72b0")
    for i, w in enumerate(ways):
        ax.annotate(f"{costs[w]['cpu_s'] / costs['floor']['cpu_s']:.2f}x", (i, costs[w]["cpu_s"]),
                    ha="center", va="bottom")  # fmt: skip
    ax.set(title="the ladder's CPU per way (ratio to the floor)", ylabel="CPU s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short sources, 100 resources")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args()
    began, measured = datetime.now(UTC), commit()  # before this run rewrites the report
    with tempfile.TemporaryDirectory(prefix="vtx-bench-report-") as tmp:
        work = Path(tmp)
        ladder_json, first_json = work / "ladder.json", work / "first.json"
        seconds = "6" if args.quick else "20"
        parts: list[tuple[str, str, str, float]] = []
        for title, module, margs in (
            ("Ladder: one decode against one per rendition", "bench.ladder",
             ["--seconds", seconds, "--json", str(ladder_json)]),
            ("Operator: time to Ready, Ready after the last pod, many at once", "bench.operator",
             ["--seconds", seconds, "--count", "100" if args.quick else "1000",
              "--runs", "2" if args.quick else "8"]),
            ("First segment and Ready against the source's length", "bench.first_segment",
             ["--lengths", "6,12" if args.quick else "10,30,120", "--json", str(first_json)]),
            ("API: uploads under load, WebSocket fan-out", "bench.api",
             ["--seconds", "5" if args.quick else "20"]),
            ("Throughput: many uploads at once, and where the CPU goes", "bench.throughput",
             ["--seconds", "4" if args.quick else "10"]),
        ):  # fmt: skip
            out, took = run(module, *margs)
            parts.append((title, f"python -m {module} {' '.join(margs)}", out, took))
        first: list[dict[str, Any]] = json.loads(first_json.read_text())
        costs: dict[str, dict[str, float]] = json.loads(ladder_json.read_text())
    stem = args.out.stem
    first_png, ladder_png = f"{stem}-first-segment.png", f"{stem}-ladder-cpu.png"
    plot_first_segment(first, args.out.parent / first_png)
    plot_ladder(costs, args.out.parent / ladder_png)
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` ({'`--quick`, ' if args.quick else ''}"
        f"`python -m bench.report`) on {began:%Y-%m-%d %H:%M} UTC, commit `{measured}`.",
        f"Machine: {machine()}. The local stack, the load and the measured program share it.",
        "Each figure below is printed by the benchmark named above it, with its baseline measured",
        "in the same run; the plots are drawn from the same figures.",
        "",
        f"![time to the first segment and to Ready]({first_png})",
        "",
        f"![the ladder's CPU per way]({ladder_png})",
        "",
    ]
    for title, command, out, took in parts:
        lines += [f"## {title}", "", f"`{command}` ({took / 60:.1f} min)", "", "```text",
                  out.rstrip(), "```", ""]  # fmt: skip
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} and its plots", flush=True)


if __name__ == "__main__":
    main()
