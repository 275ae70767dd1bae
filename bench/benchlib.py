"""Process plumbing for bench/bench.py: commands run with a timeout in their own process group
(killed as a group and reaped whatever happens), the reference target with its stats protocol,
the kernel sched trace that measures how long target threads stay ptrace-stopped, and the
parsers for pmprof's and perf's stacks (attribution split, complete stacks)."""

import math
import os
import re
import select
import signal
import subprocess
import time


class BenchError(Exception):
    """A cell that could not be measured; recorded as a failed cell, never an abort."""


_LIVE = {}  # pid -> Popen: every process group we started and have not reaped yet


def _spawn(cmd, stdout=None, stderr=None, env=None):
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL
    err = open(stderr, "wb") if stderr else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env, start_new_session=True)
    finally:
        if stdout:
            out.close()
        if stderr:
            err.close()
    _LIVE[proc.pid] = proc
    return proc


def _kill_group(pid, sig=signal.SIGKILL):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Finished:
    """How a command ended: rc (None on timeout), wall seconds, cpu seconds, peak RSS in KiB."""

    def __init__(self, rc, wall_s, rusage):
        self.rc = rc
        self.wall_s = wall_s
        self.cpu_s = rusage.ru_utime + rusage.ru_stime if rusage else 0.0
        self.maxrss_kib = rusage.ru_maxrss if rusage else 0

    @property
    def timed_out(self):
        return self.rc is None


def _reap(proc, deadline):
    """wait4 the child until `deadline` (monotonic); returns (status, rusage) or None on timeout.
    It sleeps in poll() on a pidfd, which wakes the moment the child exits: a sleep-and-retry
    loop added up to its period (2 ms, a sixth of a `pmprof stacks` run) to every timing."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:
        pidfd = None
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                _LIVE.pop(proc.pid, None)
                return status, rusage
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if pidfd is None:
                time.sleep(min(left, 0.002))
            else:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                poller.poll(max(1, int(left * 1000)))
    finally:
        if pidfd is not None:
            os.close(pidfd)


class Background:
    """A tool left running while the target is measured (pmprof attach, perf record)."""

    def __init__(self, cmd, stdout=None, stderr=None, env=None):
        self.start = time.monotonic()
        self.proc = _spawn(cmd, stdout, stderr, env)

    def running(self):
        pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == self.proc.pid:
            _LIVE.pop(pid, None)
            self.early = Finished(os.waitstatus_to_exitcode(status),
                                  time.monotonic() - self.start, rusage)
            return False
        return True

    def cpu_seconds(self):
        """utime + stime of the whole process so far (/proc/PID/stat fields 14-15)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def finish(self, sig=signal.SIGINT, timeout=60.0):
        """Sends `sig` to the tool alone, waits; on timeout kills its group. Always reaps."""
        if getattr(self, "early", None):
            return self.early
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        got = _reap(self.proc, time.monotonic() + timeout)
        if got is None:
            _kill_group(self.proc.pid)
            _reap(self.proc, time.monotonic() + 30)
            return Finished(None, time.monotonic() - self.start, None)
        return Finished(os.waitstatus_to_exitcode(got[0]), time.monotonic() - self.start, got[1])


def run(cmd, timeout, stdout=None, stderr=None, env=None):
    """Runs `cmd` to its end or `timeout` seconds (then its whole group is SIGKILLed)."""
    start = time.monotonic()
    proc = _spawn(cmd, stdout, stderr, env)
    got = _reap(proc, start + timeout)
    if got is None:
        _kill_group(proc.pid)
        _reap(proc, time.monotonic() + 30)
        return Finished(None, time.monotonic() - start, None)
    # Leftover members of the group (a tool's own children) must not outlive the cell.
    _kill_group(proc.pid)
    return Finished(os.waitstatus_to_exitcode(got[0]), time.monotonic() - start, got[1])


def kill_everything():
    """Last resort on exit: SIGKILL every group still alive and reap it. Killing a tracer makes
    the kernel detach and resume its tracees, so no target stays stopped."""
    for pid, proc in list(_LIVE.items()):
        _kill_group(pid)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        _LIVE.pop(pid, None)


