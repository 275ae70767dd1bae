"""`make bench` section "shares": does `pmprof attach --mode cpu` say where the cpu
time went? For each case and each backend, `perf record -e task-clock --call-graph dwarf` and
pmprof record the same target, and only perf's samples inside pmprof's window count (perf
records with -k realtime; the window is the profile's time_nanos and duration_nanos). The
result is the largest difference of a function's share of cpu time (its self time, by the
innermost user-space frame: perf's kernel frames are charged to the syscall that entered them,
as pmprof without --kernel does) among the top-10 functions of either tool.

Cases: tests/targets/cpu_target.cpp (bursty: 8 ms compute / 2 ms sleep; server: loopback
request/response with work between the syscalls; oversub: 2 x ncpus busy threads) and the
reference target (4 busy threads, 16 idle).

  python3 bench/shares.py --pmprof build/pmprof --cpu-target build/bench/cpu_target-nofp \
      --reference build/bench/reference_target-nofp --out bench/results [--quick]

Writes OUT/shares.json and OUT/shares.md (a section of RESULTS.md)."""

import argparse
import gzip
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

CASES = ["bursty", "server", "oversub", "reference"]
BACKENDS = ["ptrace", "perf"]


def norm(name):
    """One spelling per function: perf and libdwfl pick different aliases of libc symbols
    (__GI___libc_write, __libc_write, write) and different argument lists."""
    name = name.strip()
    name = name.replace("(anonymous namespace)::", "")
    cut = name.find("(")
    if cut > 0:
        name = name[:cut]
    name = re.sub(r"@.*$", "", name)  # perf: clock_nanosleep@GLIBC_2.2.5
    name = re.sub(r"\.(constprop|isra|part|cold)\.\d+$", "", name)
    prev = None
    while prev != name:
        prev = name
        for p in ("__GI_", "__vdso_", "__libc_", "_"):
            if name.startswith(p) and len(name) > len(p):
                name = name[len(p):]
    return name


def pmprof_shares(pmprof, profile, workdir):
    folded = os.path.join(workdir, "pmprof.folded")
    r = benchlib.run([pmprof, "report", profile, "--sample-index", "cpu", "-f", "folded",
                      "-o", folded], 120)
    if r.rc != 0:
        raise benchlib.BenchError(f"pmprof report: rc {r.rc}")
    weights = {}
    with open(folded, errors="replace") as f:
        for line in f:
            frames, _, w = line.rstrip("\n").rpartition(" ")
            leaf = frames.split(";")[-1]
            weights[norm(leaf)] = weights.get(norm(leaf), 0) + int(w)
    return weights


def varint(buf, i):
    v, shift = 0, 0
    while True:
        if i >= len(buf):
            raise benchlib.BenchError("pprof profile: truncated varint")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def profile_window(profile):
    """The sampling window of a pprof profile, [time_nanos, time_nanos + duration_nanos) in
    CLOCK_REALTIME nanoseconds (fields 9 and 10 of Profile, profile.proto)."""
    with open(profile, "rb") as f:
        buf = f.read()
    if buf[:2] == b"\x1f\x8b":
        buf = gzip.decompress(buf)
    fields, i = {}, 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(buf, i)
            fields[number] = v
        elif wire == 2:
            n, i = varint(buf, i)
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise benchlib.BenchError(f"{profile}: wire type {wire}")
    start = fields.get(9, 0)
    return start, start + fields.get(10, 0)


