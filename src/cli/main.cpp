// pmprof: entry point. The verbs are registered from src/cmd_<verb>.cpp; src/cli/entry.cpp parses
// the command line and maps errors to exit codes.
//
// `serve` is the exception: its HTTP server (libcpp-httplib) is linked with OpenSSL, whose
// load-time set-up was 9.8M of the 16.8M instructions of a warm `pmprof stacks`. It
// lives in a separate executable, pmprof-serve, that `pmprof serve` execs with the same
// arguments: the pid and every option behave as if pmprof itself served.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/command.h"
#include "pmprof/support/error.h"

namespace {

/// Where pmprof-serve is: beside this executable (a build directory, or PREFIX/bin when
/// installed there too), else in PREFIX/libexec/pmprof, where `make install` puts it.
std::vector<std::string> serve_candidates() {
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return {};
    std::string dir(self, static_cast<size_t>(n));
    dir.erase(dir.rfind('/') + 1);
    return {dir + "pmprof-serve", dir + "../libexec/pmprof/pmprof-serve"};
}

/// Replaces this process with pmprof-serve, argv unchanged; returns only to report failure.
int exec_serve(char** argv) {
    const std::vector<std::string> candidates = serve_candidates();
    std::string tried;
    for (const std::string& path : candidates) {
        execv(path.c_str(), argv);
        const int err = errno;
        if (err != ENOENT) {
            std::fprintf(stderr, "pmprof: cannot run %s: %s\n", path.c_str(), std::strerror(err));
            return pmprof::kExitFatal;
        }
        tried += (tried.empty() ? "" : " or ") + path;
    }
    std::fprintf(stderr, "pmprof: serve needs pmprof-serve, which is not installed (no %s)\n",
                 tried.empty() ? "/proc/self/exe to look beside" : tried.c_str());
    return pmprof::kExitFatal;
}

/// `serve` as `pmprof --help` lists it; the command itself is pmprof-serve's.
void add_serve_stub(CLI::App& app, pmprof::CommandRunner* runner) {
    app.add_subcommand("serve", pmprof::kServeSummary)->allow_extras();
    (void)runner;  // never chosen: main() execs pmprof-serve before parsing when serve is named
}

}  // namespace

int main(int argc, char** argv) {
    if (pmprof::named_command(argc, argv) == "serve") return exec_serve(argv);
    static constexpr pmprof::Command kCommands[] = {
        {"stacks", pmprof::add_stacks_command}, {"attach", pmprof::add_attach_command},
        {"record", pmprof::add_record_command}, {"heap", pmprof::add_heap_command},
        {"report", pmprof::add_report_command}, {"serve", add_serve_stub},
        {"doctor", pmprof::add_doctor_command}, {"top", pmprof::add_top_command},
    };
    return pmprof::cli_main(argc, argv, kCommands);
}