class Target:
    """The reference target: started, asked for stats by SIGUSR1, always terminated and reaped."""

    def __init__(self, binary, workdir, busy=4, idle=16, heap_mb=0, ready_timeout=120.0):
        os.makedirs(workdir, exist_ok=True)
        self.stats_path = os.path.join(workdir, "target.stats")
        ready_path = os.path.join(workdir, "target.ready")
        for p in (self.stats_path, ready_path):
            if os.path.exists(p):
                os.unlink(p)
        cmd = [binary, "--busy", str(busy), "--idle", str(idle), "--stats", self.stats_path,
               "--ready", ready_path]
        if heap_mb:
            cmd += ["--heap-mb", str(heap_mb)]
        self.proc = _spawn(cmd, stderr=os.path.join(workdir, "target.err"))
        self.pid = self.proc.pid
        self.threads = busy + idle + 1
        self._seq = 0
        deadline = time.monotonic() + ready_timeout
        while not (os.path.exists(ready_path) and os.path.getsize(ready_path) > 0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BenchError(f"reference target {binary} did not get ready")
            time.sleep(0.01)
        while len(self.tids()) < self.threads and time.monotonic() < deadline:
            time.sleep(0.01)

    def tids(self):
        try:
            return {int(t) for t in os.listdir(f"/proc/{self.pid}/task")}
        except OSError:
            return set()

    def stats(self, timeout=15.0):
        """(monotonic ns, ops, process cpu ns) right now, from the target itself."""
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.stats_path) as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:  # no answer written yet
                lines = []
            for line in reversed(lines):
                parts = line.split()
                if len(parts) == 5 and parts[0] == "stats" and int(parts[1]) > self._seq:
                    self._seq = int(parts[1])
                    return int(parts[2]), int(parts[3]), int(parts[4])
            if self.proc.poll() is not None:
                raise BenchError("the reference target died")
            time.sleep(0.002)
        raise BenchError("the reference target did not answer SIGUSR1")

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(self.pid)
                self.proc.wait(timeout=30)
        _LIVE.pop(self.pid, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def throughput(s0, s1):
    """ops per second and cpus used by the target between two stats() answers."""
    dt = (s1[0] - s0[0]) / 1e9
    if dt <= 0:
        raise BenchError("stats window of zero length")
    return (s1[1] - s0[1]) / dt, (s1[2] - s0[2]) / 1e9 / dt


_SWITCH = re.compile(r"sched_switch: .*prev_pid=(\d+) .*prev_state=(\S+) ==> .*next_pid=(\d+)")
_WAKING = re.compile(r"sched_waking: .*pid=(\d+) ")


def sched_trace_cmd(data_path, cmd):
    """`cmd` run under a system-wide trace of context switches and wake-ups."""
    return ["perf", "record", "-q", "-a", "-e", "sched:sched_switch", "-e", "sched:sched_waking",
            "-o", data_path, "--"] + cmd


def _stops(data_path, tids, timeout):
    """Every ptrace stop of the target in a sched trace, as (stopped_at, woken_at) in seconds:
    a thread switched out in state t (sched.h TASK_TRACED) until it is woken again."""
    out_path = data_path + ".txt"
    r = run(["perf", "script", "-i", data_path, "-F", "time,event,trace"], timeout,
            stdout=out_path)
    if r.rc != 0:
        raise BenchError(f"perf script on the sched trace: rc {r.rc}")
    stopped_at, stops = {}, []
    with open(out_path, errors="replace") as f:
        for line in f:
            head = line.split(":", 1)[0].strip()
            try:
                t = float(head)
            except ValueError:
                continue
            m = _SWITCH.search(line)
            if m:
                tid = int(m.group(1))
                if tid in tids and m.group(2).startswith("t") and tid not in stopped_at:
                    stopped_at[tid] = t
                continue
            m = _WAKING.search(line)
            if m and int(m.group(1)) in stopped_at:
                stops.append((stopped_at.pop(int(m.group(1))), t))
    os.unlink(out_path)
    if not stops:
        raise BenchError("no ptrace stop of the target in the sched trace")
    return stops


def stop_windows(data_path, tids, timeout=120):
    """The longest stop of one thread, the span from the first stop to the last wake-up (both
    in us) and the number of stops."""
    stops = _stops(data_path, tids, timeout)
    longest = max(woken - stopped for stopped, woken in stops)
    span = max(w for _, w in stops) - min(s for s, _ in stops)
    return longest * 1e6, span * 1e6, len(stops)


def stop_durations(data_path, tids, timeout=120):
    """Every ptrace stop's duration in us, as the kernel saw it (what a sampler's own pause
    figure leaves out: the time until the tracer ran to notice the stop)."""
    return sorted((woken - stopped) * 1e6 for stopped, woken in _stops(data_path, tids, timeout))


def quantile(sorted_xs, q):
    """The smallest value with at least q of the values at or below it."""
    if not sorted_xs:
        return None
    return sorted_xs[min(len(sorted_xs) - 1, max(0, math.ceil(q * len(sorted_xs)) - 1))]


class StackCounts:
    """Thread-samples of the busy threads: how many end in each work function, how many reach
    the thread's entry function (complete), how many show the inlined helper."""

    def __init__(self):
        self.busy = self.seventy = self.thirty = self.complete = self.inlined = 0

    def add(self, frames_text, weight):
        self.busy += weight
        if "work_seventy" in frames_text:
            self.seventy += weight
        elif "work_thirty" in frames_text:
            self.thirty += weight
        if "busy_main" in frames_text:
            self.complete += weight
        if "spin_units" in frames_text:
            self.inlined += weight

    def metrics(self):
        work = self.seventy + self.thirty
        if self.busy == 0 or work == 0:
            raise BenchError("no busy-thread samples in the work functions")
        return {"busy_samples": self.busy, "seventy_samples": self.seventy,
                "thirty_samples": self.thirty, "complete_samples": self.complete,
                "split_pct": 100.0 * self.seventy / work,
                "complete_pct": 100.0 * self.complete / self.busy,
                "inline_pct": 100.0 * self.inlined / work}


def pmprof_stack_counts(pmprof, profile, workdir, timeout=120):
    folded = os.path.join(workdir, "profile.folded")
    r = run([pmprof, "report", profile, "--sample-index", "samples", "-f", "folded",
             "--per-thread", "-o", folded], timeout)
    if r.rc != 0:
        raise BenchError(f"pmprof report -f folded: rc {r.rc}")
    counts = StackCounts()
    with open(folded, errors="replace") as f:
        for line in f:
            frames, _, weight = line.rstrip("\n").rpartition(" ")
            if frames.startswith("busy-"):
                counts.add(frames, int(weight))
    os.unlink(folded)
    return counts.metrics()


def perf_stack_counts(data_path, workdir, timeout=300):
    """Samples from `perf script`: a header line per sample, then one indented line per frame."""
    text = os.path.join(workdir, "perf.script")
    r = run(["perf", "script", "-i", data_path, "-F", "comm,tid,ip,sym"], timeout, stdout=text)
    if r.rc != 0:
        raise BenchError(f"perf script: rc {'timeout' if r.timed_out else r.rc}")
    counts, total, comm, frames = StackCounts(), 0, None, []

    def flush():
        if comm is not None and comm.startswith("busy-"):
            counts.add(";".join(frames), 1)

    with open(text, errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            if line[0] in " \t":
                frames.append(line.split(None, 1)[-1].strip())
            else:
                flush()
                total += 1
                comm, frames = line.split()[0], []
    flush()
    os.unlink(text)
    m = counts.metrics()
    m["samples"] = total
    return m


def process_cpu_ns(pid):
    """On-cpu nanoseconds of every live thread of `pid` (/proc/PID/task/TID/schedstat field 1):
    nanosecond resolution, unlike the clock ticks of /proc/PID/stat."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def busy_cpus(seconds=2.0):
    """How many cpus were busy (not idle, not waiting for I/O) over the next `seconds`, from
    /proc/stat: what other processes take from the run. The load average is no measure of that
    here: it decays over minutes, and counts the reference target's own busy threads."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]), idle  # user..steal; guest time is already in user
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return (total - (idle1 - idle0)) / total * (os.cpu_count() or 1) if total > 0 else None
