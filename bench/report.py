#!/usr/bin/env python3
"""Renders bench/RESULTS.md from a bench run's raw.tsv and meta.json (bench/bench.py). A pure
function of those two files: re-running it on the same data gives the same bytes.

Usage: report.py RESULTS_DIR > RESULTS.md"""

import json
import math
import os
import statistics
import sys
from collections import defaultdict

import bench  # the cell lists and commands live there
import report_goals


class Data:
    """raw.tsv indexed as (section, cell, build, threads) -> metric -> {round: value}."""

    def __init__(self, path):
        self.values = defaultdict(lambda: defaultdict(dict))
        self.errors = []
        with open(path) as f:
            next(f)
            for line in f:
                sec, rnd, cell, build, threads, metric, value = line.rstrip("\n").split("\t")
                key = (sec, cell, build, int(threads))
                if metric == "error":
                    self.errors.append((sec, int(rnd), cell, build, threads, value))
                    continue
                try:
                    self.values[key][metric][int(rnd)] = float(value)
                except ValueError:
                    pass

    def rounds(self, sec, cell, build, threads, metric):
        return self.values[(sec, cell, build, threads)][metric]

    def series(self, sec, cell, build, threads, metric):
        r = self.rounds(sec, cell, build, threads, metric)
        return [r[k] for k in sorted(r)]

    def ratio(self, sec, cell, build, threads, base="baseline", metric="ops_per_s"):
        """Per round: cell / base of the same round (ratios only within a round)."""
        a = self.rounds(sec, cell, build, threads, metric)
        b = self.rounds(sec, base, build, threads, metric)
        return [a[k] / b[k] for k in sorted(a) if k in b and b[k] > 0]

    def pooled(self, sec, cell, build, threads, metric):
        return sum(self.series(sec, cell, build, threads, metric))


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_num(x, digits=3):
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def spread(xs, scale=1.0, digits=3, suffix=""):
    """'median [min–max]' over rounds; '—' without data."""
    if not xs:
        return "—"
    xs = [x * scale for x in xs]
    m = fmt_num(med(xs), digits) + suffix
    if len(xs) == 1:
        return m
    return f"{m} [{fmt_num(min(xs), digits)}–{fmt_num(max(xs), digits)}]"


def pct_change(ratios):
    """Throughput change in percent of the baseline, per round."""
    return [(r - 1) * 100 for r in ratios]


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def snapshot_section(d, meta):
    out = ["## Snapshot: one thread dump of the whole process\n",
           "Time: whole-process wall time of one run, median of the runs looped back to back "
           "in a round. Longest stop: the longest a single target thread stayed ptrace-stopped "
           "(kernel sched trace, one traced run per round); span: first stop to last resume. "
           "Looped: target throughput while the tool runs back to back, in % of the round's "
           "unprofiled baseline. Each cell: median over rounds [min–max].\n"]
    tools = ["pmprof stacks", "eu-stack -p", "eu-stack -i -s -p", "gdb bt"]
    for threads in meta["config"]["snapshot_threads"]:
        rows = []
        pm = d.rounds("snapshot", "pmprof stacks", "fp", threads, "snap_ms")
        for tool in tools:
            t = d.rounds("snapshot", tool, "fp", threads, "snap_ms")
            vs = [t[k] / pm[k] for k in sorted(t) if k in pm and pm[k] > 0]
            rows.append([
                tool, spread(list(t.values()), digits=4),
                spread(vs, suffix="×") if tool != "pmprof stacks" else "1×",
                spread(d.series("snapshot", tool, "fp", threads, "stop_us"), 1e-3, suffix=" ms"),
                spread(d.series("snapshot", tool, "fp", threads, "stop_span_us"), 1e-3,
                       suffix=" ms"),
                spread(d.series("snapshot", tool, "fp", threads, "self_stop_us"), 1e-3,
                       suffix=" ms"),
                spread(d.series("snapshot", tool, "fp", threads, "traced_stops"), digits=4),
                spread(pct_change(d.ratio("snapshot", tool, "fp", threads)), suffix=" %"),
                spread(d.series("snapshot", tool, "fp", threads, "valid_output")),
            ])
        out.append(f"### {threads} threads\n")
        out.append(table(["tool", "time per snapshot (ms)", "time / pmprof's",
                          "longest stop of a thread", "stop span", "pmprof's own report",
                          "thread stops seen", "throughput looped", "output ok"], rows))
    return "\n".join(out)


def split_cell(d, sec, cell, build, threads):
    """Pooled over rounds: the 70/30 split with its 95 % binomial half-width, in points."""
    s = d.pooled(sec, cell, build, threads, "seventy_samples")
    t = d.pooled(sec, cell, build, threads, "thirty_samples")
    if s + t == 0:
        return None, None, "—"
    p = s / (s + t)
    half = 1.96 * math.sqrt(p * (1 - p) / (s + t)) * 100
    return p * 100, half, f"{p * 100:.1f} ±{half:.1f} (n={int(s + t)})"


def complete_pct(d, sec, cell, build, threads):
    busy = d.pooled(sec, cell, build, threads, "busy_samples")
    done = d.pooled(sec, cell, build, threads, "complete_samples")
    return 100.0 * done / busy if busy else None


