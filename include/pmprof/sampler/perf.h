// cpu mode sampled by the kernel: per-thread perf_event_open task-clock events, the
// kernel copying each sample's user registers and the top of its user stack into a ring buffer
// (as `perf record --call-graph dwarf` does). No thread is ever stopped; pmprof unwinds and
// symbolizes the copies with the same unwinder and symbolizer as the ptrace path, so profiles,
// labels and formats are the same. The backend choice (auto, ptrace, perf) lives here too.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pmprof/sampler/sampler.h"
#include "pmprof/support/error.h"

namespace pmprof {

/// Parses "auto" / "ptrace" / "perf".
Result<CpuBackend> parse_cpu_backend(std::string_view name);
const char* cpu_backend_name(CpuBackend b);

/// What the kernel allows for `pid`, found by opening (and closing at once) one task-clock
/// sampling event on it: nothing is sampled or stopped.
struct PerfAccess {
    bool allowed = false;  // a user-register/user-stack sampling event can be opened
    bool kernel = false;   // kernel-mode time is sampled too (root, CAP_PERFMON, paranoid <= 1)
    int paranoid = 2;      // /proc/sys/kernel/perf_event_paranoid
    std::string why;       // one line: why not allowed, or what is limited and how to lift it
};
PerfAccess probe_perf_access(pid_t pid);

/// Which backend runs `opt` on `pid`: wall mode is always ptrace; cpu mode with auto takes perf
/// when probe_perf_access allows it. Fails only when perf is asked for and not allowed (the
/// message names the setting that would allow it). `reason` says why the choice was made.
struct BackendChoice {
    CpuBackend backend = CpuBackend::Ptrace;  // Ptrace or Perf, never Auto
    std::string reason;
    bool kernel_time = true;  // perf: kernel-mode time sampled (false: paranoid 2, user only)
};
Result<BackendChoice> choose_backend(pid_t pid, const SamplerOptions& opt);

/// Opens the events on every thread of each of `pids`, then samples until the duration ends,
/// stop_requested(), opt.stop(), or every one of them has exited (a zombie counts as exited: a
/// child of pmprof, as `record`'s command is, stays one until it is reaped). With
/// opt.subprocesses their child processes are sampled too: those present at the start get
/// events of their own, later ones inherit them at their fork (the kernel writes their samples
/// into the same rings), and each is unwound and symbolized from its own maps, opened at its
/// first sample. Never stops, signals or writes to a target; a target must not be traced by
/// the calling thread (nothing would answer its ptrace-stops). The stats say backend "perf"
/// and `choice.reason`.
Result<SamplerResult> run_perf_sampler(const std::vector<pid_t>& pids, const SamplerOptions& opt,
                                       const BackendChoice& choice);
/// One process.
Result<SamplerResult> run_perf_sampler(pid_t pid, const SamplerOptions& opt,
                                       const BackendChoice& choice);

/// The same in two steps: the events opened (sampling starts) by open_perf_sampler, read until
/// the end by run_perf_sampler. `record` opens them the moment its command has exec'd, from the
/// thread that launched it, before that thread's exit detaches the command: a child the command
/// forks after that inherits them. `opt` must outlive the run.
struct PerfRun;
struct PerfRunDeleter {
    void operator()(PerfRun* r) const;
};
using PerfRunPtr = std::unique_ptr<PerfRun, PerfRunDeleter>;
Result<PerfRunPtr> open_perf_sampler(const std::vector<pid_t>& pids, const SamplerOptions& opt,
                                     const BackendChoice& choice);
Result<SamplerResult> run_perf_sampler(PerfRunPtr run);

}  // namespace pmprof
