#!/usr/bin/env bash
# `make demo`: start the bundled example (a C++ port of the Go pprof tutorial program), look at
# it with pmprof, print what pmprof saw, and stop the example. The example is always stopped,
# whatever happens.
set -euo pipefail
BUILD=${BUILD:-build}
PMPROF=$BUILD/pmprof
EXAMPLE=$BUILD/examples/pprof_tutorial
OUT=${DEMO_OUT:-$BUILD/demo}
mkdir -p "$OUT"

"$EXAMPLE" >"$OUT/example.log" 2>&1 &
pid=$!
srv=
trap 'kill -TERM ${srv:-} $pid 2>/dev/null || true; wait ${srv:-} $pid 2>/dev/null || true' EXIT
# The example prints its pid once its threads are running.
for _ in $(seq 100); do grep -q "pid" "$OUT/example.log" 2>/dev/null && break; sleep 0.05; done

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "pmprof stacks $pid"
"$PMPROF" stacks "$pid"

if "$PMPROF" attach --help >/dev/null 2>&1; then
    step "pmprof attach $pid --duration 3s --mode cpu -o $OUT/cpu.pb.gz"
    "$PMPROF" attach "$pid" --duration 3s --mode cpu --no-progress -o "$OUT/cpu.pb.gz"
fi
if "$PMPROF" report --help >/dev/null 2>&1 && [ -f "$OUT/cpu.pb.gz" ]; then
    step "pmprof report $OUT/cpu.pb.gz --format callgrind -o $OUT/callgrind.out.demo"
    "$PMPROF" report "$OUT/cpu.pb.gz" --format callgrind -o "$OUT/callgrind.out.demo"
    step "pmprof report $OUT/cpu.pb.gz --format svg -o $OUT/flame.svg"
    "$PMPROF" report "$OUT/cpu.pb.gz" --format svg -o "$OUT/flame.svg"
fi
if "$PMPROF" heap --help >/dev/null 2>&1; then
    step "pmprof heap $pid"
    "$PMPROF" heap "$pid"
fi
if "$PMPROF" serve --help >/dev/null 2>&1 && command -v go >/dev/null; then
    "$PMPROF" serve "$pid" --listen 127.0.0.1:0 2>"$OUT/serve.log" &
    srv=$!
    url=
    for _ in $(seq 100); do
        url=$(grep -o 'http://[^ ]*' "$OUT/serve.log" || true)
        [ -n "$url" ] && break
        sleep 0.05
    done
    step "pmprof serve $pid --listen 127.0.0.1:0; go tool pprof -top '${url}profile?seconds=3'"
    GO111MODULE=off HOME="$OUT" GOCACHE="$OUT/gocache" go tool pprof -top "${url}profile?seconds=3" 2>&1 | head -24
    kill -TERM "$srv"
    wait "$srv" || true
    srv=
fi
printf '\nThe example (pid %s) is stopped now; outputs are in %s/.\n' "$pid" "$OUT"
