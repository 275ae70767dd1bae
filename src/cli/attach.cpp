// `pmprof attach PID` and `pmprof record -- CMD ARGS...`: the sampling profiler's command
// line. Both run the sampler (src/sampler/loop.cpp) on one TraceSession owned by this thread,
// detach, write a gzipped pprof profile and print a summary with the top-10 table on stderr.
#include <CLI/CLI.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/options.h"
#include "pmprof/os/clock.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/output/pprof.h"
#include "pmprof/output/summary.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/report/report.h"
#include "pmprof/sampler/perf.h"
#include "pmprof/sampler/sampler.h"
#include "pmprof/support/error.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

struct SampleArgs {
    std::string pid;
    std::vector<std::string> command;
    std::string duration;  // "" : attach 10s, record until CMD exits
    double rate = 99;
    std::string mode = "cpu";  // as serve's /debug/pprof/profile; pmprof(1) says why
    std::string output;
    std::string format;  // "" : from the output's file name, else pprof
    std::vector<std::string> threads;
    std::string max_pause = "5%";
    std::string unwinder = "dwfl";
    std::string backend = "auto";
    bool kernel = false;
    size_t max_depth = 256;
    int stop_timeout_ms = 100;
    bool no_inline = false;
    bool no_source = false;
    bool no_progress = false;
    bool subprocesses = false;
};

/// "5%", "5" (percent) or "0.05%"; the budget as a fraction of wall time.
double parse_max_pause(const std::string& text) {
    std::string number = text;
    if (!number.empty() && number.back() == '%') number.pop_back();
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(number.c_str(), &end);
    if (number.empty() || end != number.c_str() + number.size() || errno != 0 || !(v > 0) ||
        v > 100)
        throw FatalError("'" + text + "' is not a pause budget (a percentage in (0, 100], e.g. 5%)",
                         {}, kExitUsage);
    return v / 100;
}

/// pmprof-<pid>-<yyyymmdd-hhmmss>.pb.gz, local time.
std::string default_output(pid_t pid) {
    time_t t = time(nullptr);
    tm local{};
    localtime_r(&t, &local);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &local);
    return "pmprof-" + std::to_string(pid) + "-" + stamp + ".pb.gz";
}

SamplerOptions sampler_options(const SampleArgs& a, int64_t default_duration_ns,
                               const std::string& command_line) {
    SamplerOptions o;
    auto mode = parse_sample_mode(a.mode);
    if (!mode.ok()) throw FatalError(mode.error().message, {}, kExitUsage);
    o.mode = *mode;
    auto kind = parse_unwinder_kind(a.unwinder);
    if (!kind.ok()) throw FatalError(kind.error().message, {}, kExitUsage);
    o.unwinder = *kind;
    auto backend = parse_cpu_backend(a.backend);
    if (!backend.ok()) throw FatalError(backend.error().message, {}, kExitUsage);
    o.backend = *backend;
    if (o.backend == CpuBackend::Perf && o.mode == SampleMode::Wall)
        throw FatalError("--backend perf samples cpu time only: use it with --mode cpu (wall mode "
                         "needs every thread's stack, blocked or not, which only ptrace gives)",
                         {}, kExitUsage);
    o.kernel_frames = a.kernel;
    o.rate_hz = a.rate;
    o.duration_ns = a.duration.empty() ? default_duration_ns : parse_duration_ns(a.duration);
    o.max_pause_fraction = parse_max_pause(a.max_pause);
    o.thread_filter = a.threads;
    o.max_depth = a.max_depth;
    o.capture.stop_timeout = std::chrono::milliseconds(a.stop_timeout_ms);
    o.symbolize.inlines = !a.no_inline;
    o.symbolize.source_lines = !a.no_source;
    o.progress = !a.no_progress && isatty(STDERR_FILENO) && log_level() >= LogLevel::Warn;
    o.command_line = command_line;
    o.subprocesses = a.subprocesses;
    o.process_labels = a.subprocesses;
    return o;
}

/// pprof unless --format or the output's file name says otherwise.
std::string output_format(const std::string& output, const std::string& format) {
    return format_for_output(format, output, "pprof", /*json=*/false);
}

