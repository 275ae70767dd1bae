#!/usr/bin/env python3
"""`make bench`: pmprof against gdb, eu-stack and perf on the reference target, in one
run, interleaved and repeated, each round with its own unprofiled baseline. Every measurement is
appended to RESULTS_DIR/raw.tsv (section, round, cell, build, threads, metric, value) as it is
taken; a cell that fails or times out is recorded as an `error` row and the run goes on.
bench/report.py turns raw.tsv + meta.json into bench/RESULTS.md.

Usage: bench.py --pmprof BIN --target-fp BIN --target-nofp BIN --out DIR [--quick]
Environment: BENCH_ROUNDS (default 3), BENCH_BUDGET_S (default 900)."""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

import benchlib as bl
from benchlib import BenchError

SNAPSHOT_TOOLS = {
    "pmprof stacks": lambda c, pid: [c.pmprof, "stacks", str(pid)],
    "eu-stack -p": lambda c, pid: ["eu-stack", "-p", str(pid)],
    "eu-stack -i -s -p": lambda c, pid: ["eu-stack", "-i", "-s", "-p", str(pid)],
    "gdb bt": lambda c, pid: ["gdb", "-nx", "-batch", "-p", str(pid), "-ex",
                              "thread apply all bt"],
}


def sampler_cmd(kind, rate, mode=None):
    """A sampling cell's command line, given the target pid and the output file."""
    def cmd(c, pid, out):
        if kind == "pmprof":
            # Ended by SIGINT like perf; the duration is only a safety net. cpu: the ptrace
            # backend; cpu-perf: the kernel-sampled one.
            backend = ["--backend", "perf" if mode == "cpu-perf" else "ptrace"]
            # -v: the summary's every figure (rate, pauses, stops), not only its one line.
            return [c.pmprof, "-v", "attach", str(pid), "-r", str(rate), "-m", mode.split("-")[0],
                    "-d", str(int(c.window_s + 60)), "--no-progress", "-o", out] + \
                (backend if mode.startswith("cpu") else [])
        graph = ["-g"] if kind == "perf-fp" else ["--call-graph", "dwarf"]
        return ["perf", "record", "-q"] + graph + ["-F", str(rate), "-p", str(pid), "-o", out]
    return cmd


SAMPLING_CELLS = {
    "pmprof wall 99": sampler_cmd("pmprof", 99, "wall"),
    "pmprof cpu 99": sampler_cmd("pmprof", 99, "cpu"),
    "pmprof cpu-perf 99": sampler_cmd("pmprof", 99, "cpu-perf"),
    "perf fp 99": sampler_cmd("perf-fp", 99),
    "perf dwarf 99": sampler_cmd("perf-dwarf", 99),
    "pmprof wall 999": sampler_cmd("pmprof", 999, "wall"),
    "pmprof cpu 999": sampler_cmd("pmprof", 999, "cpu"),
    "pmprof cpu-perf 999": sampler_cmd("pmprof", 999, "cpu-perf"),
    "perf fp 999": sampler_cmd("perf-fp", 999),
    "perf dwarf 999": sampler_cmd("perf-dwarf", 999),
}
# Run once more per round and build under a kernel sched trace, for the stops as the kernel saw
# them (TRACED_S seconds each, not interleaved with the throughput cells: perf -a costs cpu).
TRACED_CELLS = ["pmprof wall 99", "pmprof cpu 999"]
TRACED_S = 2
SCALE_CELLS = ["pmprof wall 99", "pmprof cpu 99", "perf dwarf 99"]

_SUMMARY = [
    ("samples", r"pmprof: (\d+) samples from"),
    ("threads_seen", r"samples from (\d+) threads"),
    ("sampling_s", r"threads in ([\d.]+) s \("),
    ("eff_hz", r"([\d.]+) Hz effective"),
    ("pause_median_us", r"median (\d+) us"),
    ("pause_p99_us", r"p99 (\d+) us"),
    ("pause_max_us", r"max (\d+) us"),
    ("stops", r"max \d+ us \((\d+) stops"),
    ("stops_avoided", r"stops avoided: (\d+)"),
    ("unwind_failures", r"(\d+) unwind failures"),
    ("not_captured", r"(\d+) threads not captured"),
]