def perf_shares(data, workdir, window=None):
    """Self time by function from `perf record` data; with `window` (realtime ns, the data
    recorded with -k realtime) only the samples inside it, and the fraction of all samples
    that was."""
    text = os.path.join(workdir, "perf.script")
    # --no-inline: the real function of each address (with inline frames, perf prints some
    # addresses as inline entries only).
    r = benchlib.run(["perf", "script", "--no-inline", "--ns", "-i", data, "-F",
                      "time,period,ip,sym,dso"], 600, stdout=text)
    if r.rc != 0:
        raise benchlib.BenchError(f"perf script: rc {r.rc}")
    weights, period, leaf = {}, 0, None
    kept = [0, 0]  # samples inside the window, all samples

    def flush():
        if period and leaf is not None:
            weights[leaf] = weights.get(leaf, 0) + period

    with open(text, errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            if line[0] == "\t":  # a frame; a sample's header line starts with spaces
                if leaf is not None:
                    continue
                parts = line.split(None, 1)
                rest = parts[1] if len(parts) > 1 else ""
                dso = rest[rest.rfind("(") + 1:].rstrip(")\n ") if "(" in rest else ""
                if "kernel.kallsyms" in dso or dso.startswith("[kernel"):
                    continue
                sym = rest[:rest.rfind("(")].strip() if "(" in rest else rest.strip()
                sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
                leaf = norm(sym) if sym and sym != "[unknown]" else f"[{os.path.basename(dso)}]"
            else:
                flush()
                m = re.match(r"\s*(\d+)\.(\d{9}):\s+(\d+)", line)
                if not m:
                    raise benchlib.BenchError(f"perf script: unexpected line {line!r}")
                t = int(m.group(1)) * 1000000000 + int(m.group(2))
                kept[1] += 1
                inside = window is None or window[0] <= t < window[1]
                kept[0] += inside
                period, leaf = (int(m.group(3)) if inside else 0), None
    flush()
    os.unlink(text)
    # pmprof's window is most of perf's recording (75-85 % of its samples here): much less
    # means the two clocks or the window are wrong, and the comparison would be of nothing.
    if window is not None and kept[0] < 0.3 * kept[1]:
        raise benchlib.BenchError(f"{data}: {kept[0]} of {kept[1]} perf samples inside "
                                  "pmprof's window")
    return weights, kept[0] / kept[1] if kept[1] else 0.0


def to_shares(weights):
    total = sum(weights.values())
    return {k: 100.0 * v / total for k, v in weights.items()} if total else {}


def compare(ours, theirs, top=10):
    names = sorted(ours, key=ours.get, reverse=True)[:top]
    names += [n for n in sorted(theirs, key=theirs.get, reverse=True)[:top] if n not in names]
    rows = [(n, ours.get(n, 0.0), theirs.get(n, 0.0)) for n in names]
    worst = max(rows, key=lambda r: abs(r[1] - r[2])) if rows else ("-", 0.0, 0.0)
    return worst, rows


def start_target(args, case, workdir):
    os.makedirs(workdir, exist_ok=True)
    if case == "reference":
        return benchlib.Target(args.reference, workdir, busy=4, idle=16)
    out = os.path.join(workdir, "target.out")
    bg = benchlib.Background([args.cpu_target, "--case", case], stdout=out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(out) as f:
            if f.read().startswith("ready"):
                time.sleep(0.3)
                return bg
        time.sleep(0.01)
    bg.finish(signal.SIGKILL)
    raise benchlib.BenchError(f"cpu_target --case {case} did not get ready")


def analyze(args, case, backend, workdir, busy):
    profile = os.path.join(workdir, "pmprof.pb.gz")
    ours = to_shares(pmprof_shares(args.pmprof, profile, workdir))
    # Only perf's samples of pmprof's own window: perf records from before pmprof starts until
    # after it has written its profile, and a target whose behaviour drifts (the server case
    # does) would otherwise be compared with times pmprof never saw.
    window = profile_window(profile)
    weights, inside = perf_shares(os.path.join(workdir, "perf.data"), workdir, window)
    theirs = to_shares(weights)
    worst, rows = compare(ours, theirs)
    result = {"case": case, "backend": backend, "worst_fn": worst[0],
              "worst_diff": abs(worst[1] - worst[2]), "busy_cpus_before": busy,
              "rows": rows[:10], "perf_inside_window": inside}
    # perf alone, the window before: the target undisturbed by pmprof. The ptrace backend's own
    # stops cost the target kernel time that perf sees in the same run (charged to the call the
    # thread stopped in) and pmprof cannot: against the target as it runs without pmprof, that
    # cost is not counted as pmprof's error.
    alone_data = os.path.join(workdir, "perf-alone.data")
    if os.path.exists(alone_data):
        alone_dir = os.path.join(workdir, "alone")
        os.makedirs(alone_dir, exist_ok=True)
        alone = to_shares(perf_shares(alone_data, alone_dir)[0])
        worst_a, rows_a = compare(ours, alone)
        result.update({"alone_worst_fn": worst_a[0], "alone_worst_diff":
                       abs(worst_a[1] - worst_a[2]), "alone_rows": rows_a[:10]})
    return result


def one(args, case, backend, workdir):
    if args.reanalyze:  # the files of an earlier run, analyzed again
        with open(os.path.join(workdir, "busy")) as f:
            return analyze(args, case, backend, workdir, json.load(f))
    target = start_target(args, case, workdir)
    pid = target.pid if case == "reference" else target.proc.pid
    try:
        alone = benchlib.run(["perf", "record", "-q", "-k", "realtime", "-e", "task-clock",
                              "-F", str(args.rate), "--call-graph", "dwarf", "-p", str(pid), "-o",
                              os.path.join(workdir, "perf-alone.data"), "--", "sleep",
                              str(args.seconds)], args.seconds + 120,
                             stderr=os.path.join(workdir, "perf-alone.err"))
        if alone.rc != 0:
            raise benchlib.BenchError(f"perf record alone: rc {alone.rc}")
        data = os.path.join(workdir, "perf.data")
        perf = benchlib.Background(["perf", "record", "-q", "-k", "realtime", "-e",
                                    "task-clock", "-F", str(args.rate), "--call-graph", "dwarf",
                                    "-p", str(pid), "-o", data],
                                   stderr=os.path.join(workdir, "perf.err"))
        deadline = time.monotonic() + 30
        while not (os.path.exists(data) and os.path.getsize(data) > 0):
            if time.monotonic() > deadline or not perf.running():
                raise benchlib.BenchError("perf record did not start")
            time.sleep(0.01)
        time.sleep(0.5)
        profile = os.path.join(workdir, "pmprof.pb.gz")
        busy = benchlib.busy_cpus(0.5)
        r = benchlib.run([args.pmprof, "attach", str(pid), "-m", "cpu", "-r", str(args.rate),
                          "--backend", backend, "--no-inline", "-d", f"{args.seconds}s",
                          "--no-progress", "-o", profile], args.seconds + 120,
                         stderr=os.path.join(workdir, "pmprof.err"))
        perf.finish(signal.SIGINT)
        if r.rc != 0:
            raise benchlib.BenchError(f"pmprof attach --backend {backend}: rc {r.rc}")
        with open(os.path.join(workdir, "busy"), "w") as f:
            json.dump(busy, f)
        return analyze(args, case, backend, workdir, busy)
    finally:
        if case == "reference":
            target.close()
        else:
            target.finish(signal.SIGKILL)


def markdown(results, args):
    out = ["## cpu-mode shares against perf", "",
           f"`pmprof attach -m cpu -r {args.rate} --backend B --no-inline -d {args.seconds}s` "
           f"while `perf record -k realtime -e task-clock -F {args.rate} --call-graph dwarf "
           "-p PID` records the same process (only its samples inside pmprof's window, the "
           "profile's time_nanos to time_nanos + duration_nanos, count); each function's share "
           "of cpu time by its innermost user frame (perf's kernel frames charged to the "
           "syscall that entered them). *worst*: the largest difference among the top-10 "
           "functions of either (goal: under 3 points). "
           "*against perf alone*: the same against `perf record` of the 5 s before, with pmprof "
           "not running: the target undisturbed (the ptrace backend's stops cost the target "
           "kernel time, which perf charges to the call a thread stopped in and pmprof cannot "
           "see). *busy cpus*: other load on the machine just before the cell.", "",
           "| case | backend | worst function | pmprof % | perf % | diff (points) | "
           "against perf alone: worst, diff | busy cpus |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            out.append(f"| {r['case']} | {r['backend']} | failed: {r['error']} | | | | |")
            continue
        w = next((x for x in r["rows"] if x[0] == r["worst_fn"]), (r["worst_fn"], 0, 0))
        busy = "?" if r["busy_cpus_before"] is None else f"{r['busy_cpus_before']:.2f}"
        alone = (f"`{r['alone_worst_fn']}` {r['alone_worst_diff']:.1f}"
                 if "alone_worst_fn" in r else "—")
        out.append(f"| {r['case']} | {r['backend']} | `{w[0]}` | {w[1]:.1f} | {w[2]:.1f} | "
                   f"{r['worst_diff']:.1f} | {alone} | {busy} |")
    out += ["", "Top functions per cell (pmprof % / perf %, and against perf alone):", ""]
    for r in results:
        if "error" in r:
            continue
        tops = ", ".join(f"`{n}` {a:.1f}/{b:.1f}" for n, a, b in r["rows"][:6])
        out.append(f"- {r['case']}, {r['backend']}: {tops}")
        if "alone_rows" in r:
            tops = ", ".join(f"`{n}` {a:.1f}/{b:.1f}" for n, a, b in r["alone_rows"][:6])
            out.append(f"  - against perf alone: {tops}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pmprof", required=True)
    ap.add_argument("--cpu-target", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=int, default=999)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reanalyze", action="store_true",
                    help="no measurement: analyze the files an earlier run left in OUT")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 2
    results = []
    try:
        for case in args.cases.split(","):
            for backend in args.backends.split(","):
                workdir = os.path.join(args.out, "shares", f"{case}-{backend}")
                try:
                    results.append(one(args, case, backend, workdir))
                except benchlib.BenchError as e:
                    results.append({"case": case, "backend": backend, "error": str(e)})
                print(f"bench: shares {case} {backend}: " +
                      (f"{results[-1]['error']}" if "error" in results[-1] else
                       f"worst {results[-1]['worst_fn']} {results[-1]['worst_diff']:.1f} pts"),
                      file=sys.stderr)
    finally:
        benchlib.kill_everything()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "shares.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "shares.md"), "w") as f:
        f.write(markdown(results, args))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
