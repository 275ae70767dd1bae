#!/bin/sh
# `make bench`: builds the reference target with and without frame pointers, runs
# bench/bench.py (raw measurements into bench/results/) and renders bench/RESULTS.md from them
# with bench/report.py. Needs root (or CAP_SYS_PTRACE + perf_event_paranoid <= -1) for ptrace
# and the system-wide sched trace. Environment: BUILD (default build), BENCH_ROUNDS (3),
# BENCH_BUDGET_S (1000), BENCH_QUICK=1 (one short round, for working on the scripts),
# BENCH_SECTIONS (snapshot,sampling,scale,memory,heap,shares,sites; shares: bench/shares.py, cpu
# mode's per-function shares against perf's; sites: bench/sites.py, what heap --sites costs a
# malloc-heavy and a steady target).
set -eu
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
results=${BENCH_RESULTS:-$here/results}

missing=
for tool in python3 perf eu-stack gdb g++; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "bench: missing tools:$missing (make bench installs BENCH_PACKAGES as root)" >&2
    exit 2
fi
if [ ! -x "$build/pmprof" ]; then
    echo "bench: $build/pmprof not built (run make first)" >&2
    exit 2
fi

# Same flags as the test targets (Makefile TARGET_FLAGS): -O2 with inlining and -g.
mkdir -p "$build/bench"
flags="-std=c++20 -O2 -g -pthread -Wall -Wextra -Wshadow -Wold-style-cast -Wformat=2"
for variant in fp nofp; do
    if [ $variant = fp ]; then fp="-fno-omit-frame-pointer -mno-omit-leaf-frame-pointer"
    else fp="-fomit-frame-pointer"; fi
    bin=$build/bench/reference_target-$variant
    if [ ! -x "$bin" ] || [ "$here/reference_target.cpp" -nt "$bin" ]; then
        echo "g++ $flags $fp -o $bin bench/reference_target.cpp"
        # shellcheck disable=SC2086
        g++ $flags $fp -o "$bin" "$here/reference_target.cpp"
    fi
done

# The shares section's target: the test target, built the same way.
cpu_target=$build/bench/cpu_target-nofp
if [ ! -x "$cpu_target" ] || [ "$root/tests/targets/cpu_target.cpp" -nt "$cpu_target" ]; then
    echo "g++ $flags -fomit-frame-pointer -o $cpu_target tests/targets/cpu_target.cpp"
    # shellcheck disable=SC2086
    g++ $flags -fomit-frame-pointer -o "$cpu_target" "$root/tests/targets/cpu_target.cpp"
fi

if [ "$(id -u)" != 0 ]; then
    echo "bench: not root: ptrace of the target and perf's system-wide sched trace may fail" \
         "(those cells are recorded as failed)" >&2
fi

mkdir -p "$results"
quick=
[ "${BENCH_QUICK:-0}" = 1 ] && quick=--quick
echo "bench: raw results in $results; about ${BENCH_BUDGET_S:-1000} s at most" >&2
# The report is written from whatever was measured, even when the driver stopped early.
status=0
sections=${BENCH_SECTIONS:-snapshot,sampling,scale,memory,heap,shares,sites}
python3 "$here/bench.py" --pmprof "$build/pmprof" \
    --target-fp "$build/bench/reference_target-fp" \
    --target-nofp "$build/bench/reference_target-nofp" \
    --out "$results" --sections "${sections}" $quick || status=$?
rm -f "$results/shares.md" "$results/sites.md"
case ",$sections," in
*,sites,*)
    [ -x "$build/targets/alloc_sites-nofp" ] || make -C "$root" BUILD="$build" "$build/targets/alloc_sites-nofp"
    python3 "$here/sites.py" --pmprof "$build/pmprof" --target "$build/targets/alloc_sites-nofp" \
        --out "$results" $quick || status=$?
    ;;
esac
case ",$sections," in
*,shares,*)
    python3 "$here/shares.py" --pmprof "$build/pmprof" --cpu-target "$cpu_target" \
        --reference "$build/bench/reference_target-nofp" --out "$results" $quick || status=$?
    ;;
esac
python3 "$here/report.py" "$results" > "$results/RESULTS.md.tmp"
for part in shares sites; do
    if [ -f "$results/$part.md" ]; then
        { echo; cat "$results/$part.md"; } >> "$results/RESULTS.md.tmp"
    fi
done
if [ -z "$quick" ] && [ -z "${BENCH_RESULTS:-}" ]; then
    mv "$results/RESULTS.md.tmp" "$here/RESULTS.md"
    echo "bench: wrote bench/RESULTS.md" >&2
else
    mv "$results/RESULTS.md.tmp" "$results/RESULTS.md"
    echo "bench: wrote $results/RESULTS.md (quick or redirected run: bench/RESULTS.md untouched)" >&2
fi
exit $status
