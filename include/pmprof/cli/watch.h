// `pmprof stacks --watch N`: N thread dumps some time apart, and for each thread whether it made
// progress (cpu time, a changed stack, context switches) between them, is stuck (the same stack,
// no cpu, no context switch), or spins (on cpu, never leaving one function, never blocking).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "pmprof/output/threads.h"
#include "pmprof/support/error.h"
#include "pmprof/threads/dump.h"

namespace pmprof {

enum class Progress { Progressing, Stuck, Spinning, Gone };

struct ThreadProgress {
    pid_t tid = 0;
    std::string name;
    Progress verdict = Progress::Progressing;
    uint64_t cpu_ns = 0;     // on cpu between the dumps (pmprof's own stops excluded)
    uint64_t voluntary = 0;  // context switches between the dumps
    uint64_t involuntary = 0;
    bool stack_changed = false;  // its pcs differed between two dumps
    bool same_function = true;   // its innermost function was the same in every dump
    std::string function;        // that function
    double watched_s = 0;        // the time between the first and the last dump it was in
};

/// What one /proc read of a thread said (schedstat and status).
struct ThreadCounters {
    uint64_t run_ns = 0;
    uint64_t voluntary = 0;
    uint64_t involuntary = 0;
    bool ok = false;
};

struct WatchResult {
    size_t dumps = 0;
    std::chrono::milliseconds interval{0};
    double span_s = 0;                    // first to last dump
    std::vector<ThreadProgress> threads;  // stuck first, then spinning, progressing, gone
    ThreadDump last;                      // the last dump, with its lock analysis
};

/// Takes `count` (>= 2) dumps `interval` apart. Counters are read after each dump has settled
/// (the thread back in its syscall) and right before the next, so pmprof's own stops count for
/// nothing.
Result<WatchResult> watch_threads(pid_t pid, const DumpOptions& opt, size_t count,
                                  std::chrono::milliseconds interval);

/// The verdict for one thread from its dumps' stacks and the counters around them. Pure.
/// `intervals` is the number of gaps between dumps, `gap_ns` their total length.
ThreadProgress judge_progress(const std::vector<const ThreadEntry*>& seen, uint64_t cpu_ns,
                              uint64_t voluntary, uint64_t involuntary, size_t intervals,
                              uint64_t gap_ns);

std::string format_watch_text(const WatchResult& w, const ThreadTextOptions& opt);
std::string format_watch_json(const WatchResult& w);

}  // namespace pmprof