/// Where the profile goes, checked before the target is touched.
OutputPath prepare_profile_output(const std::string& output, const std::string& format) {
    return prepare_output(output, format_is_binary(output_format(output, format)));
}

/// True when an executable `name` is in one of $PATH's directories.
bool on_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    for (size_t begin = 0; begin <= dirs.size();) {
        size_t end = dirs.find(':', begin);
        if (end == std::string::npos) end = dirs.size();
        const std::string dir = end > begin ? dirs.substr(begin, end - begin) : ".";
        if (::access((dir + "/" + name).c_str(), X_OK) == 0) return true;
        begin = end + 1;
    }
    return false;
}

/// Writes the profile and the summary; returns false when the profile is empty.
bool write_results(const SamplerResult& r, const OutputPath& out, const std::string& format) {
    const std::string fmt_name = output_format(out.user_path, format);
    auto data = render_profile(r.profile, fmt_name, {});
    if (!data.ok()) throw FatalError("writing the profile: " + data.error().message);
    write_output(out, *data);
    if (log_level() >= LogLevel::Info) {
        std::string summary = format_sampler_summary(r);
        summary += fmt::format("pmprof: wrote {}\n", out.display());
        std::fputs(summary.c_str(), stderr);
    } else if (log_level() >= LogLevel::Warn) {
        std::fputs(format_sampler_line(r, out.display()).c_str(), stderr);
    }
    // The next step is usually `go tool pprof -http`, which fails without graphviz's dot.
    if (fmt_name == "pprof" && out.kind == OutputPath::Kind::Regular && !on_path("dot"))
        log_warn("hint: `go tool pprof -http=: {}` draws with graphviz's dot, which is not "
                 "installed (apt-get install graphviz)",
                 out.display());
    return r.stats.samples > 0;
}

std::string joined(const std::vector<std::string>& words) {
    std::string out;
    for (const std::string& w : words) out += (out.empty() ? "" : " ") + w;
    return out;
}

/// --backend for `opt` on `pid` (0: a process of ours not started yet); --backend perf
/// without permission ends the run here, before anything is traced.
BackendChoice backend_for(pid_t pid, const SamplerOptions& opt) {
    auto choice = choose_backend(pid, opt);
    if (!choice.ok()) throw FatalError(choice.error().message);
    if (opt.kernel_frames && (choice->backend != CpuBackend::Perf || !choice->kernel_time))
        log_warn("--kernel: no kernel frames ({})",
                 choice->backend != CpuBackend::Perf
                     ? "only the perf backend sees them"
                     : "kernel time is not sampled here: perf_event_paranoid <= 1 or "
                       "CAP_PERFMON allows it");
    return *choice;
}

/// The ptrace backend's result says why it ran.
Result<SamplerResult> noted(Result<SamplerResult> r, const BackendChoice& choice) {
    if (r.ok()) r->stats.backend_reason = choice.reason;
    return r;
}

