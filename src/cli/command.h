// Subcommand registration (layer 5). Each verb lives in src/cli/<verb>.cpp and registers itself
// on the root CLI11 app; main() runs the one that was parsed and maps exceptions to exit codes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "pmprof/os/file.h"

// Only by reference here: CLI11's header (9,400 lines, 114k preprocessed) is included by the files
// that build a command line (entry.cpp, main.cpp and each verb's), not by every file of src/cli.
namespace CLI {
class App;
}  // namespace CLI

namespace pmprof {

/// Runs the parsed subcommand; returns the process exit code (ExitCode in
/// include/pmprof/support/error.h).
using CommandRunner = std::function<int()>;

/// Each adds one subcommand to `app` and sets *runner when that subcommand is chosen.
void add_stacks_command(CLI::App& app, CommandRunner* runner);
void add_attach_command(CLI::App& app, CommandRunner* runner);
void add_record_command(CLI::App& app, CommandRunner* runner);
void add_heap_command(CLI::App& app, CommandRunner* runner);
void add_report_command(CLI::App& app, CommandRunner* runner);
void add_serve_command(CLI::App& app, CommandRunner* runner);
void add_doctor_command(CLI::App& app, CommandRunner* runner);
void add_top_command(CLI::App& app, CommandRunner* runner);

/// One subcommand an executable offers: its name and its registration function.
struct Command {
    std::string_view name;
    void (*add)(CLI::App&, CommandRunner*);
};

/// The whole of main() for `pmprof` and `pmprof-serve` (src/cli/entry.cpp): registers the named
/// one of `commands` (all of them for --help or an unknown name), parses, runs it, and maps
/// exceptions to exit codes.
int cli_main(int argc, char** argv, std::span<const Command> commands);

/// The subcommand the command line names: its first word that is not an option (the global
/// options are flags, so no option value comes before it). "" when there is none.
std::string_view named_command(int argc, char** argv);

/// `serve`'s one-line summary, shown by `pmprof --help`, where `serve` is a stub: the server is
/// the separate executable pmprof-serve (src/cli/main.cpp says why).
inline constexpr const char* kServeSummary =
    "Serve Go-compatible /debug/pprof endpoints for a running process";

/// Parses a pid argument strictly ("123"); throws FatalError with kExitUsage otherwise.
pid_t parse_pid(const std::string& text);
/// Parses "10s", "500ms", "2m", "1h" or plain seconds ("2.5") into nanoseconds; throws FatalError
/// (kExitUsage) on anything else.
int64_t parse_duration_ns(const std::string& text);

/// The -o help shared by the verbs.
inline constexpr const char* kOutputHelp =
    "Write to FILE instead of stdout: checked before the target is touched; a regular file is "
    "replaced atomically, a device or FIFO written through, a symbolic link followed";

/// The exit codes block shared by every --help footer.
extern const char* const kExitCodesHelp;

}  // namespace pmprof

namespace pmprof {

/// The output of `-o PATH` ("" or "-": stdout), resolved and checked before any work (see
/// include/pmprof/os/file.h); throws FatalError naming PATH when it cannot be written, and refuses
/// binary data to a terminal (kExitUsage).
OutputPath prepare_output(const std::string& path, bool binary);
/// Writes `data` there (regular files atomically, devices and FIFOs through); throws
/// FatalError naming the user's path on failure.
void write_output(const OutputPath& out, const std::string& data);
/// write_output to standard output.
void write_stdout(const std::string& data);

}  // namespace pmprof
