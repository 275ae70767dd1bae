// `pmprof heap PID`: a live-heap snapshot of glibc malloc, by C++ type and size class; with
// --base OLD.pb.gz or --interval/--count, the growth per type between snapshots (the leak hunt).
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "cli/command.h"
#include "cli/heap_sites.h"
#include "cli/options.h"
#include "pmprof/heap/heap.h"
#include "pmprof/os/signals.h"
#include "pmprof/output/pprof.h"
#include "pmprof/report/report.h"
#include "pmprof/support/error.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

struct HeapArgs {
    std::string pid;
    std::string format;  // "" = pprof when -o ends in .pb.gz/.pb, else text
    std::string output;
    std::string base;
    std::string interval = "10s";
    int count = 1;
    size_t top = 20;
    bool no_types = false;
    bool no_reach = false;
    uint64_t reach_max_mb = 2048;
    int stop_timeout_ms = 1000;
    int max_stop_ms = 2000;
    HeapSitesArgs sites;  // --sites DURATION: allocation sites instead of a snapshot
};

std::string choose_format(const HeapArgs& a) {
    return format_for_output(a.format, a.output, "text", /*json=*/true);
}

HeapSnapshot snapshot_or_throw(pid_t pid, const HeapOptions& opt) {
    auto snap = take_heap_snapshot(pid, opt);
    if (!snap.ok()) throw FatalError(snap.error().message);
    const HeapSnapshot& s = *snap;
    log_warn("heap: {} arenas, target stopped {:.2f} ms, walked {:.1f} MB in {:.2f} ms{}",
             s.arenas.size(), static_cast<double>(s.stop_window_ns) / 1e6,
             static_cast<double>(s.bytes_walked) / 1e6, static_cast<double>(s.walk_ns) / 1e6,
             s.partial() ? " (partial: see problems)" : "");
    for (const std::string& p : s.problems) log_warn("heap: {}", p);
    return std::move(*snap);
}

std::string render_or_throw(const Profile& p, const std::string& format) {
    RenderOptions ro;
    ro.sample_type = "inuse_space";
    ro.title = "Live heap";
    auto data = render_profile(p, format, ro);
    if (!data.ok()) throw FatalError(data.error().message);
    return std::move(*data);
}

Profile read_base(const std::string& path) {
    auto bytes = read_file(path);
    if (!bytes.ok()) throw FatalError(bytes.error().message, {}, kExitUsage);
    auto p = decode_pprof(*bytes);
    if (!p.ok()) throw FatalError("--base " + path + ": " + p.error().message, {}, kExitUsage);
    if (p->sample_index("inuse_space") < 0 || p->sample_index("inuse_objects") < 0)
        throw FatalError("--base " + path + " is not a heap profile (no inuse_space)", {},
                         kExitUsage);
    return std::move(*p);
}

/// Writes the snapshot in the chosen format to -o (or stdout).
void write_snapshot(const HeapArgs& a, const OutputPath& out, const HeapSnapshot& s, bool types) {
    std::string format = choose_format(a);
    if (format == "json")
        write_output(out, format_heap_json(s, types));
    else if (format == "text")
        write_output(out, format_heap_text(s, types, a.top));
    else  // pprof, callgrind, folded, svg: the heap profile through the shared writers
        write_output(out, render_or_throw(heap_to_profile(s, types), format));
}

