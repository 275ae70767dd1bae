// `pmprof stacks PID`: a grouped, symbolized thread dump of a live process.
#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "pmprof/error.h"
#include "pmprof/log.h"
#include "pmprof/output_folded.h"
#include "pmprof/output_threads.h"
#include "pmprof/report.h"
#include "pmprof/threads.h"

namespace pmprof {
namespace {

struct StacksArgs {
    std::string pid;
    std::string format = "text";
    std::string output;
    std::string unwinder = "dwfl";
    std::vector<std::string> threads;
    size_t max_depth = 256;
    int stop_timeout_ms = 100;
    bool no_group = false;
    bool no_source = false;
    bool no_inline = false;
    bool consistent = false;
};

int run_stacks(const StacksArgs& a) {
    pid_t pid = parse_pid(a.pid);
    DumpOptions opt;
    auto kind = parse_unwinder_kind(a.unwinder);
    if (!kind.ok()) throw FatalError(kind.error().message, {}, kExitUsage);
    opt.unwinder = *kind;
    opt.max_depth = a.max_depth;
    opt.symbolize.source_lines = !a.no_source;
    opt.symbolize.inlines = !a.no_inline;
    opt.thread_filter = a.threads;
    opt.capture.stop_timeout = std::chrono::milliseconds(a.stop_timeout_ms);
    opt.consistent = a.consistent;
    // Before the target is touched: a path that cannot be written is refused at once.
    const OutputPath out = prepare_output(a.output, format_is_binary(a.format));

    auto dump = take_thread_dump(pid, opt);
    if (!dump.ok()) throw FatalError(dump.error().message);

    std::string data;
    if (a.format == "text") {
        data = format_thread_dump_text(*dump, {!a.no_group, !a.no_source});
    } else if (a.format == "json") {
        data = format_thread_dump_json(*dump);
    } else if (a.format == "folded") {
        FoldedOptions fo;
        fo.per_thread = true;
        data = write_folded(thread_dump_to_profile(*dump), fo);
    } else {  // pprof, callgrind, svg: the threads/count profile through the shared writers
        RenderOptions ro;
        ro.title = "Threads of " + std::to_string(pid);
        auto rendered = render_profile(thread_dump_to_profile(*dump), a.format, ro);
        if (!rendered.ok()) throw FatalError(rendered.error().message);
        data = std::move(*rendered);
    }
    write_output(out, data);

    size_t not_captured = 0;
    for (const ThreadEntry& t : dump->threads) not_captured += t.captured ? 0 : 1;
    if (dump->target_exited)
        log_warn("pid {} exited during the dump{}", pid,
                 not_captured ? ": the threads not captured before it did are marked" : "");
    // The longest any one thread stayed stopped (from pmprof seeing its stop to its detach),
    // and the span from the first interrupt to the last detach.
    log_warn("{} threads, target stopped {} us at most per thread ({} us from first interrupt to "
             "last detach), {} not captured, {} unwind failures, {:.1f} ms total",
             dump->threads.size(), dump->stats.longest_stop_ns / 1000,
             dump->stats.stop_window_ns / 1000, not_captured, dump->unwind_failures,
             static_cast<double>(dump->wall_ns) / 1e6);
    return not_captured || dump->target_exited ? kExitPartial : kExitComplete;
}

}  // namespace

void add_stacks_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<StacksArgs>();
    CLI::App* cmd = app.add_subcommand(
        "stacks", "Print every thread's stack once, grouped, with source lines (a thread dump)");
    cmd->footer(std::string("\nAll threads are interrupted together; each is detached as soon as "
                            "its registers and stack top are copied (--consistent holds them all "
                            "until the last has stopped); unwinding and symbolization happen "
                            "afterwards.\n") +
                kExitCodesHelp);
    cmd->add_option("pid", args->pid, "Process id of the target")->required();
    cmd->add_option("-f,--format", args->format, "Output format")
        ->check(CLI::IsMember({"text", "json", "folded", "pprof", "callgrind", "svg"}))
        ->capture_default_str();
    cmd->add_option("-o,--output", args->output, kOutputHelp);
    cmd->add_flag("--no-group", args->no_group, "Print every thread separately");
    cmd->add_option("--max-depth", args->max_depth, "Frames per stack at most (deeper: truncated)")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    cmd->add_flag("--no-source", args->no_source, "Do not look up file:line");
    cmd->add_flag("--no-inline", args->no_inline, "Do not expand inlined frames");
    cmd->add_option("-t,--thread", args->threads, "Only these threads (tid or name; repeatable)");
    cmd->add_option("--unwinder", args->unwinder, "Unwinder: dwfl or libunwind")
        ->check(CLI::IsMember({"dwfl", "libunwind"}))
        ->capture_default_str();
    cmd->add_flag("--consistent", args->consistent,
                  "Hold every thread until all have stopped: one instant for all threads, but "
                  "each stays stopped until the slowest one stops");
    cmd->add_option("--stop-timeout", args->stop_timeout_ms,
                    "Milliseconds to wait for a thread to stop before skipping it")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();
    cmd->callback([runner, args] { *runner = [args] { return run_stacks(*args); }; });
}

}  // namespace pmprof
