#!/usr/bin/env python3
"""`make bench-scale`: what pmprof's stops cost at scale, on the test targets.

  stacks    `pmprof stacks` of stacks_target with THREADS idle threads: threads captured, the
            longest one thread stayed stopped, the window from first interrupt to last detach,
            pmprof's wall time (from its summary line, measured by pmprof itself).
  attach    `pmprof attach -d 3s` of the same target: requested and effective rate, why lowered.
  heap      `pmprof heap` of heap_leaks with HEAP_MB MB of pointer-rich live heap: the stop, the
            walk, the bytes walked; again with --max-stop 100 (the cap, and its message).
  sigterm   SIGTERM to `pmprof heap` 50 ms into the stop: how long pmprof takes to end, and the
            target's state and TracerPid right after.

Environment: BUILD (default build), THREADS (4000), HEAP_MB (500), ROUNDS (3). Prints a table
and appends it to bench/results/stops_at_scale.txt.
"""

import os
import re
import select
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD", "build")))
PMPROF = os.path.join(BUILD, "pmprof")
THREADS = int(os.environ.get("THREADS", "4000"))
HEAP_MB = int(os.environ.get("HEAP_MB", "500"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def start_target(argv, timeout=300):
    r, w = os.pipe()
    p = subprocess.Popen(argv, pass_fds=(w,), env=dict(os.environ, PMPROF_READY_FD=str(w)),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(w)
    ready, _, _ = select.select([r], [], [], timeout)
    line = os.read(r, 65536).decode() if ready else ""
    os.close(r)
    if not line.startswith("ready"):
        p.kill()
        sys.exit(f"bench-scale: {argv[0]} did not get ready")
    return p


def stop(p):
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def pmprof(args, timeout=600):
    t0 = time.monotonic()
    r = subprocess.run([PMPROF] + args, capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - t0


def states(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            s = open(f"/proc/{pid}/task/{tid}/status").read()
        except OSError:
            continue
        st = re.search(r"State:\s+(\S)", s).group(1)
        tr = int(re.search(r"TracerPid:\s+(\d+)", s).group(1))
        if st in "tT" or tr:
            out.append(f"{tid}:{st}/{tr}")
    return out


def main():
    rows = []
    stacks = start_target([os.path.join(BUILD, "targets", "stacks_target-fp"), "--threads",
                           str(THREADS)])
    try:
        for rnd in range(ROUNDS):
            r, wall = pmprof(["stacks", "-o", "/dev/null", str(stacks.pid)])
            m = re.search(r"(\d+) threads, target stopped (\d+) us at most per thread \((\d+) us "
                          r"from first interrupt to last detach\), (\d+) not captured([^,]*)", r.stderr)
            if not m:
                rows.append(("stacks", rnd, f"exit {r.returncode}: {r.stderr.strip()[-300:]}"))
                continue
            rows.append(("stacks", rnd, f"{m.group(1)} threads, {int(m.group(1)) - int(m.group(4))} "
                         f"captured{m.group(5)}, longest stop {int(m.group(2)) / 1000:.1f} ms, "
                         f"window {int(m.group(3)) / 1000:.0f} ms, wall {wall:.2f} s, "
                         f"left: {states(stacks.pid) or 'none'}"))
        r, _ = pmprof(["attach", "-d", "3s", "--no-progress", "-o", "/dev/null", str(stacks.pid)])
        m = re.search(r"\(([^)]*Hz effective[^)]*)\)", r.stderr)
        warn = [l for l in r.stderr.splitlines() if "rate:" in l or "pause budget" in l]
        rows.append(("attach", 0, (m.group(1) if m else r.stderr.strip()[-300:]) +
                     ("; " + warn[0].strip() if warn else "")))
    finally:
        stop(stacks)

    heap = start_target([os.path.join(BUILD, "targets", "heap_leaks-fp"), str(HEAP_MB)])
    try:
        for rnd in range(ROUNDS):
            for extra in (["--max-stop", "0"], ["--no-reach", "--max-stop", "0"],
                          ["--max-stop", "100"]):
                r, wall = pmprof(["heap", "-o", "/dev/null"] + extra + [str(heap.pid)])
                m = re.search(r"heap: (\d+) arenas, target stopped ([\d.]+) ms, walked ([\d.]+) MB "
                              r"in ([\d.]+) ms", r.stderr)
                cut = "cut at --max-stop" if "walk ended at --max-stop" in r.stderr else ""
                label = "heap " + " ".join(extra)
                rows.append((label, rnd, f"stopped {m.group(2)} ms, walked {m.group(3)} MB in "
                             f"{m.group(4)} ms, exit {r.returncode}{', ' + cut if cut else ''}, "
                             f"wall {wall:.2f} s" if m else f"exit {r.returncode}: "
                             f"{r.stderr.strip()[-300:]}"))
        for rnd in range(ROUNDS):
            p = subprocess.Popen([PMPROF, "heap", "--max-stop", "0", "-o", "/dev/null",
                                  str(heap.pid)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            # Wait for the stop: the target's main thread in t.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not states(heap.pid):
                time.sleep(0.001)
            time.sleep(0.05)
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            while states(heap.pid) and time.monotonic() - t0 < 30:
                time.sleep(0.0002)
            resumed = (time.monotonic() - t0) * 1000
            err = p.communicate()[1]
            took = (time.monotonic() - t0) * 1000
            rows.append(("sigterm in walk", rnd, f"target resumed {resumed:.0f} ms, pmprof ended "
                         f"{took:.0f} ms after SIGTERM, exit "
                         f"{p.returncode}, target left: {states(heap.pid) or 'none'}; "
                         f"{err.strip().splitlines()[-1][:160] if err.strip() else ''}"))
    finally:
        stop(heap)

    text = f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cpus, " \
           f"load {os.getloadavg()[0]:.1f}, THREADS={THREADS} HEAP_MB={HEAP_MB}\n"
    text += "".join(f"{what:22} {rnd}  {res}\n" for what, rnd, res in rows)
    print(text, end="")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "stops_at_scale.txt"), "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