int run_series(const HeapArgs& a, const OutputPath& out, pid_t pid, const HeapOptions& opt) {
    int64_t interval_ns = parse_duration_ns(a.interval);
    bool partial = false;
    Profile first, prev;
    for (int i = 0; i < a.count && !stop_requested(); ++i) {
        if (i > 0) {
            auto deadline =
                std::chrono::steady_clock::now() + std::chrono::nanoseconds(interval_ns);
            while (!stop_requested() && std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            if (stop_requested()) break;
        }
        HeapSnapshot s = snapshot_or_throw(pid, opt);
        partial = partial || s.partial();
        Profile p = heap_to_profile(s, opt.types);
        int64_t live = 0;
        for (const Sample& smp : p.samples) live += smp.values[1];
        std::string line = fmt::format("snapshot {} of {}: live {} bytes, mallinfo2 uordblks {}\n",
                                       i + 1, a.count, live, s.mallinfo.uordblks);
        if (i > 0) line += format_heap_growth(heap_growth(prev, p), a.top);
        write_stdout(line);
        if (i == 0) first = p;
        if (!a.output.empty()) write_snapshot(a, out, s, opt.types);
        prev = std::move(p);
    }
    if (a.count > 2 && !stop_requested())
        write_stdout("growth from the first to the last snapshot\n" +
                     format_heap_growth(heap_growth(first, prev), a.top));
    return partial ? kExitPartial : kExitComplete;
}

int run_heap(const HeapArgs& a) {
    if (!a.sites.duration.empty()) {
        if (!a.base.empty() || a.count > 1)
            throw FatalError("--sites does not take --base or --count: compare two --sites "
                             "profiles with pmprof report --base or go tool pprof -diff_base",
                             {}, kExitUsage);
        HeapSitesArgs s = a.sites;
        s.pid = a.pid;
        s.format = a.format == "json" ? "" : a.format;
        s.output = a.output;
        s.top = a.top;
        return run_heap_sites(s);
    }
    pid_t pid = parse_pid(a.pid);
    HeapOptions opt;
    opt.types = !a.no_types;
    opt.reach = !a.no_reach;
    opt.reach_max_bytes = a.reach_max_mb << 20;
    opt.stop_timeout = std::chrono::milliseconds(a.stop_timeout_ms);
    opt.max_stop = std::chrono::milliseconds(a.max_stop_ms);
    // Checked before the target is stopped. Without -o, a series and --base print only tables.
    const bool snapshot_out = !a.output.empty() || (a.count <= 1 && a.base.empty());
    const OutputPath out =
        snapshot_out ? prepare_output(a.output, format_is_binary(choose_format(a))) : OutputPath{};
    if (a.count > 1) return run_series(a, out, pid, opt);

    std::optional<Profile> base;
    if (!a.base.empty()) base = read_base(a.base);
    HeapSnapshot s = snapshot_or_throw(pid, opt);
    if (base) {
        // The growth table goes to stdout; the new snapshot to -o (the next run's --base).
        write_stdout(format_heap_growth(heap_growth(*base, heap_to_profile(s, opt.types)), a.top));
        if (!a.output.empty()) write_snapshot(a, out, s, opt.types);
    } else {
        write_snapshot(a, out, s, opt.types);
    }
    return s.partial() ? kExitPartial : kExitComplete;
}

}  // namespace