def sampling_section(d, meta, cells):
    window = meta["config"]["window_s"]
    out = ["## Sampling: the reference target while a profiler samples it\n",
           f"Each cell samples for {meta['config']['window_s']:g} s after the tool has started "
           "(pmprof: seized the target; perf: wrote its header) and is stopped with SIGINT. "
           "Throughput in % of the round's baseline; tracer cpu: the tool's own on-cpu time in "
           "the window (/proc/PID/task/*/schedstat) per thread-sample (perf's kernel-side work "
           "is charged to the target, pmprof's is its own); split: share of work_seventy among "
           "busy-thread samples in either work function, pooled over rounds, ±95 % interval "
           "(truth: 70); complete: busy-thread samples reaching busy_main (the thread's entry "
           "function), pooled; inline: samples in a work function that show the inlined "
           "spin_units frame; achieved Hz: pmprof's ticks per second (the wall-mode rate); "
           "samples per target cpu-s: the samples in the window over the target's cpu time in it "
           "(the rate perf -F and pmprof's cpu mode aim at); tracer cpu ms/s: the tool's on-cpu "
           "time per second of the window.\n"]
    for build in ("fp", "nofp"):
        rows = []
        for cell in cells:
            pm = cell.startswith("pmprof")
            rows.append([
                cell, spread(pct_change(d.ratio("sampling", cell, build, 21)), suffix=" %"),
                spread(d.series("sampling", cell, build, 21, "eff_hz"), digits=4) if pm else "—",
                # perf's in-window share is estimated from its whole run: not comparable.
                spread(d.series("sampling", cell, build, 21, "hz_per_cpu_s"), digits=4)
                if pm else "—",
                "/".join(spread(d.series("sampling", cell, build, 21, k), digits=3)
                         for k in ("pause_median_us", "pause_p99_us", "pause_max_us"))
                if pm else "—",
                spread(d.series("sampling", cell, build, 21, "cpu_per_sample_us")),
                spread([v / window for v in
                        d.series("sampling", cell, build, 21, "tool_window_cpu_ms")]),
                spread(d.series("sampling", cell, build, 21, "out_bytes"), digits=4),
                split_cell(d, "sampling", cell, build, 21)[2],
                fmt_num(complete_pct(d, "sampling", cell, build, 21), 4),
                spread(d.series("sampling", cell, build, 21, "inline_pct"), digits=4),
                spread(d.series("sampling", cell, build, 21, "rate_lowered")) if pm else "—",
            ])
        base = spread(d.series("sampling", "baseline", build, 21, "ops_per_s"), digits=4)
        cpus = spread(d.series("sampling", "baseline", build, 21, "target_cpus"))
        out.append(f"### Build: {build} (baseline {base} ops/s using {cpus} cpus)\n")
        out.append(table(["cell", "throughput", "achieved Hz", "samples per target cpu-s",
                          "pause µs median/p99/max", "tracer cpu µs/sample",
                          "tracer cpu ms/s", "output bytes", "split % seventy",
                          "complete %", "inline %", "rate lowered"], rows))
    return "\n".join(out)


def traced_section(d, meta):
    rows = []
    for build in ("fp", "nofp"):
        for cell in bench.TRACED_CELLS:
            name = cell + " traced"

            def three(prefix):
                return "/".join(spread(d.series("sampling", name, build, 21, prefix + k))
                                for k in ("_median_us", "_p99_us", "_max_us"))
            rows.append([f"{cell}/{build}", three("kstop"), three("pause"),
                         spread(d.series("sampling", name, build, 21, "kstops"), digits=4),
                         spread(d.series("sampling", name, build, 21, "stops"), digits=4)])
    return ("## Stops as the kernel saw them\n\n"
            f"One more {bench.TRACED_S} s pmprof run per round and build under a system-wide "
            "kernel sched trace: each stop of a target thread from its switch-out in state t "
            "(ptrace-stopped) to its wake-up, against pmprof's own pause figures, which start "
            "when pmprof notices the stop (the kernel's include the time until pmprof ran). "
            "perf -a itself takes cpu here, so read the throughput cells above for cost.\n\n" +
            table(["cell", "kernel: stop µs median/p99/max", "pmprof: pause µs median/p99/max",
                   "stops (kernel)", "stops (pmprof)"], rows))


def scale_section(d, meta, cells):
    threads = meta["config"]["scale_threads"]
    rows = []
    for cell in cells:
        pm = cell.startswith("pmprof")
        rows.append([cell, spread(pct_change(d.ratio("scale", cell, "fp", threads)), suffix=" %"),
                     spread(d.series("scale", cell, "fp", threads, "eff_hz"), digits=4)
                     if pm else "—",
                     "/".join(spread(d.series("scale", cell, "fp", threads, k))
                              for k in ("pause_median_us", "pause_p99_us", "pause_max_us"))
                     if pm else "—",
                     spread(d.series("scale", cell, "fp", threads, "tool_maxrss_kib"), 1 / 1024,
                            suffix=" MiB"),
                     spread(d.series("scale", cell, "fp", threads, "cpu_per_sample_us"))])
    return (f"## Scale: {threads} threads, 4 busy, at 99 Hz\n\n" +
            table(["cell", "throughput", "achieved Hz", "pause µs median/p99/max", "peak RSS",
                   "tracer cpu µs/sample"], rows))


