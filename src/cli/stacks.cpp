// `pmprof stacks PID`: a grouped, symbolized thread dump of a live process.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/options.h"
#include "pmprof/cli/watch.h"
#include "pmprof/os/process_tree.h"
#include "pmprof/os/procfs.h"
#include "pmprof/output/folded.h"
#include "pmprof/output/threads.h"
#include "pmprof/profile/labels.h"
#include "pmprof/report/report.h"
#include "pmprof/support/error.h"
#include "pmprof/support/log.h"
#include "pmprof/threads/dump.h"

namespace pmprof {
namespace {

struct StacksArgs {
    StackTargetArgs t;
    std::string format;  // "" : from -o's name, else text
    std::string output;
    int stop_timeout_ms = 100;
    bool no_group = false;
    bool consistent = false;
    size_t watch = 0;
    std::string interval = "1s";
    bool no_locks = false;
    bool no_kernel_stack = false;
};

/// The exit status: a deadlock is the answer to "why is it hung", whatever else happened.
int exit_status(const ThreadDump& dump) {
    if (dump.locks.deadlock()) return kExitDeadlock;
    for (const ThreadEntry& t : dump.threads)
        if (!t.captured) return kExitPartial;
    return kExitComplete;
}

int run_watch(const StacksArgs& a, const OutputPath& out, pid_t pid, const DumpOptions& opt) {
    if (a.format != "text" && a.format != "json")
        throw FatalError("--watch writes text or json only", {}, kExitUsage);
    int64_t interval_ns = parse_duration_ns(a.interval);
    if (interval_ns < 10'000'000)
        throw FatalError("--interval must be at least 10ms", {}, kExitUsage);
    auto w = watch_threads(pid, opt, a.watch, std::chrono::milliseconds(interval_ns / 1'000'000));
    if (!w.ok()) throw FatalError(w.error().message);
    std::string data = a.format == "json" ? format_watch_json(*w)
                                          : format_watch_text(*w, {!a.no_group, !a.t.no_source});
    write_output(out, data);
    size_t stuck = 0;
    for (const ThreadProgress& p : w->threads) stuck += p.verdict == Progress::Stuck ? 1 : 0;
    log_warn("{} dumps over {:.1f} s: {} of {} threads stuck{}", w->dumps, w->span_s, stuck,
             w->threads.size(), w->last.locks.deadlock() ? ", deadlock" : "");
    return exit_status(w->last);
}

/// The warnings and the one summary line of one dump, on stderr.
void report_dump(const ThreadDump& dump, int stop_timeout_ms, bool name_pid) {
    size_t not_captured = 0;
    std::string eintr;
    size_t eintr_threads = 0;
    for (const ThreadEntry& t : dump.threads) {
        not_captured += t.captured ? 0 : 1;
        // One line each for the first few; thousands of threads would bury the summary.
        if (!t.captured && !t.error.empty() && not_captured <= 10)
            log_warn("not captured: {}", t.error);
        if (t.eintr_syscall.empty()) continue;
        ++eintr_threads;
        eintr +=
            fmt::format("{}{} ({}, {})", eintr.empty() ? "" : ", ", t.name, t.tid, t.eintr_syscall);
    }
    // A stop makes some blocked calls fail with EINTR (docs/facts.md): the program sees that.
    if (eintr_threads > 0)
        log_warn("{} stopped threads were blocked in a call that the stop made fail with EINTR: "
                 "{}",
                 eintr_threads, eintr);
    if (dump.target_exited)
        log_warn("pid {} exited during the dump{}", dump.pid,
                 not_captured ? ": the threads not captured before it did are marked" : "");
    if (not_captured > 10) log_warn("... and {} more not captured", not_captured - 10);
    // Why, in numbers: a thread that exited is no loss, one that did not stop is (D state).
    const SnapshotStats& st = dump.stats;
    std::string why;
    if (st.threads_exited > 0) why += fmt::format(", {} exited", st.threads_exited);
    if (st.threads_timed_out > 0)
        why += fmt::format(", {} not stopped within {} ms", st.threads_timed_out, stop_timeout_ms);
    if (st.threads_abandoned > 0) why += fmt::format(", {} left at ^C", st.threads_abandoned);
    if (!why.empty()) why = " (" + why.substr(2) + ")";
    // The longest any one thread stayed stopped (from pmprof seeing its stop to its detach),
    // and the span from the first interrupt to the last detach.
    log_warn("{}{} threads, target stopped {} us at most per thread ({} us from first interrupt "
             "to last detach), {} not captured{}, {} unwind failures, {:.1f} ms total",
             name_pid ? fmt::format("pid {}: ", dump.pid) : std::string(), dump.threads.size(),
             st.longest_stop_ns / 1000, st.stop_window_ns / 1000, not_captured, why,
             dump.unwind_failures, static_cast<double>(dump.wall_ns) / 1e6);
    if (dump.locks.deadlock())
        log_warn("deadlock: {} cycle{} of threads waiting for each other", dump.locks.cycles.size(),
                 dump.locks.cycles.size() == 1 ? "" : "s");
}

/// The dumps in the chosen format: text and json one process after the other (json: an array
/// when there are several), the profile formats one threads/count profile whose samples carry
/// pid and comm labels when there are several processes.
std::string format_dumps(const std::vector<ThreadDump>& dumps, const StacksArgs& a) {
    std::string data;
    if (a.format == "text") {
        for (const ThreadDump& d : dumps) {
            if (dumps.size() > 1)
                data +=
                    fmt::format("{}== pid {}: {} ==\n", data.empty() ? "" : "\n", d.pid, d.command);
            data += format_thread_dump_text(d, {!a.no_group, !a.t.no_source});
        }
        return data;
    }
    if (a.format == "json") {
        if (dumps.size() == 1) return format_thread_dump_json(dumps.front());
        for (const ThreadDump& d : dumps) {
            std::string one = format_thread_dump_json(d);
            while (!one.empty() && one.back() == '\n') one.pop_back();
            data += (data.empty() ? "[" : ",\n") + one;
        }
        return data + "]\n";
    }
    std::vector<Profile> profiles;
    for (const ThreadDump& d : dumps) {
        profiles.push_back(thread_dump_to_profile(d));
        if (dumps.size() > 1) {
            auto stat = read_task_stat(d.pid, d.pid);
            add_sample_labels(profiles.back(),
                              process_labels(d.pid, stat.ok() ? stat->comm : std::string()));
        }
    }
    std::vector<std::pair<const Profile*, int>> parts;
    parts.reserve(profiles.size());
    for (const Profile& p : profiles) parts.emplace_back(&p, 1);
    const Profile merged =
        profiles.size() == 1 ? std::move(profiles.front()) : merge_profiles(parts);
    if (a.format == "folded") {
        FoldedOptions fo;
        fo.per_thread = true;
        return write_folded(merged, fo);
    }
    // pprof, callgrind, svg: the threads/count profile through the shared writers
    RenderOptions ro;
    ro.title = "Threads of " + a.t.pid;
    auto rendered = render_profile(merged, a.format, ro);
    if (!rendered.ok()) throw FatalError(rendered.error().message);
    return std::move(*rendered);
}

int run_stacks(StacksArgs a) {
    a.format = format_for_output(a.format, a.output, "text", /*json=*/true);
    const std::vector<pid_t> roots = parse_pid_list(a.t.pid);
    DumpOptions opt;
    auto kind = parse_unwinder_kind(a.t.unwinder);
    if (!kind.ok()) throw FatalError(kind.error().message, {}, kExitUsage);
    opt.unwinder = *kind;
    opt.max_depth = a.t.max_depth;
    opt.symbolize.source_lines = !a.t.no_source;
    opt.symbolize.inlines = !a.t.no_inline;
    opt.thread_filter = a.t.threads;
    opt.capture.stop_timeout = std::chrono::milliseconds(a.stop_timeout_ms);
    opt.consistent = a.consistent;
    // Before the target is touched: a path that cannot be written is refused at once.
    const OutputPath out = prepare_output(a.output, format_is_binary(a.format));
    opt.locks = !a.no_locks;
    opt.kernel_stacks = !a.no_kernel_stack;
    if (a.watch > 0) {
        if (roots.size() > 1 || a.t.subprocesses)
            throw FatalError("--watch follows one process: give one pid, without --subprocesses",
                             {}, kExitUsage);
        return run_watch(a, out, roots.front(), opt);
    }

    // Every process of the tree as it is now, one dump each (one after the other: each is
    // stopped only for its own copy).
    const std::vector<pid_t> pids = a.t.subprocesses ? list_process_tree(roots) : roots;
    std::vector<ThreadDump> dumps;
    for (pid_t pid : pids) {
        auto dump = take_thread_dump(pid, opt);
        const bool root = std::find(roots.begin(), roots.end(), pid) != roots.end();
        if (!dump.ok() && root) throw FatalError(dump.error().message);
        if (!dump.ok()) {
            log_info("child process {}: {}", pid, dump.error().message);  // exited meanwhile
            continue;
        }
        dumps.push_back(std::move(*dump));
    }
    write_output(out, format_dumps(dumps, a));
    int status = kExitComplete;
    for (const ThreadDump& d : dumps) {
        report_dump(d, a.stop_timeout_ms, dumps.size() > 1);
        const int s = exit_status(d);
        if (s == kExitDeadlock || (s == kExitPartial && status == kExitComplete)) status = s;
    }
    if (dumps.size() > 1) log_warn("{} processes", dumps.size());
    return status;
}

}  // namespace

void add_stacks_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<StacksArgs>();
    CLI::App* cmd = app.add_subcommand(
        "stacks", "Print every thread's stack once, grouped, with source lines (a thread dump)");
    cmd->footer(std::string("\nThreads are interrupted 64 at a time; each is detached as soon as "
                            "its registers and stack top are copied (--consistent holds them all "
                            "until the last has stopped); unwinding and symbolization happen "
                            "afterwards.\n\nA thread blocked on a glibc lock gets a lock line: "
                            "the mutex, rwlock, condition variable or semaphore (named by its "
                            "variable, or the stack or heap it lives on) and, for mutexes and "
                            "write-held rwlocks, the owner thread glibc records (glibc 2.36 "
                            "x86_64 layouts; condition variables and semaphores have none). "
                            "Threads waiting for each other in a cycle are reported as a "
                            "deadlock (exit status 3), other waits as lock chains. As root, the "
                            "kernel stack of each blocked thread is shown above its user "
                            "stack.\n") +
                kExitCodesHelp);
    add_stack_target_options(cmd, &args->t);
    cmd->add_option("-f,--format", args->format,
                    "text, json, folded, pprof, callgrind or svg (default: from -o's name: .txt "
                    "text, .json json, .pb.gz pprof, .svg svg, callgrind.out.* callgrind, "
                    ".folded folded; else text)")
        ->check(CLI::IsMember({"text", "json", "folded", "pprof", "callgrind", "svg"}));
    cmd->add_option("-o,--output", args->output, kOutputHelp);
    cmd->add_flag("--no-group", args->no_group, "Print every thread separately");
    cmd->add_flag("--consistent", args->consistent,
                  "Hold every thread until all have stopped: one instant for all threads, but "
                  "each stays stopped until the slowest one stops");
    cmd->add_option("--watch", args->watch,
                    "Take N dumps --interval apart and tell stuck, spinning and progressing "
                    "threads apart (text or json)")
        ->check(CLI::Range(2, 1000));
    cmd->add_option("--interval", args->interval, "Time between --watch dumps (500ms, 2s)")
        ->capture_default_str();
    cmd->add_flag("--no-locks", args->no_locks, "No lock wait-for analysis");
    cmd->add_flag("--no-kernel-stack", args->no_kernel_stack,
                  "Do not read /proc/PID/task/TID/stack of blocked threads");
    cmd->add_option(
           "--stop-timeout", args->stop_timeout_ms,
           "Milliseconds to wait for a thread to stop before skipping it (a thread in D state "
           "costs this one wait and is named with its wait channel)")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();
    cmd->callback([runner, args] { *runner = [args] { return run_stacks(*args); }; });
}

}  // namespace pmprof