class Recorder:
    """Appends rows to raw.tsv; one instance per run."""

    def __init__(self, path):
        self.f = open(path, "w")
        self.f.write("section\tround\tcell\tbuild\tthreads\tmetric\tvalue\n")
        self.where = ("", 0, "", "", 0)

    def at(self, section, rnd, cell, build, threads):
        self.where = (section, rnd, cell, build, threads)

    def put(self, metric, value):
        if isinstance(value, float):
            value = f"{value:.6g}"
        text = re.sub(r"\s+", " ", str(value)).strip()
        self.f.write("\t".join(str(x) for x in self.where) + f"\t{metric}\t{text}\n")
        self.f.flush()

    def error(self, what):
        self.put("error", what)
        print(f"bench: {' / '.join(str(x) for x in self.where)}: {what}", file=sys.stderr)


class Bench:
    def __init__(self, args):
        self.pmprof = os.path.abspath(args.pmprof)
        self.targets = {"fp": os.path.abspath(args.target_fp),
                        "nofp": os.path.abspath(args.target_nofp)}
        self.out = os.path.abspath(args.out)
        self.work = os.path.join(self.out, "work")
        os.makedirs(self.work, exist_ok=True)
        quick = args.quick
        self.rounds = int(os.environ.get("BENCH_ROUNDS", "1" if quick else "3"))
        # 5 s: at 99 Hz, 3 rounds give ~6000 busy-thread samples per cell, a ±1.2 point 95 %
        # interval on the 70/30 split (the goal is 1 point).
        self.window_s = 1.0 if quick else 5.0
        self.snap_window_s = 1.0 if quick else 2.5
        self.snap_threads = [21, 100] if quick else [21, 100, 1000]
        self.scale_threads = 200 if quick else 1000
        self.memory_s = (2, 6) if quick else (5, 40)
        self.heap_mb = [20] if quick else [100, 1024]
        self.heap_rounds = 1 if quick else 2
        self.start = time.monotonic()
        self.deadline = self.start + float(os.environ.get("BENCH_BUDGET_S", "1000"))
        # Section shares of the budget, in run order; an unspent share passes to the next.
        self.shares = {"snapshot": 0.28, "sampling": 0.45, "scale": 0.10, "memory": 0.08,
                       "heap": 0.09}
        self.rec = Recorder(os.path.join(self.out, "raw.tsv"))
        self.env = dict(os.environ)
        self.env.pop("DEBUGINFOD_URLS", None)  # no network lookups for any tool

    # ---- helpers -----------------------------------------------------------------------------
    def section_deadline(self, name):
        """This section's share of the time left, among the sections still to run."""
        left = self.sections[self.sections.index(name):]
        share = self.shares[name] / sum(self.shares[k] for k in left)
        return time.monotonic() + (self.deadline - time.monotonic()) * share

    def path(self, name):
        return os.path.join(self.work, name)

    def clean_work(self):
        for name in os.listdir(self.work):
            p = os.path.join(self.work, name)
            if os.path.isfile(p) and not name.startswith("target."):
                os.unlink(p)

    def rotated(self, cells, rnd):
        k = rnd % len(cells)
        return cells[k:] + cells[:k]

    def open_target(self, deadline, build, **kwargs):
        """A started reference target, or None (recorded) when over budget or it fails."""
        if time.monotonic() > deadline:
            self.rec.error("skipped: section time budget spent")
            return None
        try:
            return bl.Target(self.targets[build], self.work, **kwargs)
        except (BenchError, OSError) as e:
            self.rec.error(f"{type(e).__name__}: {e}")
            return None

    def baseline(self, target, window_s=None):
        s0 = target.stats()
        time.sleep(window_s or self.window_s)
        ops, cpus = bl.throughput(s0, target.stats())
        self.rec.put("ops_per_s", ops)
        self.rec.put("target_cpus", cpus)

    # ---- snapshot ----------------------------------------------------------------------------
    def snapshot_loop(self, target, name):
        """Runs the tool back to back for the window: throughput while looped, time per run.
        Returns the median time per run in ms."""
        cmd = SNAPSHOT_TOOLS[name](self, target.pid)
        out, err = self.path("snap.out"), self.path("snap.err")
        times, valid = [], None
        s0 = target.stats()
        end = time.monotonic() + self.snap_window_s
        while True:
            r = bl.run(cmd, 90, stdout=out, stderr=err, env=self.env)
            if r.timed_out or r.rc not in (0, 1):
                raise BenchError(f"{name}: {'timed out after 90 s' if r.timed_out else 'rc %d' % r.rc}")
            times.append(r.wall_s * 1e3)
            if valid is None:
                with open(out, errors="replace") as f:
                    text = f.read()
                valid = int("busy_main" in text and "idle_read_main" in text)
            if time.monotonic() >= end:
                break
        ops, cpus = bl.throughput(s0, target.stats())
        self.rec.put("ops_per_s", ops)
        self.rec.put("target_cpus", cpus)
        median_ms = statistics.median(times)
        self.rec.put("snap_ms", median_ms)
        self.rec.put("snap_runs", len(times))
        self.rec.put("valid_output", valid)
        if name == "pmprof stacks":
            with open(err, errors="replace") as f:
                m = re.search(r"target stopped (\d+) us at most per thread", f.read())
            if m:
                self.rec.put("self_stop_us", int(m.group(1)))
        return median_ms

    def snapshot_stop_window(self, target, name):
        data = self.path("sched.data")
        cmd = bl.sched_trace_cmd(data, SNAPSHOT_TOOLS[name](self, target.pid))
        r = bl.run(cmd, 120, stdout=self.path("snap.out"), stderr=self.path("snap.err"),
                   env=self.env)
        if r.timed_out or r.rc not in (0, 1):
            raise BenchError(f"sched-traced {name}: {'timeout' if r.timed_out else 'rc %d' % r.rc}")
        longest, span, stops = bl.stop_windows(data, target.tids())
        self.rec.put("stop_us", longest)
        self.rec.put("stop_span_us", span)
        self.rec.put("traced_stops", stops)

    def section_snapshot(self):
        deadline = self.section_deadline("snapshot")
        for rnd in range(1, self.rounds + 1):
            for threads in self.snap_threads:
                self.rec.at("snapshot", rnd, "baseline", "fp", threads)
                target = self.open_target(deadline, "fp", idle=threads - 5)
                if not target:
                    continue
                with target:
                    self.guarded(lambda: self.baseline(target, self.snap_window_s))
                    for name in self.rotated(list(SNAPSHOT_TOOLS), rnd):
                        self.rec.at("snapshot", rnd, name, "fp", threads)
                        if time.monotonic() > deadline:
                            self.rec.error("skipped: section time budget spent")
                            continue
                        ms = self.guarded(lambda: self.snapshot_loop(target, name))
                        if ms is not None and ms > 10_000:
                            # Bounded run time: a tool this slow keeps threads stopped for about
                            # its run time anyway; the loop above measured it.
                            self.rec.error("stop window not traced: one run takes over 10 s")
                            continue
                        self.guarded(lambda: self.snapshot_stop_window(target, name))
                self.clean_work()

    # ---- sampling ----------------------------------------------------------------------------
    def sampling_cell(self, target, name, cmd_of, analyze=True):
        is_perf = name.startswith("perf")
        out = self.path("perf.data" if is_perf else "profile.pb.gz")
        err = self.path("tool.err")
        if os.path.exists(out):
            os.unlink(out)
        tool = bl.Background(cmd_of(self, target.pid, out), stderr=err, env=self.env)
        try:
            self.wait_started(tool, target, is_perf, out)
            c0, s0 = bl.process_cpu_ns(tool.proc.pid), target.stats()
            time.sleep(self.window_s)
            s1, c1 = target.stats(), bl.process_cpu_ns(tool.proc.pid)
        finally:
            done = tool.finish(signal.SIGINT, timeout=120)
        ops, cpus = bl.throughput(s0, s1)
        self.rec.put("ops_per_s", ops)
        self.rec.put("target_cpus", cpus)
        # perf re-raises the SIGINT it handled (rc -2) once its file is complete.
        if done.timed_out or done.rc not in (0, 1, -signal.SIGINT):
            raise BenchError(f"{name} ended with {'a timeout' if done.timed_out else 'rc %d' % done.rc}")
        self.rec.put("tool_wall_s", done.wall_s)
        self.rec.put("tool_cpu_total_s", done.cpu_s)
        self.rec.put("tool_window_cpu_ms", (c1 - c0) / 1e6)
        self.rec.put("tool_maxrss_kib", done.maxrss_kib)
        self.rec.put("out_bytes", os.path.getsize(out) if os.path.exists(out) else 0)
        if is_perf:
            m = bl.perf_stack_counts(out, self.work) if analyze else {}
            samples = m.pop("samples", None)
        else:
            m = self.pmprof_summary(err)
            samples = m.get("samples")
            if analyze:
                m.update(bl.pmprof_stack_counts(self.pmprof, out, self.work))
        for k, v in m.items():
            self.rec.put(k, v)
        if samples:
            if is_perf:
                self.rec.put("samples", samples)
            # The window's share of the tool's samples, assuming an even rate over its sampling
            # time (pmprof reports it; perf starts sampling at once).
            span = m.get("sampling_s") or done.wall_s
            in_window = samples * self.window_s / max(span, self.window_s)
            self.rec.put("cpu_per_sample_us", (c1 - c0) / 1e3 / in_window)
            # Samples per second of the target's cpu time: the rate perf -F and pmprof's cpu
            # mode aim at (pmprof's ticks per second is the wall-mode rate).
            if cpus:
                self.rec.put("hz_per_cpu_s", in_window / (cpus * self.window_s))

    def wait_started(self, tool, target, is_perf, out):
        """Until the tool samples: pmprof has seized the target (TracerPid), perf has written its
        header; then a short settling time for both."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not tool.running():
                raise BenchError(f"the tool exited early with rc {tool.early.rc}")
            if is_perf:
                if os.path.exists(out) and os.path.getsize(out) > 0:
                    break
            elif self.traced_by(target.pid, tool.proc.pid) or self.has_perf_events(tool):
                break
            time.sleep(0.01)
        else:
            raise BenchError("the tool did not start sampling within 30 s")
        time.sleep(0.5)

    @staticmethod
    def has_perf_events(tool):
        """pmprof's perf backend traces nothing: it samples once it holds perf event fds."""
        try:
            fds = os.listdir(f"/proc/{tool.proc.pid}/fd")
        except OSError:
            return False
        for fd in fds:
            try:
                if os.readlink(f"/proc/{tool.proc.pid}/fd/{fd}") == "anon_inode:[perf_event]":
                    return True
            except OSError:
                pass
        return False

    @classmethod
    def traced_by(cls, pid, tool_pid):
        """The target's tracer is a thread of the tool (pmprof seizes on a tracer thread of its
        own, and TracerPid names that thread)."""
        tracer = cls.tracer_of(pid)
        try:
            return tracer != 0 and str(tracer) in os.listdir(f"/proc/{tool_pid}/task")
        except OSError:
            return False

    @staticmethod
    def tracer_of(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                m = re.search(r"^TracerPid:\s*(\d+)", f.read(), re.M)
            return int(m.group(1)) if m else 0
        except OSError:
            return 0

    @staticmethod
    def pmprof_summary(err_path):
        with open(err_path, errors="replace") as f:
            text = f.read()
        m = {}
        for key, pattern in _SUMMARY:
            found = re.search(pattern, text)
            if found:
                m[key] = float(found.group(1)) if "." in found.group(1) else int(found.group(1))
        m["rate_lowered"] = int("lowered by the pause budget" in text)
        if "samples" not in m:
            raise BenchError("no pmprof summary on stderr: " + text[-300:])
        return m

    def section_sampling(self):
        deadline = self.section_deadline("sampling")
        for rnd in range(1, self.rounds + 1):
            for build in ("fp", "nofp"):
                self.rec.at("sampling", rnd, "baseline", build, 21)
                target = self.open_target(deadline, build)
                if not target:
                    continue
                with target:
                    self.guarded(lambda: self.baseline(target))
                    for name in self.rotated(list(SAMPLING_CELLS), rnd):
                        self.rec.at("sampling", rnd, name, build, 21)
                        if time.monotonic() > deadline:
                            self.rec.error("skipped: section time budget spent")
                            continue
                        self.guarded(lambda: self.sampling_cell(target, name,
                                                                SAMPLING_CELLS[name]))
                    for name in TRACED_CELLS:
                        self.rec.at("sampling", rnd, name + " traced", build, 21)
                        if time.monotonic() > deadline:
                            self.rec.error("skipped: section time budget spent")
                            continue
                        self.guarded(lambda: self.traced_sampling(target, name))
                self.clean_work()

    def traced_sampling(self, target, name):
        """One short pmprof run under the kernel's sched trace: every stop of a target thread as
        the kernel saw it (switched out in state t until woken), against pmprof's own pause
        figures, which start when the tracer notices the stop."""
        _, mode, rate = name.split()  # "pmprof cpu 999"
        data, err = self.path("sched.data"), self.path("tool.err")
        cmd = [self.pmprof, "-v", "attach", str(target.pid), "-r", rate, "-m", mode, "-d",
               str(TRACED_S), "--no-progress", "-o", self.path("profile.pb.gz")]
        if mode == "cpu":
            cmd += ["--backend", "ptrace"]  # the stops are what this cell measures
        r = bl.run(bl.sched_trace_cmd(data, cmd), 120, stderr=err, env=self.env)
        if r.timed_out or r.rc not in (0, 1):
            raise BenchError(f"sched-traced {name}: {'timeout' if r.timed_out else 'rc %d' % r.rc}")
        own = self.pmprof_summary(err)
        for k in ("pause_median_us", "pause_p99_us", "pause_max_us", "stops"):
            if k in own:
                self.rec.put(k, own[k])
        stops = bl.stop_durations(data, target.tids())
        self.rec.put("kstops", len(stops))
        self.rec.put("kstop_median_us", bl.quantile(stops, 0.5))
        self.rec.put("kstop_p99_us", bl.quantile(stops, 0.99))
        self.rec.put("kstop_max_us", stops[-1])

    # ---- scale, memory, heap -----------------------------------------------------------------
    def section_scale(self):
        deadline = self.section_deadline("scale")
        threads = self.scale_threads
        for rnd in range(1, self.rounds + 1):
            self.rec.at("scale", rnd, "baseline", "fp", threads)
            target = self.open_target(deadline, "fp", idle=threads - 5)
            if not target:
                continue
            with target:
                self.guarded(lambda: self.baseline(target))
                for name in self.rotated(SCALE_CELLS, rnd):
                    self.rec.at("scale", rnd, name, "fp", threads)
                    if time.monotonic() > deadline:
                        self.rec.error("skipped: section time budget spent")
                        continue
                    self.guarded(lambda: self.sampling_cell(target, name, SAMPLING_CELLS[name],
                                                            analyze=False))
            self.clean_work()

    def section_memory(self):
        """pmprof's peak RSS (wait4 ru_maxrss) for a short and a long run at 999 Hz wall mode:
        report.py extrapolates the growth per sample to an hour at 99 Hz."""
        deadline = self.section_deadline("memory")
        self.rec.at("memory", 1, "target", "fp", 21)
        target = self.open_target(deadline, "fp")
        if not target:
            return
        with target:
            for seconds in self.memory_s:
                self.rec.at("memory", 1, f"pmprof wall 999 {seconds}s", "fp", 21)
                if time.monotonic() + seconds > deadline:
                    self.rec.error("skipped: section time budget spent")
                    continue
                err = self.path("tool.err")
                cmd = [self.pmprof, "-v", "attach", str(target.pid), "-r", "999", "-m", "wall",
                       "-d", f"{seconds}s", "--no-progress", "-o", self.path("profile.pb.gz")]

                def one():
                    r = bl.run(cmd, seconds + 120, stderr=err, env=self.env)
                    if r.timed_out or r.rc not in (0, 1):
                        raise BenchError(f"pmprof attach: {'timeout' if r.timed_out else r.rc}")
                    self.rec.put("maxrss_kib", r.maxrss_kib)
                    self.rec.put("duration_s", seconds)
                    self.rec.put("out_bytes", os.path.getsize(self.path("profile.pb.gz")))
                    for k, v in self.pmprof_summary(err).items():
                        self.rec.put(k, v)
                self.guarded(one)
        self.clean_work()

    def section_heap(self):
        deadline = self.section_deadline("heap")
        for rnd in range(1, self.heap_rounds + 1):
            for mb in self.heap_mb:
                self.rec.at("heap", rnd, f"pmprof heap {mb} MiB", "fp", 21)
                target = self.open_target(deadline, "fp", heap_mb=mb, ready_timeout=300)
                if not target:
                    continue
                with target:
                    self.rec.put("heap_mib", mb)
                    self.guarded(lambda: self.heap_once(target, mb))
                self.clean_work()

    def heap_once(self, target, mb):
        """One run under the sched trace (a 1 GiB walk is too slow to run twice): whole run time,
        pmprof's own walk figures, and the longest stop of a target thread."""
        err, data = self.path("heap.err"), self.path("sched.data")
        cmd = [self.pmprof, "heap", str(target.pid), "-o", self.path("heap.txt")]
        r = bl.run(bl.sched_trace_cmd(data, cmd), 300, stderr=err, env=self.env)
        with open(err, errors="replace") as f:
            text = f.read()
        if r.timed_out or r.rc not in (0, 1):
            raise BenchError(f"pmprof heap: {'timeout' if r.timed_out else 'rc %d' % r.rc}: "
                             + text[-300:])
        self.rec.put("heap_s", r.wall_s)
        m = re.search(r"target stopped ([\d.]+) ms, walked ([\d.]+) MB in ([\d.]+) ms", text)
        if m:
            self.rec.put("self_stop_ms", float(m.group(1)))
            self.rec.put("walked_mb", float(m.group(2)))
            self.rec.put("walk_mib_per_s", float(m.group(2)) / (float(m.group(3)) / 1e3))
        longest, span, stops = bl.stop_windows(data, target.tids())
        self.rec.put("stop_us", longest)
        self.rec.put("traced_stops", stops)

    # ---- driver ------------------------------------------------------------------------------
    def guarded(self, fn):
        """fn()'s value, or None after recording its failure as this cell's error."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - any failure is this cell's, never the run's
            self.rec.error(f"{type(e).__name__}: {e}")
            return None

    def run(self, sections):
        self.sections = [s for s in self.shares if s in sections]
        for name in self.sections:
            print(f"bench: {name} ({time.monotonic() - self.start:.0f} s so far)", file=sys.stderr)
            section_start = time.monotonic()
            try:
                getattr(self, "section_" + name)()
            except Exception as e:  # noqa: BLE001 - a broken section must not stop the others
                self.rec.at(name, 0, "section", "", 0)
                self.rec.error(f"{type(e).__name__}: {e}")
            self.rec.at(name, 0, "section", "", 0)
            self.rec.put("section_s", time.monotonic() - section_start)
        self.rec.at("run", 0, "total", "", 0)
        self.rec.put("total_s", time.monotonic() - self.start)


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unavailable"


def write_meta(bench, path, when):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    meta = {
        "when": when, "host": platform.node(), "kernel": platform.release(), "cpu": cpu,
        "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
        "busy_cpus_start": bl.busy_cpus(),
        "versions": {
            "pmprof": version([bench.pmprof, "--version"]), "gdb": version(["gdb", "--version"]),
            "eu-stack": version(["eu-stack", "--version"]), "perf": version(["perf", "--version"]),
            "g++": version(["g++", "--version"]), "glibc": platform.libc_ver()[1],
        },
        "config": {"rounds": bench.rounds, "window_s": bench.window_s,
                   "snapshot_window_s": bench.snap_window_s,
                   "snapshot_threads": bench.snap_threads, "scale_threads": bench.scale_threads,
                   "memory_s": bench.memory_s, "heap_mib": bench.heap_mb,
                   "heap_rounds": bench.heap_rounds,
                   "budget_s": round(bench.deadline - bench.start)},
        "commands": {
            **{k: shlex.join(f(bench, "PID")) for k, f in SNAPSHOT_TOOLS.items()},
            **{k: shlex.join(f(bench, "PID", "OUT")) for k, f in SAMPLING_CELLS.items()},
            "stop window": shlex.join(bl.sched_trace_cmd("sched.data", ["TOOL", "ARGS"])),
            "pmprof heap": f"{bench.pmprof} heap PID -o heap.txt",
        },
    }
    for k in list(meta["commands"]):
        meta["commands"][k] = meta["commands"][k].replace(bench.pmprof, "pmprof")
    with open(path, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pmprof", required=True)
    ap.add_argument("--target-fp", required=True)
    ap.add_argument("--target-nofp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="one short round (script development)")
    ap.add_argument("--sections", default="snapshot,sampling,scale,memory,heap")
    args = ap.parse_args()
    for tool in ("perf", "eu-stack", "gdb"):
        if not shutil.which(tool):
            print(f"bench: {tool} not found (make installs the bench packages)", file=sys.stderr)
    # SIGTERM/SIGINT/SIGHUP end the run through the finally below: every process reaped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    bench = Bench(args)
    meta = write_meta(bench, os.path.join(bench.out, "meta.json"),
                      time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    try:
        bench.run([s for s in args.sections.split(",") if s])
    finally:
        bl.kill_everything()
        meta["loadavg_end"] = os.getloadavg()
        with open(os.path.join(bench.out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    main()