def memory_section(d, meta):
    rows, points = [], []
    for seconds in meta["config"]["memory_s"]:
        cell = f"pmprof wall 999 {seconds}s"
        rss = d.series("memory", cell, "fp", 21, "maxrss_kib")
        n = d.series("memory", cell, "fp", 21, "samples")
        if rss and n:
            points.append((n[0], rss[0]))
        rows.append([cell, fmt_num(n[0] if n else None, 6),
                     spread(d.series("memory", cell, "fp", 21, "eff_hz"), digits=4),
                     spread(rss, 1 / 1024, suffix=" MiB"),
                     spread(d.series("memory", cell, "fp", 21, "out_bytes"), digits=5)])
    text = ("## Memory: pmprof's peak RSS (wait4 ru_maxrss) over longer runs\n\n" +
            table(["run", "thread-samples", "achieved Hz", "peak RSS", "profile bytes"], rows))
    hour = 99 * 3600 * 21
    proj = report_goals.project_rss(points, hour)
    text += f"\nAn hour at 99 Hz in wall mode on 21 threads is {hour:,} thread-samples; "
    if proj is not None:
        text += f"extrapolating linearly from the two runs: about {proj / 1024:.0f} MiB.\n"
    else:
        text += ("the runs took too few samples to extrapolate (the long run needs 5× the short "
                 "one's and 2 % of an hour's).\n")
    return text, proj


def heap_section(d, meta):
    rows = []
    for mb in meta["config"]["heap_mib"]:
        cell = f"pmprof heap {mb} MiB"
        rows.append([cell, spread(d.series("heap", cell, "fp", 21, "heap_s"), digits=4,
                                  suffix=" s"),
                     spread(d.series("heap", cell, "fp", 21, "walked_mb"), digits=5),
                     spread(d.series("heap", cell, "fp", 21, "walk_mib_per_s"), suffix=" MB/s"),
                     spread(d.series("heap", cell, "fp", 21, "stop_us"), 1e-3, digits=4,
                            suffix=" ms"),
                     spread(d.series("heap", cell, "fp", 21, "self_stop_ms"), digits=4,
                            suffix=" ms")])
    return ("## Heap: `pmprof heap` on a glibc heap of small live blocks (32-512 B)\n\n"
            "One run per round under the sched trace (whole run includes starting the trace); "
            "walked and walk speed are pmprof's own figures.\n\n" +
            table(["run", "whole run", "walked MB", "walk speed", "longest stop of a thread",
                   "pmprof's own stop report"], rows))


def main():
    results = sys.argv[1]
    with open(os.path.join(results, "meta.json")) as f:
        meta = json.load(f)
    d = Data(os.path.join(results, "raw.tsv"))
    sampling_cells = list(bench.SAMPLING_CELLS)
    v = meta["versions"]
    print("# pmprof benchmark results\n")
    print(f"Written by `make bench` (bench/run.sh → bench.py → report.py) from "
          f"bench/results/raw.tsv; measured {meta['when']}. Do not edit: re-run `make bench`.\n")
    print(table(["", ""], [
        ["machine", f"{meta['cpu']}, {meta['cpus']} cpus, kernel {meta['kernel']}, glibc "
                    f"{v['glibc']}"],
        ["load average at start / end", " / ".join(
            ", ".join(f"{x:.2f}" for x in meta.get(k, [])) or "—"
            for k in ("loadavg_start", "loadavg_end"))],
        ["cpus busy before the run (2 s, /proc/stat)",
         "—" if meta.get("busy_cpus_start") is None else f"{meta['busy_cpus_start']:.2f}"],
        ["versions", "; ".join(f"{k}: {v[k]}" for k in sorted(v))],
        ["rounds", f"{meta['config']['rounds']} (heap: {meta['config']['heap_rounds']}), "
                   "interleaved, order rotated each round, each with its own baseline"],
        ["run time", fmt_num(d.pooled("run", "total", "", 0, "total_s"), 4) + " s"],
    ]))
    memory_text, proj = memory_section(d, meta)
    goals = report_goals.goals(d, meta, sampling_cells, proj, split_cell, complete_pct, med)
    print(report_goals.render(goals, meta, d))
    print(snapshot_section(d, meta))
    print(sampling_section(d, meta, sampling_cells))
    print(traced_section(d, meta))
    print(scale_section(d, meta, bench.SCALE_CELLS))
    print(memory_text)
    print(heap_section(d, meta))
    print("## Commands\n")
    print(table(["cell", "command"], [[k, f"`{c}`"] for k, c in sorted(meta["commands"].items())]))
    if d.errors:
        print("## Failed or skipped cells\n")
        print(table(["section", "round", "cell", "build", "threads", "what"],
                    [list(e) for e in d.errors]))


if __name__ == "__main__":
    main()
