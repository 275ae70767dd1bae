// `pmprof heap PID --sites DURATION`: where the memory was allocated. For a window,
// uprobes through perf_event_open on the allocator's exported entry points (glibc, jemalloc,
// tcmalloc, mimalloc alike) record every allocation and free of the target; pmprof samples the
// allocations by bytes as Go does (a mean of sample_rate bytes between samples), unwinds the user
// stack the kernel copied at each sampled one, and follows the sampled pointers to their frees.
// The result is Go's heap profile: alloc_objects, alloc_space, inuse_objects, inuse_space,
// scaled back as Go scales them. The probes belong to pmprof's perf descriptors: the kernel
// removes them when those close, also when pmprof is killed. Nothing is written by pmprof.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "pmprof/profile/profile.h"
#include "pmprof/support/error.h"
#include "pmprof/symbolize/symbolize.h"
#include "pmprof/unwind/unwind.h"

namespace pmprof {

struct AllocSitesOptions {
    int64_t duration_ns = 10'000'000'000;
    uint64_t sample_rate = 512 * 1024;  // mean bytes between samples (Go's MemProfileRate); 1: all
    uint32_t stack_bytes = 8 * 1024;    // user stack copied at each allocation
    size_t max_depth = 128;
    UnwinderKind unwinder = UnwinderKind::Dwfl;
    SymbolizeOptions symbolize;
    // The overhead budget: the largest share of the target's cpu time the probes may take,
    // judged over the last second as the window runs (0.05: 5 %). Past it the window ends
    // early, every probe is removed at once, and what was recorded is returned
    // (AllocSitesStats::stopped_early). 1 or more: never ends the window.
    double max_overhead = 0.05;
    bool confirm = true;  // glibc: walk the heap at the end and check each in-use sample's chunk
    std::string command_line;
};

struct AllocSitesStats {
    std::string allocator;  // "glibc", "jemalloc", ...
    size_t probes = 0;      // functions probed (entry and return probes)
    size_t events = 0;      // perf events opened (probes x threads x cpus)
    size_t threads = 0;
    uint64_t records = 0;                             // probe hits read from the rings
    uint64_t allocs = 0, frees = 0, alloc_bytes = 0;  // every allocation and free seen
    uint64_t nested = 0;  // allocator calls made inside another one (not counted twice)
    uint64_t samples = 0, sampled_bytes = 0;
    uint64_t sampled_freed = 0;  // sampled allocations freed within the window
    uint64_t lost = 0;           // records the kernel dropped (ring full)
    uint64_t throttled = 0;      // times the kernel throttled a probe (perf_event_max_sample_rate)
    uint64_t unmatched = 0;      // returns without their entry (lost, or the window's edges)
    uint64_t unwind_truncated = 0;
    uint64_t wall_ns = 0;                // opening, window, removal
    uint64_t window_ns = 0;              // from the probes enabled to the decision to remove them
    int64_t requested_ns = 0;            // the window asked for
    uint64_t remove_ns = 0;              // from that decision to every probe removed (closed)
    double max_overhead = 0;             // the budget (AllocSitesOptions::max_overhead)
    bool stopped_early = false;          // the budget ended the window
    double stop_share = 0;               // the probes' share of the target's cpu time then
    uint64_t stop_span_ns = 0;           // over this span
    uint64_t probe_cost_ns = 0;          // the probes' cost to the target over the whole window
    bool cost_from_kernel_time = false;  // that estimate came from its kernel time, not hits
    uint64_t pmprof_cpu_ns = 0;          // pmprof's own cpu time in the window
    uint64_t target_cpu_ns = 0;          // the target's cpu time (user + system) in the window
    uint64_t target_sys_ns = 0;          // of which in the kernel (where uprobe traps are spent)
    double target_sys_fraction_before = 0;  // its kernel share over its life before the window
    // glibc: the heap walk at the end
    bool walked = false;
    std::string walk_note;        // why not walked, or the walker's problems
    uint64_t live_confirmed = 0;  // in-use samples whose chunk the walker found live
    uint64_t live_not_found = 0;  // in-use samples the walker did not find (dropped)
    uint64_t typed = 0;           // in-use samples with a C++ type from the walker
};

struct AllocSitesResult {
    Profile profile;
    AllocSitesStats stats;
};

/// Checks that uprobes may be placed on `pid` (the uprobe PMU exists, pmprof has
/// CAP_PERFMON or CAP_SYS_ADMIN) and finds the allocator; the Error is the one line to print.
Result<void> check_alloc_sites(pid_t pid);

/// Records for opt.duration_ns (or until stop_requested(), or the target exits).
Result<AllocSitesResult> record_alloc_sites(pid_t pid, const AllocSitesOptions& opt);

/// The summary lines: probe hits, samples, lost records, the target's estimated slowdown.
std::string format_alloc_sites_summary(const AllocSitesStats& s);

}  // namespace pmprof