int run_attach(const SampleArgs& a) {
    const std::vector<pid_t> pids = parse_pid_list(a.pid);
    const pid_t pid = pids.front();
    const std::string cmdline = read_cmdline(pid);
    SamplerOptions opt =
        sampler_options(a, 10'000'000'000, "pmprof attach " + a.pid + ": " + cmdline);
    opt.process_labels = opt.process_labels || pids.size() > 1;  // the profile says whose
    const OutputPath out =
        prepare_profile_output(a.output.empty() ? default_output(pid) : a.output, a.format);
    const BackendChoice choice = backend_for(pid, opt);

    std::optional<Result<SamplerResult>> result;
    if (choice.backend == CpuBackend::Perf) {
        result = run_perf_sampler(pids, opt, choice);  // nothing is stopped or traced
    } else if (opt.process_labels) {
        // Several processes: each on a tracer thread of its own (src/sampler/tree.cpp).
        result = noted(run_tree_sampler(pids, opt), choice);
    } else {
        // Traced from a thread of its own, whose exit detaches without a stop what is still
        // traced (the target runs untraced before anything is written).
        result = noted(sample_process(pid, opt), choice);
    }
    if (!result->ok()) throw FatalError(result->error());
    const bool any = write_results(**result, out, a.format);
    if (!any)
        log_warn("no samples were taken{}",
                 opt.thread_filter.empty() ? "" : " (does --thread match?)");
    // Ctrl-C or SIGTERM is the normal way to end an open-ended run: exit 0. A
    // sample missed because a thread did not stop in time is counted in the summary, not a
    // partial profile: the other samples of that thread are still there.
    const bool partial = !any || (*result)->end == SamplerEnd::TargetExited;
    return partial ? kExitPartial : kExitComplete;
}

/// The shell's convention: the status, or 128 + the signal that killed it.
int exit_code_of(const ExitInfo& e) { return e.signaled ? 128 + e.status : e.status; }

/// After detaching, CMD is still our child: wait for it so its exit status becomes ours. A second
/// SIGINT/SIGTERM stops waiting (CMD keeps running).
int wait_for_child(pid_t pid, bool announce = true) {
    clear_stop_request();
    if (announce) log_warn("detached; waiting for pid {} to exit (Ctrl-C to stop waiting)", pid);
    while (true) {
        int status = 0;
        pid_t r = ::waitpid(pid, &status, 0);
        if (r == pid) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
            continue;
        }
        if (r < 0 && errno == EINTR && !stop_requested()) continue;
        if (r < 0 && errno == ECHILD) return kExitComplete;  // reaped already
        log_warn("stopped waiting; pid {} keeps running", pid);
        return kExitComplete;
    }
}

/// Writes the profile and returns CMD's exit status, waiting for CMD when it still runs.
int finish_record(const Result<SamplerResult>& result, const OutputPath& out, const SampleArgs& a,
                  pid_t pid, const std::optional<ExitInfo>& exited) {
    if (!result.ok()) {
        log_warn("{}", result.error().message);
        return wait_for_child(pid);
    }
    write_results(*result, out, a.format);
    if (result->end == SamplerEnd::TargetExited && result->exit.exited)
        return exit_code_of(result->exit);
    if (exited) return exit_code_of(*exited);
    // The perf backend saw CMD exit and left it to us to reap: its status, at once.
    return wait_for_child(pid, /*announce=*/result->end != SamplerEnd::TargetExited);
}

/// CMD's own process did (almost) none of the work its children did: without --subprocesses
/// the profile shows only the former. The children's cpu time is what the kernel added to ours
/// when CMD was reaped (RUSAGE_CHILDREN, as time(1) reports it), minus CMD's own.
void warn_if_children_worked(const Result<SamplerResult>& result, const rusage& before,
                             const std::vector<std::string>& command) {
    if (!result.ok()) return;
    rusage after{};
    getrusage(RUSAGE_CHILDREN, &after);
    const int64_t tree_ns = timeval_ns(after.ru_utime) + timeval_ns(after.ru_stime) -
                            timeval_ns(before.ru_utime) - timeval_ns(before.ru_stime);
    int64_t own_ns = static_cast<int64_t>(result->stats.threads_run_ns);
    const Profile& p = result->profile;
    for (size_t i = 0; i < p.sample_types.size(); ++i) {
        if (p.sample_types[i].type != "cpu") continue;
        int64_t sum = 0;
        for (const Sample& s : p.samples) sum += i < s.values.size() ? s.values[i] : 0;
        own_ns = std::max(own_ns, sum);
    }
    const int64_t children_ns = tree_ns - own_ns;
    constexpr int64_t kMinChildrenNs = 200'000'000;  // below this, a child's work is noise
    if (children_ns < kMinChildrenNs || own_ns * 10 > tree_ns) return;
    log_warn("{}'s own process ran {:.2f} s on a cpu, its child processes {:.2f} s, which this "
             "profile does not show: add --subprocesses to profile them too",
             command.front(), static_cast<double>(own_ns) / 1e9,
             static_cast<double>(children_ns) / 1e9);
}

