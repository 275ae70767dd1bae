// The command-line entry shared by `pmprof` and `pmprof-serve` (src/cli/main.cpp,
// src/cli/main_serve.cpp): global options, registration of the named subcommand only, and the
// mapping of errors to the documented exit codes: 0 complete, 1 partial, 2 fatal, 64 usage.
#include <CLI/CLI.hpp>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/options.h"
#include "pmprof/os/signals.h"
#include "pmprof/support/error.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

constexpr const char* kDescription =
    "pmprof: profile any running native Linux process without code changes or a restart.\n"
    "It attaches with ptrace (PTRACE_SEIZE), stops threads only to copy registers and stack,\n"
    "resumes them, then unwinds and symbolizes the copies (libdwfl).";

int run(int argc, char** argv, std::span<const Command> commands) {
    CLI::App app{kDescription, "pmprof"};
    app.require_subcommand(1);
    // The global options (-v, -q) are accepted after the verb too: a subcommand hands the
    // options it does not know to this app. Set before the subcommands, which inherit it.
    app.fallthrough();
    app.footer(
        std::string("\n") + kExitCodesHelp +
        "\nPermissions: tracing needs the same user as the target (and ptrace_scope 0) "
        "or root / CAP_SYS_PTRACE;\n`pmprof doctor PID` says what would stop or degrade pmprof "
        "and how to fix it. See pmprof(1) for details.");
    int verbose = 0;
    bool quiet = false;
    app.add_flag("-v,--verbose", verbose, "More diagnostics on stderr (repeat for debug)");
    app.add_flag("-q,--quiet", quiet, "Only errors on stderr");
    app.set_version_flag("--version", "pmprof 0.1.0");

    // Only the named subcommand is registered: building all six (over a hundred CLI11 options)
    // cost a warm `pmprof stacks` a sixth of its own instructions. Without a known name (--help,
    // a typo) all are, so the help and CLI11's errors stay what they were.
    CommandRunner runner;
    const std::string_view named = named_command(argc, argv);
    const bool known = std::any_of(commands.begin(), commands.end(),
                                   [&](const Command& c) { return c.name == named; });
    if (!known && !named.empty()) {
        std::vector<std::string> names;
        for (const Command& c : commands) names.emplace_back(c.name);
        const auto near = closest_word(named, names);
        std::fprintf(stderr, "pmprof: unknown command '%.*s'%s\nRun 'pmprof --help' for usage.\n",
                     static_cast<int>(named.size()), named.data(),
                     near ? ("; did you mean '" + *near + "'?").c_str() : "");
        return kExitUsage;
    }
    for (const Command& c : commands)
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
        const CLI::App* sub = known ? app.get_subcommand(std::string(named)) : nullptr;
        std::string message = unknown_option_message(app, sub, argc, argv);
        if (message.empty()) message = e.what();
        std::fprintf(stderr, "pmprof: %s\nRun 'pmprof %s--help' for usage.\n", message.c_str(),
                     sub ? (sub->get_name() + " ").c_str() : "");
        return kExitUsage;
    }
    set_log_level(
        quiet ? LogLevel::Quiet
              : static_cast<LogLevel>(std::min(3, static_cast<int>(LogLevel::Warn) + verbose)));
    install_stop_signal_handlers();
    if (!runner) return kExitUsage;
    return runner();
}

}  // namespace

std::string_view named_command(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--") break;
        if (!arg.starts_with("-")) return arg;
    }
    return {};
}

int cli_main(int argc, char** argv, std::span<const Command> commands) {
    // Tracee stops are waited for with sigtimedwait for SIGCHLD (src/ptrace/events.cpp): the signal
    // must be blocked in every thread, so block it here, before any thread (HTTP, progress)
    // exists.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, nullptr);
    try {
        return run(argc, argv, commands);
    } catch (const FatalError& e) {
        std::fprintf(stderr, "pmprof: %s\n", e.what());
        if (!e.hint().empty()) std::fprintf(stderr, "pmprof: hint: %s\n", e.hint().c_str());
        return e.exit_code();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pmprof: internal error: %s\n", e.what());
        return kExitFatal;
    }
}

}  // namespace pmprof
