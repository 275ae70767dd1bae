"""The bench's goals, checked against a bench run's data (used by report.py). Each goal is
(what, target, measured text, met: True / False / None for no data)."""

import statistics


def project_rss(points, samples):
    """Peak RSS (KiB) at `samples` thread-samples, linear through two (samples, rss) runs; None
    when the runs are too small for the slope to mean anything (RSS moves in allocator-sized
    steps: the long run needs 5x the short one's samples and 2 % of the target)."""
    if len(points) < 2:
        return None
    (n0, _), (n1, _) = points[0], points[-1]
    if n1 < 5 * n0 or n1 < 0.02 * samples:
        return None
    (n0, r0), (n1, r1) = points[0], points[-1]
    slope = max(0.0, (r1 - r0) / (n1 - n0))
    return r1 + slope * (samples - n1)


def _per_round(a, b, fn):
    return [fn(a[k], b[k]) for k in sorted(a) if k in b and b[k] > 0]


def _med(xs):
    return statistics.median(xs) if xs else None


def _all_met(values, ok):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return all(ok(v) for v in vals)


def _fmt(label_values, unit="", digits=3):
    parts = []
    for label, v in label_values:
        parts.append(f"{label} {'—' if v is None else format(v, f'.{digits}g') + unit}")
    return "; ".join(parts)


def snapshot_goals(d):
    goals = []
    pm = d.rounds("snapshot", "pmprof stacks", "fp", 21, "snap_ms")
    for tool, factor in (("eu-stack -i -s -p", 4), ("gdb bt", 40)):
        other = d.rounds("snapshot", tool, "fp", 21, "snap_ms")
        r = _med(_per_round(other, pm, lambda o, p: o / p))
        goals.append((f"`pmprof stacks`, 21 threads: time ≤ 1/{factor} of `{tool}`",
                      f"{tool} / pmprof ≥ {factor}", _fmt([("ratio", r)], "×"),
                      None if r is None else r >= factor))
    stop = _med(d.series("snapshot", "pmprof stacks", "fp", 21, "stop_us"))
    own = _med(d.series("snapshot", "pmprof stacks", "fp", 21, "self_stop_us"))
    goals.append(("`pmprof stacks`, 21 threads: target stop window", "≤ 1 ms",
                  _fmt([("longest thread stop (sched trace)", None if stop is None else stop / 1e3),
                        ("pmprof's own report", None if own is None else own / 1e3)], " ms"),
                  None if stop is None else stop <= 1000))
    return goals


def throughput_goals(d, rate, points):
    labels, values = [], []
    for mode in ("cpu", "cpu-perf", "wall"):
        for build in ("fp", "nofp"):
            a = d.rounds("sampling", f"pmprof {mode} {rate}", build, 21, "ops_per_s")
            p = d.rounds("sampling", f"perf dwarf {rate}", build, 21, "ops_per_s")
            b = d.rounds("sampling", "baseline", build, 21, "ops_per_s")
            diffs = [(a[k] - p[k]) / b[k] * 100 for k in sorted(a) if k in p and k in b]
            labels.append((f"{mode}/{build}", _med(diffs)))
            values.append(_med(diffs))
    return (f"{rate} Hz: throughput ratio vs perf dwarf's, same run",
            f"≥ −{points} points", _fmt(labels, " pt"),
            _all_met(values, lambda v: v >= -points))


def sampling_goals(d, cells, split_cell, complete_pct):
    goals = [throughput_goals(d, 99, 0.5), throughput_goals(d, 999, 1.5)]
    pm_cells = [c for c in cells if c.startswith("pmprof")]
    rates, completes, inlines, splits, cpus = [], [], [], [], []
    for cell in pm_cells:
        requested = float(cell.split()[-1])
        for build in ("fp", "nofp"):
            # wall: ticks per second; cpu: samples per second of the target's cpu time, which
            # is what -r asks for in cpu mode (as perf -F).
            key = "hz_per_cpu_s" if cell.split()[1].startswith("cpu") else "eff_hz"
            hz = _med(d.series("sampling", cell, build, 21, key))
            rates.append((f"{cell.split()[1]} {int(requested)}/{build}",
                          None if hz is None else hz / requested * 100))
            completes.append((f"{cell}/{build}", complete_pct(d, "sampling", cell, build, 21)))
            inlines.append(_med(d.series("sampling", cell, build, 21, "inline_pct")))
            split, half, _ = split_cell(d, "sampling", cell, build, 21)
            splits.append((f"{cell}/{build}", None if split is None else split - 70, half))
            cpus.append((f"{cell}/{build}",
                         _med(d.series("sampling", cell, build, 21, "cpu_per_sample_us"))))
    goals.append(("achieved rate / requested (wall: ticks per second; cpu: samples per "
                  "second of the target's cpu time)", "≥ 90 %",
                  _fmt(rates, " %"), _all_met([v for _, v in rates], lambda v: v >= 90)))
    worst = min((v for _, v in completes if v is not None), default=None)
    worst_inline = min((v for v in inlines if v is not None), default=None)
    goals.append(("complete stacks (entry function reached), with inline frames, both builds",
                  "≥ 99 % of samples",
                  _fmt([("lowest complete", worst), ("lowest inline", worst_inline)], " %", 4),
                  None if worst is None or worst_inline is None
                  else worst >= 99 and worst_inline >= 99))
    errs = [abs(e) for _, e, _ in splits if e is not None]
    worst_cell = max(splits, key=lambda s: -1 if s[1] is None else abs(s[1]))
    goals.append(("split error against the known 70/30, pooled over rounds", "≤ 1 point",
                  f"largest |error| {max(errs):.2f} pt ({worst_cell[0]}, ±{worst_cell[2]:.2f} "
                  "sampling noise)" if errs else "—",
                  None if not errs else max(errs) <= 1))
    worst_cpu = max((v for _, v in cpus if v is not None), default=None)
    goals.append(("tracer cpu per thread-sample (pmprof cells)", "≤ 10 µs",
                  _fmt([("largest median", worst_cpu)], " µs"),
                  None if worst_cpu is None else worst_cpu <= 10))
    sizes = []
    for rate in (99, 999):
        for build in ("fp", "nofp"):
            p = d.rounds("sampling", f"perf dwarf {rate}", build, 21, "out_bytes")
            for mode in ("cpu", "wall"):
                a = d.rounds("sampling", f"pmprof {mode} {rate}", build, 21, "out_bytes")
                sizes.append((f"{mode} {rate}/{build}",
                              _med(_per_round(a, p, lambda x, y: x / y * 100))))
    goals.append(("output bytes / perf dwarf's at the same rate", "≤ 1 %", _fmt(sizes, " %"),
                  _all_met([v for _, v in sizes], lambda v: v <= 1)))
    return goals


