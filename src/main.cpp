// pmprof: entry point. Parses the command line, runs one subcommand, and maps errors to the
// documented exit codes: 0 complete, 1 partial, 2 fatal, 64 usage.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <exception>
#include <string_view>

#include "cli.h"
#include "pmprof/error.h"
#include "pmprof/log.h"
#include "pmprof/signals.h"

namespace {

constexpr const char* kDescription =
    "pmprof: profile any running native Linux process without code changes or a restart.\n"
    "It attaches with ptrace (PTRACE_SEIZE), stops threads only to copy registers and stack,\n"
    "resumes them, then unwinds and symbolizes the copies (libdwfl).";

struct Command {
    std::string_view name;
    void (*add)(CLI::App&, pmprof::CommandRunner*);
};
constexpr Command kCommands[] = {
    {"stacks", pmprof::add_stacks_command}, {"attach", pmprof::add_attach_command},
    {"record", pmprof::add_record_command}, {"heap", pmprof::add_heap_command},
    {"report", pmprof::add_report_command}, {"serve", pmprof::add_serve_command},
};

/// The subcommand the command line names: its first word that is not an option (the global
/// options are flags, so no option value comes before it). "" when there is none.
std::string_view named_command(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--") break;
        if (!arg.starts_with("-")) return arg;
    }
    return {};
}

int run(int argc, char** argv) {
    CLI::App app{kDescription, "pmprof"};
    app.require_subcommand(1);
    app.footer(std::string("\n") + pmprof::kExitCodesHelp +
               "\nPermissions: tracing needs the same user as the target (and ptrace_scope 0) "
               "or root / CAP_SYS_PTRACE.\nSee pmprof(1) for details.");
    int verbose = 0;
    bool quiet = false;
    app.add_flag("-v,--verbose", verbose, "More diagnostics on stderr (repeat for debug)");
    app.add_flag("-q,--quiet", quiet, "Only errors on stderr");
    app.set_version_flag("--version", "pmprof 0.1.0");

    // Only the named subcommand is registered: building all six (over a hundred CLI11 options)
    // cost a warm `pmprof stacks` a sixth of its own instructions. Without a known name (--help,
    // a typo) all are, so the help and CLI11's errors stay what they were.
    pmprof::CommandRunner runner;
    const std::string_view named = named_command(argc, argv);
    bool known = false;
    for (const Command& c : kCommands) known = known || c.name == named;
    for (const Command& c : kCommands)
        if (!known || c.name == named) c.add(app, &runner);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "pmprof: %s\nRun 'pmprof --help' for usage.\n", e.what());
        return pmprof::kExitUsage;
    }
    pmprof::set_log_level(quiet ? pmprof::LogLevel::Quiet
                                : static_cast<pmprof::LogLevel>(
                                      std::min(3, static_cast<int>(pmprof::LogLevel::Warn) + verbose)));
    pmprof::install_stop_signal_handlers();
    if (!runner) return pmprof::kExitUsage;
    return runner();
}

}  // namespace

int main(int argc, char** argv) {
    // Tracee stops are waited for through a signalfd for SIGCHLD (ptrace.cpp): the signal must be
    // blocked in every thread, so block it here, before any thread (HTTP, progress) exists.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, nullptr);
    try {
        return run(argc, argv);
    } catch (const pmprof::FatalError& e) {
        std::fprintf(stderr, "pmprof: %s\n", e.what());
        if (!e.hint().empty()) std::fprintf(stderr, "pmprof: hint: %s\n", e.hint().c_str());
        return e.exit_code();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pmprof: internal error: %s\n", e.what());
        return pmprof::kExitFatal;
    }
}
