// `pmprof serve PID`: Go's /debug/pprof endpoints for one running process. The server
// lives in src/http_*.cpp; this file is its command line.
#include <CLI/CLI.hpp>

#include <cctype>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "cli/options.h"
#include "pmprof/http/http.h"
#include "pmprof/os/procfs.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/sampler/perf.h"
#include "pmprof/support/error.h"
#include "pmprof/support/fd.h"
#include "pmprof/unwind/unwind.h"

namespace pmprof {
namespace {

struct ServeArgs {
    std::string pid;
    std::string listen = "127.0.0.1:6060";
    std::string token;
    std::string token_file;
    int max_seconds = 300;
    std::string unwinder = "dwfl";
    std::string backend = "auto";
};

/// The token from --token or --token-file (trailing newline and spaces dropped).
std::string read_token(const ServeArgs& a) {
    if (!a.token.empty() && !a.token_file.empty())
        throw FatalError("give --token or --token-file, not both", {}, kExitUsage);
    std::string token = a.token;
    if (!a.token_file.empty()) {
        auto text = read_file(a.token_file);
        if (!text.ok()) throw FatalError(text.error().message, {}, kExitUsage);
        token = std::move(*text);
        while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
            token.pop_back();
        if (token.empty()) throw FatalError(a.token_file + " holds no token", {}, kExitUsage);
    }
    if (token.find_first_of(" \t\r\n") != std::string::npos)
        throw FatalError("the token must not contain white space", {}, kExitUsage);
    return token;
}

int run_serve(const ServeArgs& a) {
    ServeOptions opt;
    opt.pid = parse_pid(a.pid);
    auto listen = parse_listen_address(a.listen);
    if (!listen.ok()) throw FatalError(listen.error().message, {}, kExitUsage);
    opt.listen = *listen;
    opt.token = read_token(a);
    opt.max_seconds = a.max_seconds;
    auto kind = parse_unwinder_kind(a.unwinder);
    if (!kind.ok()) throw FatalError(kind.error().message, {}, kExitUsage);
    opt.unwinder = *kind;
    auto backend = parse_cpu_backend(a.backend);
    if (!backend.ok()) throw FatalError(backend.error().message, {}, kExitUsage);
    opt.backend = *backend;
    // Refused now, not with a 500 on every request: the target is seized from a thread that
    // exits at once, which detaches it without a stop.
    if (auto traceable = probe_traceable(opt.pid); !traceable.ok())
        throw FatalError(traceable.error());
    const std::string cmdline = read_cmdline(opt.pid);
    opt.on_listening = [&](const std::string& url) {
        // Always printed (also with -q): it is how a script learns the port of --listen HOST:0.
        std::fprintf(stderr, "pmprof: serving pid %d (%s) on %s\n", opt.pid, cmdline.c_str(),
                     url.c_str());
        std::fflush(stderr);
    };
    auto served = serve_pprof(opt);
    if (!served.ok()) throw FatalError(served.error());
    return kExitComplete;
}

}  // namespace

void add_serve_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<ServeArgs>();
    CLI::App* cmd = app.add_subcommand("serve", kServeSummary);
    cmd->footer(
        "\nEndpoints (as Go's net/http/pprof): /debug/pprof/ (index), profile?seconds=N "
        "(sampling profile; mode=cpu|wall, rate=HZ from 1 to 1000; seconds from 1 to "
        "--max-seconds, default 30), heap (?debug=1: text), goroutine and threads (?debug=1 "
        "grouped text, ?debug=2 every thread), cmdline, symbol (GET or POST).\n"
        "At start-up pmprof checks that it can trace PID (seized from a thread that exits at "
        "once, which detaches it without a stop) and exits 2 otherwise. "
        "The target is traced only while a request works on it. Only GET (and POST for symbol) "
        "is allowed; bad parameters get 400 with the reason, a second concurrent profile 409, "
        "requests after the target exited 410. A client that disconnects cancels its profile. "
        "A thread dump asked for during a profile is taken from the profile's trace at once; "
        "more than 4 requests waiting for the target get 503. At most 32 connections are served "
        "at once; a request head must arrive within 2 s; bodies need Content-Length, 1 MiB at "
        "most. "
        "SIGINT or SIGTERM stops the server and leaves the target running, untraced.\n"
        "Example: go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=5\n" +
        std::string(kExitCodesHelp));
    add_pid_option(cmd, &args->pid);
    cmd->add_option("-l,--listen", args->listen,
                    "HOST:PORT to listen on; [::1]:PORT for IPv6, :PORT for every interface, "
                    "port 0 for any free port. A non-loopback address prints a warning")
        ->capture_default_str();
    cmd->add_option("--token", args->token,
                    "Require 'Authorization: Bearer TOKEN' on every request (visible in ps: "
                    "prefer --token-file)");
    cmd->add_option("--token-file", args->token_file, "Read the bearer token from FILE");
    cmd->add_option("--max-seconds", args->max_seconds, "Longest profile a client may ask for")
        ->check(CLI::Range(1, kServeMaxSecondsLimit))
        ->capture_default_str();
    add_unwinder_option(cmd, &args->unwinder);
    cmd->add_option("--backend", args->backend,
                    "Who samples mode=cpu profiles: perf (the kernel's task-clock samples, no "
                    "thread stopped), ptrace, or auto (perf when the kernel allows it)")
        ->check(CLI::IsMember({"auto", "ptrace", "perf"}))
        ->capture_default_str();
    cmd->callback([runner, args] { *runner = [args] { return run_serve(*args); }; });
}

}  // namespace pmprof
