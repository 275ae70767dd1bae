"""`make bench` section "sites": what `pmprof heap --sites` costs the target, and what its
overhead guard (--max-overhead, 5 % of the target's cpu time by default) lets through.

Targets (tests/targets/alloc_sites.cpp), each counting its allocations:
  --churn      malloc + free of 64 B in a loop, one thread (the worst case)
  --work 1000  units of 1 ms of computation, each with one malloc + free (a busy server
               allocating ~1000 times per cpu-second)
  --work 100   the same with 100 us units (~10000 allocations per cpu-second)
Each runs with no profiling, then inside a `pmprof heap --sites` window of WINDOW seconds:
with the default guard, and for the churn target with no limit (--max-overhead 100) at the
default and at a 10x lower sample rate (the trap dominates: the rate changes nothing).
Allocations are counted over the WINDOW seconds asked for, from the moment pmprof says the
probes are in place (whether the guard ended the window early or not: what the target kept of
its throughput), per second of wall time and per second of the target's own cpu time (the
latter is what load on this shared machine disturbs least); and until pmprof has exited (every
probe removed, heap walk done).

  python3 bench/sites.py --pmprof build/pmprof --target build/targets/alloc_sites-nofp \\
      --out bench/results [--quick]

Writes OUT/sites.json and OUT/sites.md (a section of RESULTS.md)."""

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

TARGETS = [
    ("churn", ["--churn"], [
        ("default guard", []),
        ("no limit (--max-overhead 100)", ["--max-overhead", "100"]),
        ("no limit, 10x lower rate (5 MiB)", ["--max-overhead", "100", "--sample-rate", "5MiB"]),
    ]),
    ("work 1000 us", ["--work", "1000"], [("default guard", [])]),
    ("work 100 us", ["--work", "100"], [("default guard", [])]),
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


def cpu_s(pid):
    """The process's user + system time in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snapshot(proc):
    c = counts(proc)
    return time.time(), int(c["allocs"]), cpu_s(proc.pid), c.get("probed") == "1"


def rates(a, b):
    dt, n, cpu = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    return {"seconds": dt, "allocs": n, "allocs_per_s": n / dt if dt > 0 else 0,
            "allocs_per_cpu_s": n / cpu if cpu > 0 else 0, "target_cpu_s": cpu}


def run_pmprof(args, target, extra, window):
    err = open(os.path.join(args.out, "sites-pmprof.err"), "w+")
    pm = subprocess.Popen([args.pmprof, "-v", "heap", str(target.pid), "--sites", f"{window}s",
                           "-o", os.path.join(args.out, "sites.pb.gz")] + extra,
                          stdout=subprocess.DEVNULL, stderr=err)
    end = time.time() + 60
    while time.time() < end and pm.poll() is None:
        err.seek(0)
        if "sites: recording" in err.read():
            break
        time.sleep(0.02)
    a = snapshot(target)
    probed = a[3]
    time.sleep(window)
    b = snapshot(target)  # the window asked for: ended early or not, what the target kept
    try:
        pm.wait(window + 120)
    except subprocess.TimeoutExpired:
        pm.kill()
        pm.wait()
    c = snapshot(target)
    err.seek(0)
    text = err.read()
    row = rates(a, b)
    row["until_exit"] = rates(a, c)
    row["probed"] = probed
    row["exit"] = pm.returncode
    row["summary"] = [l.strip() for l in text.splitlines()
                      if "probe hits" in l or "cost it" in l or "ended early" in l or
                      "probe removed" in l or "records lost" in l]
    m = re.search(r"window ended early, after ([0-9.]+) s", text)
    row["window_s"] = float(m.group(1)) if m else float(window)
    row["ended_early"] = bool(m)
    m = re.search(r"the probes cost it about [0-9.]+ s, ([0-9]+) % of its cpu time", text)
    row["estimated_share_pct"] = int(m.group(1)) if m else None
    m = re.search(r"the probes took ([0-9]+) % of the target's cpu time", text)
    row["stop_share_pct"] = int(m.group(1)) if m else None
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pmprof", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    window = 2 if args.quick else 4
    load = os.getloadavg()
    env = dict(os.environ)
    env.pop("PMPROF_READY_FD", None)
    results = []
    for tname, targv, cases in TARGETS:
        target = subprocess.Popen([args.target] + targv, stdout=subprocess.PIPE, env=env)
        try:
            read_line(target, 10)  # ready
            time.sleep(0.3)
            a = snapshot(target)
            time.sleep(window)
            base = rates(a, snapshot(target))
            base.update({"case": "none", "window_s": None})
            rows = [base]
            for cname, extra in cases:
                row = run_pmprof(args, target, extra, window)
                row["case"] = cname
                rows.append(row)
                time.sleep(0.5)  # the probes are gone once pmprof has exited
        finally:
            target.kill()
            target.wait()
        results.append({"target": tname, "rows": rows})
    load_end = os.getloadavg()
    with open(os.path.join(args.out, "sites.json"), "w") as f:
        json.dump({"load_start": load, "load_end": load_end, "window_s": window,
                   "results": results}, f, indent=1)
    md = ["## heap --sites: what the target pays, and what the overhead guard lets through", "",
          f"tests/targets/alloc_sites.cpp; `pmprof heap PID --sites {window}s`. Allocations counted "
          f"over the {window} s asked for from the probes in place, ended early or not (and in "
          "sites.json also until pmprof's exit: every probe removed, heap walk done). Load "
          f"average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start, {load_end[0]:.1f} at "
          f"the end, on {os.cpu_count()} cpus (a shared machine): the per-cpu-second column is "
          "the one load disturbs least.", "",
          "| target | case | window ran | allocations/s | vs none | per target cpu-s | vs none "
          "| probes' share (pmprof's estimate) |",
          "|---|---|---:|---:|---:|---:|---:|---|"]
    for res in results:
        base = res["rows"][0]
        for row in res["rows"]:
            rel = row["allocs_per_s"] / base["allocs_per_s"] if base["allocs_per_s"] else 0
            relc = (row["allocs_per_cpu_s"] / base["allocs_per_cpu_s"]
                    if base["allocs_per_cpu_s"] else 0)
            ran = "-" if row["window_s"] is None else (
                f"{row['window_s']:.1f} s (ended early)" if row["ended_early"]
                else f"{row['window_s']:.1f} s")
            share = "-"
            if row.get("stop_share_pct") is not None:
                share = f"{row['stop_share_pct']} % at the stop, {row['estimated_share_pct']} % overall"
            elif row.get("estimated_share_pct") is not None:
                share = f"{row['estimated_share_pct']} %"
            pct = lambda x: f"{100 * x:.1f} %" if x >= 0.01 else f"{100 * x:.3f} %"
            md.append(f"| {res['target']} | {row['case']} | {ran} | {row['allocs_per_s']:,.0f} | "
                      f"{pct(rel)} | {row['allocs_per_cpu_s']:,.0f} | {pct(relc)} | {share} |")
    md.append("")
    for res in results:
        for row in res["rows"][1:]:
            for line in row.get("summary", []):
                md.append(f"- {res['target']}, {row['case']}: `{line}`")
    with open(os.path.join(args.out, "sites.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
