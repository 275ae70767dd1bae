// Subcommand registration (layer 5). Each verb lives in src/cmd_<verb>.cpp and registers itself
// on the root CLI11 app; main() runs the one that was parsed and maps exceptions to exit codes.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace pmprof {

/// Runs the parsed subcommand; returns the process exit code (ExitCode in error.h).
using CommandRunner = std::function<int()>;

/// Each adds one subcommand to `app` and sets *runner when that subcommand is chosen.
void add_stacks_command(CLI::App& app, CommandRunner* runner);
void add_attach_command(CLI::App& app, CommandRunner* runner);
void add_record_command(CLI::App& app, CommandRunner* runner);
void add_heap_command(CLI::App& app, CommandRunner* runner);
void add_report_command(CLI::App& app, CommandRunner* runner);
void add_serve_command(CLI::App& app, CommandRunner* runner);

/// Parses a pid argument strictly ("123"); throws FatalError with kExitUsage otherwise.
pid_t parse_pid(const std::string& text);
/// Parses "10s", "500ms", "2m", "1h" or plain seconds ("2.5") into nanoseconds; throws FatalError
/// (kExitUsage) on anything else.
int64_t parse_duration_ns(const std::string& text);

/// The exit codes block shared by every --help footer.
extern const char* const kExitCodesHelp;

}  // namespace pmprof

namespace pmprof {

/// Writes `data` to `path` ("-" or "" for stdout) atomically (temp file + rename); throws
/// FatalError naming the file on failure. Refuses binary data to a terminal.
void write_output(const std::string& path, const std::string& data, bool binary);

}  // namespace pmprof