int run_record(const SampleArgs& a) {
    if (a.command.empty())
        throw FatalError("record needs a command: pmprof record -- CMD ARGS...", {}, kExitUsage);
    // Parse everything before starting CMD, so a usage error never leaves a child behind.
    SamplerOptions opt = sampler_options(a, 0, "pmprof record: " + joined(a.command));
    // The default name holds CMD's pid, known only once it runs: the current directory is
    // checked now, under the name it will have (pid 0 for the check).
    std::optional<OutputPath> out;
    if (!a.output.empty())
        out = prepare_profile_output(a.output, a.format);
    else
        prepare_profile_output(default_output(0), a.format);
    const BackendChoice choice = backend_for(0, opt);  // CMD will run as we do
    rusage children_before{};
    getrusage(RUSAGE_CHILDREN, &children_before);
    std::optional<Result<SamplerResult>> result;
    pid_t pid = 0;
    std::optional<ExitInfo> exited;
    PerfRunPtr perf_run;
    // CMD is forked by the tracer thread; once that thread exits, CMD is still this process's
    // child (waitpid from any thread of the group) and is detached without a stop.
    run_on_tracer_thread([&] {
        const bool perf = choice.backend == CpuBackend::Perf;
        auto session = TraceSession::launch(a.command, /*exit_kill=*/false, /*hold_at_exec=*/perf);
        if (!session.ok()) throw FatalError(session.error());
        pid = (*session)->pid();
        // The perf backend: the events are opened while CMD waits in its exec stop, before its
        // first instruction, so every child it forks inherits them; then CMD is sampled untraced
        // from the calling thread below, this thread's exit detaching it without a stop. Kept
        // traced here, any signal to CMD (its SIGCHLD from a child, a kill) would stop it with
        // nothing left to answer that stop.
        if (perf) {
            auto opened = open_perf_sampler({pid}, opt, choice);
            (*session)->release_exec_hold();
            if (opened.ok())
                perf_run = std::move(*opened);
            else
                result = opened.error();
            return;
        }
        if (opt.subprocesses) {
            result = noted(run_tree_sampler({pid}, opt, session->get()), choice);
        } else {
            result = noted(run_sampler(**session, opt), choice);
        }
        (*session)->detach_all();
        if ((*session)->process_exited()) exited = (*session)->exit_info();
    });
    // Its threads and children inherit the events; its exit (a zombie, our child) ends the run.
    if (perf_run) result = run_perf_sampler(std::move(perf_run));
    if (!out) out = prepare_profile_output(default_output(pid), a.format);
    // CMD's pid is known only now: the profile names it as attach's does ("pmprof VERB PID: ...",
    // which callgrind's pid: line is read from).
    if (result->ok() && pid > 0) {
        std::vector<std::string>& comments = (*result)->profile.comments;
        const std::string head = "pmprof record: ";
        for (std::string& c : comments)
            if (c.starts_with(head))
                c = "pmprof record " + std::to_string(pid) + ": " + c.substr(head.size());
    }
    const int status = finish_record(*result, *out, a, pid, exited);
    if (!opt.subprocesses) warn_if_children_worked(*result, children_before, a.command);
    return status;
}

