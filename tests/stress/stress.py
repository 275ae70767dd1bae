#!/usr/bin/env python3
"""The fault suite behind `make stress`: loops pmprof through the faults a profiler meets in the
field and checks rule zero after every run.

Each case starts a target from build/targets (or reuses one), runs one or more pmprof verbs
against it while doing something hostile (the target exits, threads churn, signals fly, pmprof
is killed with -9, the leader is a zombie, a thread sits in D state, seccomp denies a call,
thousands of threads, corrupted profiles, hostile HTTP requests), and then asserts, within 1 s
of pmprof's end:

  - pmprof was not killed by a signal it did not get from us, and exited below 128;
  - the target is alive (unless the case makes it exit) and none of its threads is in a
    ptrace-stop or job-control stop it was not in before (/proc/PID/task/*/stat);
  - no thread of the target has a tracer (TracerPid 0), and no process pmprof started is left;
  - the output file is either absent or valid (pprofcheck for pprof, json.loads for json,
    non-empty for text).

Usage: tests/stress/stress.py [--loops N] [--cases a,b] [--build DIR] [--seed S] [--list]
Exit status 0 when every run of every case passed; otherwise each failure is printed with the
case, the run, the command and its stderr, and the status is 1.
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Failure(Exception):
    pass


class Ctx:
    def __init__(self, build, tmp, rng):
        self.build = build
        self.tmp = tmp
        self.rng = rng
        self.pmprof = os.path.join(build, "pmprof")
        self.serve = os.path.join(build, "pmprof-serve")
        self.pprofcheck = os.path.join(build, "pprofcheck")
        self.seccomp = os.path.join(build, "seccomp_exec")

    def target_bin(self, name, fp=True):
        return os.path.join(self.build, "targets", f"{name}-{'fp' if fp else 'nofp'}")

    def out(self, name):
        return os.path.join(self.tmp, name)


# ---- processes --------------------------------------------------------------------------------


class Target:
    """A test target started with the harness pipe (PMPROF_READY_FD); `ready` is its first line."""

    def __init__(self, argv, ready_timeout=30):
        r, w = os.pipe()
        env = dict(os.environ, PMPROF_READY_FD=str(w))
        self.proc = subprocess.Popen(argv, pass_fds=(w,), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(w)
        self.pipe = os.fdopen(r, "r")
        self.pid = self.proc.pid
        self.argv = argv
        self.ready = self.read_line(ready_timeout)
        if not self.ready.startswith("ready"):
            self.kill()
            raise Failure(f"{argv[0]}: no ready line (got {self.ready!r})")
        self.fields = dict(w.split("=", 1) for w in self.ready.split() if "=" in w)

    def read_line(self, timeout):
        import select
        ready, _, _ = select.select([self.pipe], [], [], timeout)
        return self.pipe.readline().strip() if ready else ""

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.pipe.close()


def run(argv, timeout=60, env=None):
    """Runs pmprof (or a wrapper) in its own process group; returns (code, stdout, stderr)."""
    return finish(start(argv, env), argv, timeout)


def start(argv, env=None):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def finish(p, argv, timeout=30):
    """Waits for `p` (from start) at most `timeout` s; returns (code, stdout, stderr). A run that
    does not end is killed with its group and fails the case, with the end of its stderr."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise Failure(f"hung: {' '.join(argv)} did not end within {timeout} s\n{err.decode()[-2000:]}")
    check_group_gone(p.pid, argv)
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def check_group_gone(pgid, argv):
    """No process of pmprof's process group may outlive it (a forgotten child or tracer)."""
    deadline = time.monotonic() + 1.0
    while True:
        left = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rfind(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                left.append(d)
        if not left:
            return
        if time.monotonic() > deadline:
            for d in left:
                try:
                    os.kill(int(d), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise Failure(f"{' '.join(argv)}: processes {left} of its group left behind")
        time.sleep(0.02)


# ---- the checks -----------------------------------------------------------------------------


def task_states(pid):
    """{tid: (state, tracer_pid)} of every thread of pid (empty when it is gone)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except OSError:
            continue
        state = tracer = None
        for line in status.splitlines():
            if line.startswith("State:"):
                state = line.split()[1]
            elif line.startswith("TracerPid:"):
                tracer = int(line.split()[1])
        out[int(tid)] = (state, tracer)
    return out


def check_untouched(target, stopped_before=(), meant_to_exit=False, within=1.0):
    """Rule zero after pmprof ended: no thread stopped or traced, within `within` seconds."""
    if meant_to_exit:
        # An exit target is allowed to be gone; while alive the same checks hold.
        if not target.alive():
            return
    elif not target.alive():
        raise Failure(f"target {target.pid} ({os.path.basename(target.argv[0])}) died: "
                      f"status {target.proc.returncode}")
    deadline = time.monotonic() + within
    while True:
        problems = []
        for tid, (state, tracer) in task_states(target.pid).items():
            if tracer:
                problems.append(f"tid {tid} traced by {tracer}")
            if state in ("t", "T") and tid not in stopped_before:
                problems.append(f"tid {tid} in state {state}")
        if not problems:
            return
        if time.monotonic() > deadline:
            raise Failure(f"target {target.pid} left touched 1 s after pmprof ended: "
                          + "; ".join(problems))
        time.sleep(0.01)


def check_exit(code, argv, err, allowed=None, killed_by=None):
    if killed_by is not None and code == -killed_by:
        return
    if code < 0 or code >= 128:
        raise Failure(f"{' '.join(argv)}: exit {code} (crash or signal)\n{err[-3000:]}")
    if allowed is not None and code not in allowed:
        raise Failure(f"{' '.join(argv)}: exit {code}, expected one of {sorted(allowed)}\n"
                      f"{err[-3000:]}")
    for word in ("Segmentation", "Aborted", "terminate called", "AddressSanitizer", "runtime error"):
        if word in err:
            raise Failure(f"{' '.join(argv)}: '{word}' on stderr\n{err[-3000:]}")


def check_output(ctx, path, kind):
    """Absent, or valid of its kind ('pprof', 'json', 'text')."""
    if not os.path.exists(path):
        return
    size = os.path.getsize(path)
    if kind == "pprof":
        if size == 0:
            raise Failure(f"{path}: empty profile left behind")
        r = subprocess.run([ctx.pprofcheck, path], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Failure(f"{path}: invalid profile: {r.stderr.strip()}")
    elif kind == "json":
        with open(path) as f:
            json.load(f)
    elif size == 0:
        raise Failure(f"{path}: empty output left behind")
    os.unlink(path)


def no_temp_left(path):
    d = os.path.dirname(path)
    base = os.path.basename(path)
    left = [f for f in os.listdir(d) if f.startswith(base + ".tmp")]
    if left:
        raise Failure(f"temporary files left: {left}")


# ---- the cases ------------------------------------------------------------------------------
# Each takes (ctx, i) and raises Failure; the driver counts runs.


def out_args(verb, path):
    """-o PATH as a pprof profile: stacks writes text unless -f says otherwise."""
    return (["-f", "pprof"] if verb == "stacks" else []) + ["-o", path]


def case_exit_mid(ctx, i):
    """The target exits while a verb looks at it (exit_target: _exit a random delay after it
    first sees a tracer)."""
    verb = ["stacks", "attach", "heap"][i % 3]
    t = Target([ctx.target_bin("exit_target"), "--delay-us", str(ctx.rng.choice([0, 200, 2000, 20000]))])
    try:
        out = ctx.out(f"exit{i}.pb.gz")
        argv = [ctx.pmprof, verb] + (["-d", "2s"] if verb == "attach" else []) + \
               out_args(verb, out) + [str(t.pid)]
        code, _, err = run(argv)
        check_exit(code, argv, err, allowed={0, 1, 2})
        if code == 2 and "exited" not in err and "No such process" not in err:
            raise Failure(f"{verb}: exit 2 without saying the target exited: {err.strip()[-500:]}")
        check_untouched(t, meant_to_exit=True)
        check_output(ctx, out, "pprof")
        no_temp_left(out)
    finally:
        t.kill()


_churn = {}


def case_churn(ctx, i):
    """Threads created and joined without pause while stacks, attach and heap run."""
    t = Target([ctx.target_bin("churn_target"), "--batch", "8", "--pause-us", "2000"])
    try:
        for verb in (["stacks"], ["attach", "-d", "500ms", "-r", "199"], ["heap", "--no-reach"]):
            out = ctx.out(f"churn{i}.pb.gz")
            argv = [ctx.pmprof] + verb + out_args(verb[0], out) + [str(t.pid)]
            code, _, err = run(argv)
            check_exit(code, argv, err, allowed={0, 1})
            check_untouched(t)
            check_output(ctx, out, "pprof")
    finally:
        t.kill()


def case_signals(ctx, i):
    """SIGUSR1 storms, SIGSTOP/SIGCONT and queued realtime signals while attach samples: every
    signal reaches the target and the job-control state is the target's own afterwards."""
    t = Target([ctx.target_bin("ptrace_target"), "--signals", "--threads", "3"])
    try:
        out = ctx.out(f"sig{i}.pb.gz")
        argv = [ctx.pmprof, "attach", "-d", "1s", "-r", "499", "--no-progress", "-o", out,
                str(t.pid)]
        p = start(argv)
        time.sleep(0.2)
        sent = 0
        for k in range(50):
            os.kill(t.pid, signal.SIGUSR1)
            sent += 1
            if k == 20:
                os.kill(t.pid, signal.SIGSTOP)
                time.sleep(0.05)
                os.kill(t.pid, signal.SIGCONT)
            time.sleep(0.005)
        code, _, err = finish(p, argv)
        check_exit(code, argv, err, allowed={0, 1})
        check_untouched(t)
        check_output(ctx, out, "pprof")
        # The last count line the target wrote: no SIGUSR1 may have been swallowed. Signals
        # of one kind can merge while pending (standard signals are not queued), so only
        # "at least one arrived after the stop/cont" is asserted, plus no loss to a stop.
        last = ""
        while True:
            line = t.read_line(0.5)
            if not line:
                break
            last = line
        if "usr1" not in last:
            raise Failure(f"no SIGUSR1 count from the target (last line {last!r})")
    finally:
        t.kill()


def case_kill9(ctx, i):
    """pmprof killed by SIGKILL (and SIGTERM, SIGINT, SIGHUP) mid-run: the kernel's detach on
    the tracer's exit must leave nothing stopped; a caught signal must end with valid output."""
    sig = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGKILL][i % 4]
    t = Target([ctx.target_bin("ptrace_target"), "--threads", "4"])
    try:
        verb = ["attach", "-d", "20s", "-r", "999", "--no-progress"] if i % 2 == 0 else \
               ["stacks"]
        out = ctx.out(f"k{i}.pb.gz")
        argv = [ctx.pmprof] + verb + out_args(verb[0], out) + [str(t.pid)]
        p = start(argv)
        time.sleep(ctx.rng.uniform(0.0, 0.4))
        t0 = time.monotonic()
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        code, _, err = finish(p, argv)
        took = time.monotonic() - t0
        check_exit(code, argv, err, allowed={0, 1, 2}, killed_by=sig)
        if sig != signal.SIGKILL and code == -sig:
            raise Failure(f"{' '.join(argv)}: died of {sig.name} instead of handling it")
        if sig != signal.SIGKILL and took > 3:
            raise Failure(f"{' '.join(argv)}: {took:.1f} s to end after {sig.name}")
        check_untouched(t)
        if sig == signal.SIGKILL:
            # Killed before it could rename: the temporary file may stay, the output must not
            # be a half-written profile.
            if os.path.exists(out):
                check_output(ctx, out, "pprof")
            for f in os.listdir(ctx.tmp):
                if f.startswith(os.path.basename(out) + ".tmp"):
                    os.unlink(os.path.join(ctx.tmp, f))
        else:
            check_output(ctx, out, "pprof")
    finally:
        t.kill()


def case_zombie_leader(ctx, i):
    """The main thread called pthread_exit: stacks and attach still work, heap says why not."""
    t = Target([ctx.target_bin("ptrace_target"), "--main-exits", "--threads", "2"])
    try:
        time.sleep(0.1)
        for verb, allowed in ((["stacks"], {0, 1}), (["attach", "-d", "300ms", "--no-progress"], {0, 1}),
                              (["heap"], {2})):
            out = ctx.out(f"z{i}.pb.gz")
            argv = [ctx.pmprof] + verb + out_args(verb[0], out) + [str(t.pid)]
            code, _, err = run(argv)
            check_exit(code, argv, err, allowed=allowed)
            if verb[0] == "heap" and "zombie" not in err:
                raise Failure(f"heap on a zombie leader: {err.strip()}")
            if "No such file or directory" in err:
                raise Failure(f"{verb[0]}: a missing-file message for a zombie leader: {err.strip()}")
            check_untouched(t, stopped_before=set())
            check_output(ctx, out, "pprof")
    finally:
        t.kill()


def case_dstate(ctx, i):
    """A vfork parent in D state: one bounded wait, and its interrupt never becomes a stop."""
    t = Target([ctx.target_bin("ptrace_target"), "--dstate-ms", "400", "--threads", "2"])
    try:
        dtid = int(t.fields["dstate"])
        verb = [["stacks", "--stop-timeout", "50"],
                ["attach", "-d", "300ms", "--stop-timeout", "50", "--no-progress"],
                ["heap", "--stop-timeout", "50", "--no-reach"]][i % 3]
        out = ctx.out(f"d{i}.pb.gz")
        argv = [ctx.pmprof] + verb + out_args(verb[0], out) + [str(t.pid)]
        t0 = time.monotonic()
        code, _, err = run(argv, timeout=30)
        if time.monotonic() - t0 > 5:
            raise Failure(f"{' '.join(argv)}: took {time.monotonic() - t0:.1f} s")
        check_exit(code, argv, err, allowed={0, 1})
        # Watch the vforker across the end of its D state (400 ms).
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            st = task_states(t.pid).get(dtid)
            if st and st[0] == "t":
                raise Failure(f"vforker {dtid} left in a ptrace-stop (TracerPid {st[1]})")
            time.sleep(0.005)
        check_untouched(t)
        check_output(ctx, out, "pprof")
    finally:
        t.kill()


def case_seccomp(ctx, i):
    """process_vm_readv denied: the fallbacks give stacks; ptrace denied: one clear line."""
    t = Target([ctx.target_bin("stacks_target")])
    try:
        out = ctx.out(f"s{i}.txt")
        argv = [ctx.seccomp, "process_vm_readv", ctx.pmprof, "stacks", "-o", out, str(t.pid)]
        code, _, err = run(argv)
        check_exit(code, argv, err, allowed={0, 1})
        check_untouched(t)
        check_output(ctx, out, "text")
        argv = [ctx.seccomp, "ptrace", ctx.pmprof, "stacks", str(t.pid)]
        code, _, err = run(argv)
        check_exit(code, argv, err, allowed={2})
        if "seccomp" not in err:
            raise Failure(f"ptrace denied by seccomp, not named: {err.strip()}")
        check_untouched(t)
    finally:
        t.kill()


_many = {}


def case_many_threads(ctx, i):
    """Thousands of threads: every one captured, none held long, the target untouched."""
    n = int(os.environ.get("STRESS_THREADS", "2000"))
    if "t" not in _many or not _many["t"].alive():
        _many["t"] = Target([ctx.target_bin("stacks_target"), "--threads", str(n)], ready_timeout=60)
    t = _many["t"]
    if i % 2 == 0:
        argv = [ctx.pmprof, "stacks", "-f", "json", "-o", ctx.out("many.json"), str(t.pid)]
        code, _, err = run(argv, timeout=120)
        check_exit(code, argv, err, allowed={0})
        with open(ctx.out("many.json")) as f:
            dump = json.load(f)
        threads = dump.get("threads", [])
        missed = [th for th in threads if not th.get("captured", True)]
        if len(threads) < n or missed:
            raise Failure(f"stacks: {len(threads)} threads, {len(missed)} not captured: {err[-800:]}")
        check_output(ctx, ctx.out("many.json"), "json")
    else:
        out = ctx.out("many.pb.gz")
        argv = [ctx.pmprof, "attach", "-d", "1s", "--no-progress", "-o", out, str(t.pid)]
        code, _, err = run(argv, timeout=120)
        check_exit(code, argv, err, allowed={0, 1})
        check_output(ctx, out, "pprof")
    check_untouched(t)


def case_corrupt_profiles(ctx, i):
    """Truncated, bit-flipped and garbage profiles: report says why, never crashes or hangs."""
    good = ctx.out("good.pb.gz")
    if not os.path.exists(good):
        t = Target([ctx.target_bin("cpu_target")])
        try:
            argv = [ctx.pmprof, "attach", "-d", "500ms", "--no-progress", "-o", good, str(t.pid)]
            code, _, err = run(argv)
            check_exit(code, argv, err, allowed={0})
        finally:
            t.kill()
    import gzip
    raw = gzip.decompress(open(good, "rb").read())
    for k in range(10):
        data = bytearray(raw)
        how = ctx.rng.randrange(4)
        if how == 0:
            data = data[:ctx.rng.randrange(len(data))]
        elif how == 1:
            for _ in range(ctx.rng.randrange(1, 16)):
                data[ctx.rng.randrange(len(data))] = ctx.rng.randrange(256)
        elif how == 2:
            data = bytearray(ctx.rng.randbytes(ctx.rng.randrange(1, 4096)))
        else:
            pos = ctx.rng.randrange(len(data))
            data[pos:pos] = ctx.rng.randbytes(ctx.rng.randrange(1, 64))
        bad = ctx.out(f"bad{k}.pb.gz")
        with open(bad, "wb") as f:
            f.write(gzip.compress(bytes(data)) if ctx.rng.random() < 0.8 else bytes(data))
        for fmt in ("text", "folded", "svg", "callgrind"):
            argv = [ctx.pmprof, "report", "-f", fmt, "-o", ctx.out("r.out"), bad]
            code, _, err = run(argv, timeout=60)
            check_exit(code, argv, err, allowed={0, 1, 2, 64})
            if code != 0 and len(err.strip().splitlines()) > 3:
                raise Failure(f"{' '.join(argv)}: more than a clear line: {err[-800:]}")
            if os.path.exists(ctx.out("r.out")):
                os.unlink(ctx.out("r.out"))
        os.unlink(bad)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(port, raw, timeout=5.0, half_close=True):
    """Sends raw bytes, reads until the server closes. half_close: shut our side after sending
    (a hostile client; pmprof serve then answers nothing, like a closed connection)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(raw)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        s.close()


def case_hostile_http(ctx, i):
    """Malformed, oversized and slow requests at pmprof serve: it keeps answering, keeps its
    memory bounded, and SIGTERM leaves the target untraced."""
    t = Target([ctx.target_bin("stacks_target")])
    port = free_port()
    argv = [ctx.serve, "serve", "-l", f"127.0.0.1:{port}", str(t.pid)]
    p = start(argv)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if p.poll() is not None:
                    raise Failure(f"serve ended at start: {p.stderr.read().decode()[-800:]}")
                time.sleep(0.05)
        rng = ctx.rng
        bad = [
            b"GET /debug/pprof/profile?seconds=-1 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /debug/pprof/profile?seconds=99999999999999999999 HTTP/1.1\r\n\r\n",
            b"GET /debug/pprof/heap?gc=%zz HTTP/1.1\r\n\r\n",
            b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n",
            b"GET /debug/pprof/ HTTP/1.1\r\n" + b"X: " + b"y" * 200000 + b"\r\n\r\n",
            b"POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nabc",
            b"POST /debug/pprof/symbol HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"\x00\xff\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
            b"BREW /debug/pprof/ HTCPCP/1.0\r\n\r\n",
            b"GET /debug/pprof/threads?debug=" + b"9" * 400 + b" HTTP/1.1\r\n\r\n",
            b"GET /debug/pprof/symbol?0x" + b"f" * 5000 + b" HTTP/1.1\r\n\r\n",
            b"GET /debug/pprof/goroutine?debug=2 HTTP/1.1\r\n\r\n",
        ]
        for _ in range(30):
            req = rng.choice(bad) if rng.random() < 0.8 else rng.randbytes(rng.randrange(1, 2048))
            try:
                http(port, req, timeout=10)
            except OSError:
                pass
            if p.poll() is not None:
                raise Failure(f"serve died after {req[:60]!r}: exit {p.returncode}")
        # Slow clients: unfinished heads must not block a good request.
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        for s in slow:
            s.sendall(b"GET /debug/pprof/ HTTP/1.1\r\n")
        t0 = time.monotonic()
        resp = http(port, b"GET /debug/pprof/threads HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    timeout=10, half_close=False)
        took = time.monotonic() - t0
        for s in slow:
            s.close()
        if not resp.startswith(b"HTTP/1.1 200"):
            raise Failure(f"threads after the abuse: {resp[:200]!r}")
        if took > 3:
            raise Failure(f"a good request took {took:.1f} s behind 8 slow clients")
        check_untouched(t)  # between requests nothing stays traced... except the server's own
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
        code, _, err = finish(p, argv)
        t_alive = t.alive()
        try:
            check_exit(code, argv, err, allowed={0})
            if t_alive:
                check_untouched(t)
        finally:
            t.kill()


CASES = {
    "exit_mid": case_exit_mid,
    "churn": case_churn,
    "signals": case_signals,
    "kill9": case_kill9,
    "zombie_leader": case_zombie_leader,
    "dstate": case_dstate,
    "seccomp": case_seccomp,
    "many_threads": case_many_threads,
    "corrupt_profiles": case_corrupt_profiles,
    "hostile_http": case_hostile_http,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loops", type=int, default=int(os.environ.get("STRESS_LOOPS", "20")))
    ap.add_argument("--cases", default=os.environ.get("STRESS_CASES", ""))
    ap.add_argument("--build", default=os.environ.get("PMPROF_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("STRESS_SEED", "0")) or None)
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for name, fn in CASES.items():
            print(f"{name:18} {fn.__doc__.split(chr(10))[0]}")
        return 0
    names = [c for c in a.cases.split(",") if c] or list(CASES)
    unknown = [c for c in names if c not in CASES]
    if unknown:
        print(f"stress: unknown case(s) {unknown}; --list shows them", file=sys.stderr)
        return 64
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"stress: {a.loops} loops of {', '.join(names)} (seed {seed})", flush=True)
    failures = []
    with tempfile.TemporaryDirectory(prefix="pmprof-stress-") as tmp:
        ctx = Ctx(os.path.abspath(a.build), tmp, rng)
        for name in names:
            t0 = time.monotonic()
            bad = 0
            for i in range(a.loops):
                try:
                    CASES[name](ctx, i)
                except Failure as e:
                    bad += 1
                    failures.append((name, i, str(e)))
                    print(f"  FAIL {name} run {i}: {e}", flush=True)
            print(f"stress: {name:18} {a.loops - bad}/{a.loops} clean in "
                  f"{time.monotonic() - t0:.1f} s", flush=True)
        if "t" in _many:
            _many["t"].kill()
    if failures:
        print(f"stress: {len(failures)} failure(s) (seed {seed})")
        return 1
    print("stress: all clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