void add_heap_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<HeapArgs>();
    CLI::App* cmd = app.add_subcommand(
        "heap", "Snapshot the live heap of a glibc malloc process, by C++ type and size class");
    cmd->footer(
        std::string("\nAll threads are stopped once while malloc's own metadata is copied "
                    "(read-only: nothing is written to the target); types are resolved after "
                    "the threads resume.\nPossibly leaked: live chunks no pointer reaches from "
                    "the registers, stacks, module data, TLS or other writable memory "
                    "(conservative scan, as valgrind's leak check); 'owned by T': an untyped "
                    "chunk reachable only through objects of type T. In pprof: labels "
                    "reach=leaked|reachable and owner=T (go tool pprof "
                    "-tagfocus=reach=leaked).\nLeak hunt: pmprof heap PID -o old.pb.gz; later: "
                    "pmprof heap PID --base old.pb.gz (or --interval 10s --count 6).\n"
                    "Only glibc 2.36 malloc is supported; jemalloc, tcmalloc, mimalloc, musl and "
                    "static binaries are refused with exit code 2.\n"
                    "\nWith --sites DURATION: where the memory was allocated. For the window, "
                    "uprobes (perf_event_open, root or CAP_PERFMON) on the allocator's exported "
                    "entry points (malloc, calloc, realloc, free, posix_memalign, aligned_alloc, "
                    "memalign, valloc, and operator new/delete where the allocator defines them; "
                    "glibc, jemalloc, tcmalloc, mimalloc) record every allocation and free; "
                    "allocations are sampled by bytes as Go does (--sample-rate, mean bytes "
                    "between samples) with the user stack at each, and followed to their frees. "
                    "Output: Go's heap profile (alloc_objects, alloc_space, inuse_objects, "
                    "inuse_space; in use = allocated in the window and not freed by its end). "
                    "Every allocator call traps into the kernel while the window lasts, sampled "
                    "or not (2-10 microseconds each): a program allocating millions of times a "
                    "second runs thousands of times slower. So the window ends early, removing "
                    "every probe, when the probes take more than --max-overhead (5 %) of the "
                    "target's cpu time over a second; what was recorded is written and the "
                    "summary says so (exit 1). The kernel removes the probes when pmprof exits, "
                    "also when it is killed.\n"
                    "Leak hunt: a window holds what was allocated in it and is still live at its "
                    "end, so what leaks grows with the window's length and what is freed soon "
                    "does not: pmprof heap PID --sites 10s -o a.pb.gz, then --sites 30s -o "
                    "b.pb.gz; go tool pprof -diff_base a.pb.gz -top b.pb.gz, then -list FUNC.\n") +
        kExitCodesHelp);
    add_pid_option(cmd, &args->pid);
    cmd->add_option("-f,--format", args->format,
                    "text, json, pprof, callgrind, folded or svg (default: from -o's name, e.g. "
                    "pprof for .pb.gz, else text)")
        ->check(CLI::IsMember({"text", "json", "pprof", "callgrind", "folded", "svg"}));
    cmd->add_option("-o,--output", args->output, kOutputHelp);
    cmd->add_option("--base", args->base, "Print the growth since this earlier heap profile");
    cmd->add_option("--interval", args->interval, "Time between snapshots with --count")
        ->capture_default_str();
    cmd->add_option("--count", args->count, "Take this many snapshots, printing the growth")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str();
    cmd->add_option("--top", args->top, "Rows per table")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str();
    cmd->add_flag("--no-types", args->no_types, "Group by size class only (no C++ types)");
    cmd->add_flag("--no-reach", args->no_reach,
                  "Skip the leak and ownership analysis (it copies every live chunk and the "
                  "roots while the target is stopped, about 10-20 ms per 100 MB of live heap, "
                  "holds that copy in pmprof's memory, and stops the threads once more for "
                  "their registers)");
    cmd->add_option("--reach-max-mb", args->reach_max_mb,
                    "Skip the leak analysis when chunks plus roots exceed this many MB")
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
        ->capture_default_str();
    cmd->add_option("--sites", args->sites.duration,
                    "Record allocation sites for DURATION (10s, 1m) instead of a snapshot");
    cmd->add_option("--sample-rate", args->sites.sample_rate,
                    "--sites: mean bytes between sampled allocations (Go's MemProfileRate; 1 = "
                    "every allocation; suffixes KiB, MiB)")
        ->capture_default_str();
    cmd->add_option("--stack-bytes", args->sites.stack_bytes,
                    "--sites: bytes of user stack the kernel copies at each allocation (more: "
                    "deeper stacks, more cost)")
        ->check(CLI::Range(512u, 63480u))
        ->capture_default_str();
    cmd->add_option("--sample-type", args->sites.sample_type,
                    "--sites, text and other non-pprof formats: inuse_space (default), "
                    "inuse_objects, alloc_space or alloc_objects");
    cmd->add_option("--max-overhead", args->sites.max_overhead_pct,
                    "--sites: end the window early, removing every probe, once the probes take "
                    "more than PCT % of the target's cpu time over the last second (100: no "
                    "limit)")
        ->check(CLI::Range(0.1, 100.0))
        ->capture_default_str();
    cmd->add_flag("--no-walk", args->sites.no_walk,
                  "--sites on glibc: skip the heap walk at the end that checks each in-use "
                  "sample is live and adds its C++ type (it stops the threads once)");
    cmd->add_option("--stop-timeout", args->stop_timeout_ms,
                    "Milliseconds to wait for a thread to stop (a thread in D state costs this one "
                    "wait; its registers are then missing from the leak scan)")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();
    cmd->add_option("--max-stop", args->max_stop_ms,
                    "Longest the walk may keep the target stopped, in ms (0: no limit). A walk "
                    "that needs longer ends there and the snapshot is partial: malloc's metadata "
                    "is only consistent while every thread is stopped, so it cannot continue "
                    "after the target ran. About 1 ms per MB of heap")
        ->check(CLI::Range(0, 3600000))
        ->capture_default_str();
    cmd->callback([runner, args] { *runner = [args] { return run_heap(*args); }; });
}

}  // namespace pmprof