void add_common_options(CLI::App* cmd, SampleArgs* a, const std::string& duration_help) {
    cmd->add_option("-d,--duration", a->duration, duration_help);
    cmd->add_option("-r,--rate", a->rate,
                    "Samples per second per thread: of wall time (wall mode) or of the thread's "
                    "cpu time (cpu mode, as perf -F)")
        ->check(CLI::Range(0.1, 10000.0))
        ->capture_default_str();
    cmd->add_option("-m,--mode", a->mode,
                    "cpu: only time on cpu, weighted by each thread's cpu time (as perf record "
                    "and serve's /debug/pprof/profile; with the perf backend no thread is "
                    "stopped); wall: every thread at every tick, running or blocked (where the "
                    "time goes while waiting)")
        ->check(CLI::IsMember({"wall", "cpu"}))
        ->capture_default_str();
    cmd->add_option("--backend", a->backend,
                    "cpu mode's sampler: perf (the kernel's task-clock samples of registers and "
                    "stack top: no thread is ever stopped), ptrace (PTRACE_INTERRUPT ticks), or "
                    "auto: perf when the kernel allows it (root, CAP_PERFMON, "
                    "perf_event_paranoid), else ptrace. Wall mode is always ptrace")
        ->check(CLI::IsMember({"auto", "ptrace", "perf"}))
        ->capture_default_str();
    cmd->add_flag("--kernel", a->kernel,
                  "cpu mode, perf backend: kernel frames on top of each stack (when kernel time "
                  "may be sampled: root, CAP_PERFMON or perf_event_paranoid <= 1)");
    cmd->add_option("-o,--output", a->output,
                    "Profile file (gzipped pprof; '-' for stdout); default "
                    "pmprof-<pid>-<yyyymmdd-hhmmss>.pb.gz. Checked before sampling starts; a "
                    "regular file is replaced atomically, a device or FIFO written through");
    cmd->add_option("-f,--format", a->format,
                    "Output format: pprof, callgrind, folded, svg or text (default: from -o's "
                    "name, else pprof)")
        ->check(CLI::IsMember(kProfileFormats));
    add_thread_option(cmd, &a->threads);
    cmd->add_option("--max-pause", a->max_pause,
                    "Most of its time a thread may spend stopped, in percent; the rate is lowered "
                    "rather than exceed it")
        ->capture_default_str();
    add_unwinder_option(cmd, &a->unwinder);
    add_max_depth_option(cmd, &a->max_depth);
    cmd->add_option(
           "--stop-timeout", a->stop_timeout_ms,
           "Milliseconds to wait for a thread to stop before skipping that sample (a thread "
           "in D state is then named in the summary)")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();
    add_symbol_options(cmd, &a->no_source, &a->no_inline);
    add_subprocesses_option(cmd, &a->subprocesses);
    cmd->add_flag("--no-progress", a->no_progress, "No progress line on stderr");
}

constexpr const char* kSamplingFooter =
    "\ncpu mode with the perf backend (the default where the kernel allows it) stops nothing: "
    "the kernel copies each sample's registers and stack top, pmprof unwinds them after. "
    "Otherwise each tick reads every thread's state from /proc. A thread that has not run since "
    "its "
    "previous sample keeps its stack without being stopped; a blocked thread is unwound from "
    "/proc/PID/task/TID/syscall when possible; the others are stopped one at a time, only to copy "
    "registers and the top of the stack. Ctrl-C or SIGTERM stops sampling and writes what was "
    "collected. Read the profile with `go tool pprof -top FILE` (or -list, -traces, -http; -http "
    "draws with graphviz's dot: apt-get install graphviz).\n";

}  // namespace

void add_attach_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<SampleArgs>();
    CLI::App* cmd =
        app.add_subcommand("attach", "Sample a running process's stacks and write a pprof profile");
    cmd->footer(std::string(kSamplingFooter) +
                "If the target exits first, what was collected is written (exit code 1).\n" +
                kExitCodesHelp);
    add_pid_option(cmd, &args->pid, /*required=*/true, /*several=*/true);
    add_common_options(cmd, args.get(),
                       "How long to sample: 10s, 500ms, 2m or plain seconds (default 10s; 0: until "
                       "Ctrl-C or the target exits)");
    cmd->callback([runner, args] { *runner = [args] { return run_attach(*args); }; });
}

void add_record_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<SampleArgs>();
    CLI::App* cmd = app.add_subcommand(
        "record",
        "Start CMD under pmprof, sample it from its first instruction, exit with its status");
    cmd->parse_complete_callback([args] {
        if (args->command.empty() == args->pid.empty())
            throw CLI::ValidationError(args->pid.empty()
                                           ? "record needs a command: pmprof record -- CMD ARGS..."
                                           : "record takes -p PID or -- CMD ARGS..., not both");
    });
    cmd->footer(std::string(kSamplingFooter) +
                "With --duration, pmprof detaches when it ends, lets CMD run on and still exits "
                "with CMD's status (128+N when signal N killed it).\n" +
                kExitCodesHelp);
    cmd->add_option("command", args->command, "CMD ARGS... (after --)");
    cmd->add_option("-p,--pid", args->pid,
                    "Sample this running process instead of starting CMD (as perf record -p): "
                    "the same as pmprof attach PID");
    add_common_options(cmd, args.get(),
                       "Sample at most this long, then detach and let CMD run (default: until CMD "
                       "exits)");
    cmd->callback([runner, args] {
        *runner = [args] { return args->pid.empty() ? run_record(*args) : run_attach(*args); };
    });
}

}  // namespace pmprof
