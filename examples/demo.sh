#!/usr/bin/env bash
# `make demo`: start the bundled example (a C++ port of the Go pprof tutorial's program, see
# docs/tutorial.md), look at it with pmprof the way the tutorial does, say what each step shows,
# and stop the example. The example is always stopped and reaped, whatever happens. Bold step
# lines only on a terminal (and without NO_COLOR): a log or a pipe gets plain text.
set -euo pipefail
BUILD=${BUILD:-build}
PMPROF=$BUILD/pmprof
EXAMPLE=$BUILD/examples/pprof_tutorial
OUT=${DEMO_OUT:-$BUILD/demo}
mkdir -p "$OUT"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    bold=$'\033[1m' plain=$'\033[0m'
else
    bold= plain=
fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '%s\n' "$@"; }
# go tool pprof without network or a writable GOPATH (Debian's packaged pprof), leaving its
# downloads and cache under $OUT.
gopprof() { GO111MODULE=off GOFLAGS= HOME="$OUT" GOCACHE="$OUT/gocache" PPROF_TMPDIR="$OUT" go tool pprof "$@"; }

"$EXAMPLE" --leak >"$OUT/example.log" 2>&1 &
pid=$!
srv=
trap 'kill -TERM ${srv:-} $pid 2>/dev/null || true; wait ${srv:-} $pid 2>/dev/null || true' EXIT
# The example prints its pid first thing; its threads start right after.
for _ in $(seq 100); do grep -q "pid" "$OUT/example.log" 2>/dev/null && break; sleep 0.05; done
sleep 0.2
say "Started $EXAMPLE --leak (pid $pid): a producer thread (runcputest) hands messages to the" \
    "main thread (procmsg) through one mutex, and --leak keeps one 940 KiB buffer a second."

step "pmprof stacks $pid --thread runcputest"
"$PMPROF" stacks "$pid" --thread runcputest
say "One thread's stack, with source lines and inlined frames; the last line says how long pmprof" \
    "kept the thread stopped."

step "pmprof attach $pid --mode cpu -d 3s -o $OUT/cpu.pb.gz"
"$PMPROF" attach "$pid" --mode cpu -d 3s --no-progress -o "$OUT/cpu.pb.gz"
say "The flat top is glibc's lock and condition-variable code, as Go's was runtime.lock and" \
    "selectgo. Sorted by cumulative time, the program's own functions come up:"

if command -v go >/dev/null; then
    step "go tool pprof -top -cum -nodecount=15 $OUT/cpu.pb.gz"
    # pmprof's comment lines (sampler statistics) are left out here.
    gopprof -top -cum -nodecount=15 "$OUT/cpu.pb.gz" 2>&1 | grep -v '^pmprof '
fi

step "pmprof report $OUT/cpu.pb.gz --list 'procmsg'"
"$PMPROF" report "$OUT/cpu.pb.gz" --list 'procmsg'
say "procmsg's time is all in its select() line: the hand-over through the lock."

step "pmprof report $OUT/cpu.pb.gz -o $OUT/callgrind.out.demo"
"$PMPROF" report "$OUT/cpu.pb.gz" -o "$OUT/callgrind.out.demo"
step "pmprof report $OUT/cpu.pb.gz -o $OUT/flame.svg"
"$PMPROF" report "$OUT/cpu.pb.gz" -o "$OUT/flame.svg"

step "pmprof heap $pid --interval 2s --count 2"
"$PMPROF" heap "$pid" --interval 2s --count 2
say "Two seconds apart, the heap grew by 940 KiB buffers ([512 KiB-1 MiB)) and as many IntSlice" \
    "objects: the leak, found by size class and type."

if command -v go >/dev/null && "$PMPROF" serve --help >/dev/null 2>&1; then
    "$PMPROF" serve "$pid" --listen 127.0.0.1:0 2>"$OUT/serve.log" &
    srv=$!
    url=
    for _ in $(seq 100); do
        url=$(grep -o 'http://[^ ]*' "$OUT/serve.log" || true)
        [ -n "$url" ] && break
        sleep 0.05
    done
    if [ -n "$url" ]; then
        step "pmprof serve $pid --listen 127.0.0.1:0 &   # it listens on $url"
        step "go tool pprof -top -nodecount=8 '${url}profile?seconds=3'"
        gopprof -top -nodecount=8 "${url}profile?seconds=3" 2>&1 | grep -v '^pmprof '
        say "A CPU profile over HTTP, from Go's /debug/pprof/ paths."
    fi
    kill -TERM "$srv"
    wait "$srv" || true
    srv=
fi

kill -TERM "$pid"
wait "$pid" || true
say "" "The example (pid $pid) is stopped now. pmprof wrote, in $OUT/:" \
    "  cpu.pb.gz               the CPU profile (pmprof report, go tool pprof)" \
    "  callgrind.out.demo      for KCachegrind: kcachegrind $OUT/callgrind.out.demo" \
    "  flame.svg               a flame graph: open it in a browser" \
    "Next: go tool pprof -http=127.0.0.1:8080 $OUT/cpu.pb.gz for pprof's web UI, and" \
    "docs/tutorial.md (or docs/tutorial.zh.md) for every step explained."
