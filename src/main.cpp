// pmprof: entry point. Parses the command line, runs one subcommand, and maps errors to the
// documented exit codes: 0 complete, 1 partial, 2 fatal, 64 usage.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <exception>

#include "cli.h"
#include "pmprof/error.h"
#include "pmprof/log.h"
#include "pmprof/signals.h"

namespace {

constexpr const char* kDescription =
    "pmprof: profile any running native Linux process without code changes or a restart.\n"
    "It attaches with ptrace (PTRACE_SEIZE), stops threads only to copy registers and stack,\n"
    "resumes them, then unwinds and symbolizes the copies (libdwfl).";

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

    pmprof::CommandRunner runner;
    pmprof::add_stacks_command(app, &runner);
    pmprof::add_attach_command(app, &runner);
    pmprof::add_record_command(app, &runner);
    pmprof::add_heap_command(app, &runner);
    pmprof::add_report_command(app, &runner);
    pmprof::add_serve_command(app, &runner);

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
