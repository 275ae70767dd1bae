// The options several verbs share, registered by one function each so that every verb spells
// them alike, and the "did you mean" suggestions for mistyped verbs and options.
#pragma once

#include <CLI/CLI.hpp>

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pmprof {

/// The target as `PID` or `-p/--pid PID` (perf's and py-spy's spelling), both into *pid; one of
/// them is required unless `required` is false (then *pid may stay empty). `several`: the help
/// says a comma-separated list is taken (the verb reads it with parse_pid_list).
void add_pid_option(CLI::App* cmd, std::string* pid, bool required = true, bool several = false);

/// `-t/--thread T`: repeatable and comma-separated tids or thread names. `--threads` is accepted
/// as a hidden alias (attach's former spelling).
void add_thread_option(CLI::App* cmd, std::vector<std::string>* threads);

/// `--unwinder dwfl|libunwind`, `--no-source`, `--no-inline`: the symbolizing options.
void add_unwinder_option(CLI::App* cmd, std::string* unwinder);
void add_symbol_options(CLI::App* cmd, bool* no_source, bool* no_inline);

/// `--max-depth N` frames per stack.
void add_max_depth_option(CLI::App* cmd, size_t* max_depth);

/// `--subprocesses`: the target's child processes too, followed as they appear and leave.
void add_subprocesses_option(CLI::App* cmd, bool* subprocesses);

/// What the verbs that unwind a live process's threads (stacks, top) take alike: the target,
/// the threads, the unwinder and the symbol options, and --subprocesses.
struct StackTargetArgs {
    std::string pid;  // one pid, or several comma-separated (parse_pid_list)
    std::vector<std::string> threads;
    std::string unwinder = "dwfl";
    size_t max_depth = 256;
    bool no_source = false;
    bool no_inline = false;
    bool subprocesses = false;
};
void add_stack_target_options(CLI::App* cmd, StackTargetArgs* a);

/// "42" or "1,2,3" (-p 1,2,3: several processes in one run), each as parse_pid; duplicates are
/// dropped, the order kept.
std::vector<pid_t> parse_pid_list(const std::string& text);

/// The format `-f/--format` names (`format`, when given), else the one `-o`'s file name implies,
/// alike for every verb: .txt text, .json json (where `json`: the verbs that write it),
/// .pb.gz/.pb/.pprof pprof, callgrind.out.* or .callgrind callgrind, .svg svg, .folded folded;
/// `fallback` for any other name and for stdout.
std::string format_for_output(const std::string& format, const std::string& output,
                              const std::string& fallback, bool json);

/// The closest of `candidates` to `word` (a typo: a few edits apart, or a unique prefix);
/// nullopt when none is close enough to be a likely meaning.
std::optional<std::string> closest_word(std::string_view word,
                                        std::span<const std::string> candidates);

/// "unknown option '--x' ...; did you mean '--y'?" for the first option on the command line that
/// neither `sub` (the verb given, or null) nor `app` knows; "" when every option is known.
std::string unknown_option_message(const CLI::App& app, const CLI::App* sub, int argc, char** argv);

}  // namespace pmprof