def scale_goals(d, meta):
    threads = meta["config"]["scale_threads"]
    loss, rss = [], []
    for mode in ("wall", "cpu"):
        cell = f"pmprof {mode} 99"
        a = d.rounds("scale", cell, "fp", threads, "ops_per_s")
        b = d.rounds("scale", "baseline", "fp", threads, "ops_per_s")
        loss.append((mode, _med(_per_round(a, b, lambda x, y: (1 - x / y) * 100))))
        r = _med(d.series("scale", cell, "fp", threads, "tool_maxrss_kib"))
        rss.append((mode, None if r is None else r / 1024))
    return [(f"{threads} threads at 99 Hz: throughput loss", "≤ 3 %", _fmt(loss, " %"),
             _all_met([v for _, v in loss], lambda v: v <= 3)),
            (f"{threads} threads at 99 Hz: pmprof peak RSS", "≤ 100 MB", _fmt(rss, " MiB"),
             _all_met([v for _, v in rss], lambda v: v * 1.048576 <= 100))]


def goals(d, meta, cells, projected_rss_kib, split_cell, complete_pct, med):
    del med  # the goals use their own median helper
    out = snapshot_goals(d) + sampling_goals(d, cells, split_cell, complete_pct)
    out += scale_goals(d, meta)
    if projected_rss_kib is not None:
        out.append(("pmprof RSS after an hour at 99 Hz on 21 threads (extrapolated)",
                    "(no goal; ≤ 100 MB expected)", f"{projected_rss_kib / 1024:.0f} MiB",
                    projected_rss_kib / 1024 * 1.048576 <= 100))
    return out


def render(goal_list, meta, d):
    rows = []
    for what, target, measured, met in goal_list:
        mark = "no data" if met is None else ("met" if met else "**not met**")
        rows.append(f"| {what} | {target} | {measured} | {mark} |")
    text = ["## Goals\n", "| goal | target | measured (medians over rounds) | |",
            "|---|---|---|---|"] + rows
    text.append("\n### Closing note\n")
    missed = [g for g in goal_list if g[3] is False]
    nodata = [g for g in goal_list if g[3] is None]
    # Measured over 2 s before anything started (older runs: the 1-minute load average).
    busy = meta.get("busy_cpus_start")
    cpus = meta.get("cpus") or 1
    if busy is None:
        busy, what = meta.get("loadavg_start", [0])[0], "1-minute load average"
    else:
        what = "cpus busy in the 2 s before it"
    if busy > 0.25:
        text.append(f"The machine was not quiet when the run started ({what}: {busy:.2f} of "
                    f"{cpus}): every timing above is inflated and the throughput ratios are "
                    "noisier than the ±4 % the issue expects. Re-run on an idle machine before "
                    "drawing conclusions.\n")
    if not missed and not nodata:
        text.append("Every goal was met in this run.\n")
    for what, target, measured, _ in missed:
        text.append(f"- Not met: {what} (target {target}): {measured}.")
    for what, target, _, _ in nodata:
        text.append(f"- No data: {what} (target {target}); see the failed cells below.")
    if d.errors:
        text.append(f"\n{len(d.errors)} cells failed or were skipped; they are listed at the end.")
    text.append("\nSampling noise bounds what a run can show: the split's ± interval is the 95 % "
                "binomial half-width of the pooled samples, and throughput differences below "
                "the spread of the baselines between rounds are not significant.\n")
    return "\n".join(text) + "\n"
