"""`make bench` section "sites" (issue 18): what `pmprof heap --sites` costs a malloc-heavy
target. tests/targets/alloc_sites.cpp --churn mallocs and frees 64-byte blocks in a loop and
counts them; its allocations per second are measured with no profiling, then during a --sites
window at the default sample rate (512 KiB), at a 10x lower rate (5 MiB), and at the default
rate with the smallest stack copy (--stack-bytes 512: what the uprobe trap itself costs).

  python3 bench/sites.py --pmprof build/pmprof --target build/targets/alloc_sites-nofp \
      --out bench/results [--quick]

Writes OUT/sites.json and OUT/sites.md (a section of RESULTS.md)."""

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time

CASES = [
    ("none", None),
    ("default rate (512 KiB)", []),
    ("10x lower rate (5 MiB)", ["--sample-rate", "5MiB"]),
    ("default rate, --stack-bytes 512", ["--stack-bytes", "512"]),
]


def read_line(proc, timeout):
    end = time.time() + timeout
    buf = b""
    while time.time() < end:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            c = os.read(proc.stdout.fileno(), 1)
            if not c:
                return ""
            if c == b"\n":
                return buf.decode()
            buf += c
    return ""


def counts(proc):
    proc.send_signal(signal.SIGUSR2)
    while True:
        line = read_line(proc, 10)
        if not line:
            return {}
        if line.startswith("counts "):
            return dict(kv.split("=") for kv in line.split()[1:])


def rate(proc, seconds):
    a = counts(proc)
    t0 = time.time()
    time.sleep(seconds)
    b = counts(proc)
    dt = time.time() - t0
    return (int(b["allocs"]) - int(a["allocs"])) / dt, b.get("probed") == "1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pmprof", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    window = 2.0 if args.quick else 4.0
    load = os.getloadavg()
    env = dict(os.environ)
    env.pop("PMPROF_READY_FD", None)
    target = subprocess.Popen([args.target, "--churn"], stdout=subprocess.PIPE, env=env)
    rows = []
    try:
        read_line(target, 10)  # ready
        for name, extra in CASES:
            if extra is None:
                r, probed = rate(target, window)
                rows.append({"case": name, "allocs_per_s": r, "probed": probed})
                continue
            err = open(os.path.join(args.out, "sites-pmprof.err"), "w+")
            pm = subprocess.Popen([args.pmprof, "-v", "heap", str(target.pid), "--sites", "120s",
                                   "-o", os.path.join(args.out, "sites.pb.gz")] + extra,
                                  stdout=subprocess.DEVNULL, stderr=err)
            end = time.time() + 60
            while time.time() < end:
                err.seek(0)
                if "sites: recording" in err.read():
                    break
                time.sleep(0.05)
            r, probed = rate(target, window)
            pm.send_signal(signal.SIGINT)
            pm.wait(120)
            err.seek(0)
            summary = [l.strip() for l in err.read().splitlines() if "probe hits" in l or
                       "cost it" in l or "records lost" in l]
            rows.append({"case": name, "allocs_per_s": r, "probed": probed, "summary": summary})
            # the probes are gone once pmprof has exited; let the target settle
            time.sleep(0.5)
    finally:
        target.kill()
        target.wait()
    base = rows[0]["allocs_per_s"] or 1
    with open(os.path.join(args.out, "sites.json"), "w") as f:
        json.dump({"load": load, "window_s": window, "rows": rows}, f, indent=1)
    md = ["## heap --sites: a malloc-heavy target's throughput (issue 18)", "",
          "tests/targets/alloc_sites.cpp --churn (malloc + free of 64 B in a loop, one thread); "
          f"allocations per second over {window:.0f} s inside a `pmprof heap --sites` window. "
          f"Load average at the start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} cpus (a shared machine).", "",
          "| case | allocations/s | vs none | slowdown |", "|---|---:|---:|---:|"]
    for row in rows:
        rel = row["allocs_per_s"] / base
        md.append(f"| {row['case']} | {row['allocs_per_s']:,.0f} | {100 * rel:.2f} % | "
                  f"{(1 / rel if rel > 0 else float('inf')):,.0f}x |")
    md.append("")
    for row in rows[1:]:
        for line in row.get("summary", []):
            md.append(f"- {row['case']}: `{line}`")
    with open(os.path.join(args.out, "sites.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
