// The shared options and the suggestions for mistyped words (see options.h).
#include "cli/options.h"

#include <algorithm>
#include <memory>

#include "cli/command.h"
#include "pmprof/report/report.h"

namespace pmprof {

void add_pid_option(CLI::App* cmd, std::string* pid, bool required, bool several) {
    CLI::Option* positional =
        cmd->add_option("pid", *pid,
                        several ? "Process id of the target; several: 1,2,3 (one profile, "
                                  "labelled by pid)"
                                : "Process id of the target");
    CLI::Option* named = cmd->add_option("-p,--pid", *pid,
                                         several ? "Process id(s) of the target (the same as PID)"
                                                 : "Process id of the target (the same as PID)");
    positional->excludes(named);
    if (!required) return;
    cmd->parse_complete_callback([positional, named] {
        if (positional->count() == 0 && named->count() == 0)
            throw CLI::RequiredError("pid (as PID or -p PID)");
    });
}

void add_thread_option(CLI::App* cmd, std::vector<std::string>* threads) {
    cmd->add_option("-t,--thread", *threads,
                    "Only these threads: tids or names, comma-separated or repeated")
        ->delimiter(',')
        ->allow_extra_args(false);  // one value per occurrence: a positional PID stays one
    // The hidden alias appends to the same list, whichever of the two comes first.
    cmd->add_option_function<std::vector<std::string>>(
           "--threads",
           [threads](const std::vector<std::string>& more) {
               threads->insert(threads->end(), more.begin(), more.end());
           },
           "")
        ->delimiter(',')
        ->allow_extra_args(false)
        ->group("");
}

void add_subprocesses_option(CLI::App* cmd, bool* subprocesses) {
    cmd->add_flag("--subprocesses", *subprocesses,
                  "Also the target's child processes (fork, vfork, clone), followed as they "
                  "appear and leave; each is symbolized from its own binaries, its samples "
                  "labelled pid and comm (as py-spy --subprocesses)");
}

void add_stack_target_options(CLI::App* cmd, StackTargetArgs* a) {
    add_pid_option(cmd, &a->pid, /*required=*/true, /*several=*/true);
    add_thread_option(cmd, &a->threads);
    add_unwinder_option(cmd, &a->unwinder);
    add_symbol_options(cmd, &a->no_source, &a->no_inline);
    add_max_depth_option(cmd, &a->max_depth);
    add_subprocesses_option(cmd, &a->subprocesses);
}

std::vector<pid_t> parse_pid_list(const std::string& text) {
    std::vector<pid_t> out;
    size_t begin = 0;
    while (true) {
        const size_t comma = text.find(',', begin);
        const pid_t pid = parse_pid(text.substr(begin, comma - begin));
        if (std::find(out.begin(), out.end(), pid) == out.end()) out.push_back(pid);
        if (comma == std::string::npos) break;
        begin = comma + 1;
    }
    return out;
}

void add_unwinder_option(CLI::App* cmd, std::string* unwinder) {
    cmd->add_option("--unwinder", *unwinder,
                    "Unwinder: dwfl (libdwfl, with a cache of CFI rules) or libunwind")
        ->check(CLI::IsMember({"dwfl", "libunwind"}))
        ->capture_default_str();
}

void add_symbol_options(CLI::App* cmd, bool* no_source, bool* no_inline) {
    cmd->add_flag("--no-source", *no_source, "Do not look up file:line");
    cmd->add_flag("--no-inline", *no_inline, "Do not expand inlined frames");
}

void add_max_depth_option(CLI::App* cmd, size_t* max_depth) {
    cmd->add_option("--max-depth", *max_depth, "Frames per stack at most (deeper: truncated)")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
}

std::string format_for_output(const std::string& format, const std::string& output,
                              const std::string& fallback, bool json) {
    if (!format.empty()) return format;
    if (output.ends_with(".txt")) return "text";
    if (json && output.ends_with(".json")) return "json";
    const std::string implied = format_from_filename(output);
    return implied.empty() ? fallback : implied;
}

namespace {

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbours each cost one ("atach", "attahc" and "atttach" are all one from "attach").
size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
    for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (size_t i = 1; i <= a.size(); ++i)
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

/// The option names `app` accepts in its own help: visible options only (a hidden alias is
/// never suggested over the name it stands for).
void option_names(const CLI::App& app, bool visible_only, std::vector<std::string>* out) {
    for (const CLI::Option* o : app.get_options()) {
        if (visible_only && o->get_group().empty()) continue;
        for (const std::string& n : o->get_lnames()) out->push_back("--" + n);
        for (const std::string& n : o->get_snames()) out->push_back("-" + n);
    }
}

}  // namespace

std::optional<std::string> closest_word(std::string_view word,
                                        std::span<const std::string> candidates) {
    // Leading dashes are not letters of the word: "-duration" is one edit from "--duration".
    const auto bare = [](std::string_view w) {
        return w.substr(std::min(w.find_first_not_of('-'), w.size()));
    };
    const std::string_view w = bare(word);
    if (w.empty()) return std::nullopt;
    // A typo is a few edits in a word long enough to carry them: one in 3 or 4 letters, two
    // beyond (a random word is rarely that close to a real one); a single letter has no typo
    // that could be told from another letter.
    const size_t limit = w.size() < 3 ? 0 : w.size() <= 4 ? 1 : 2;
    std::optional<std::string> best;
    size_t best_distance = limit + 1;
    size_t prefixed = 0;
    std::optional<std::string> prefix_match;
    for (const std::string& c : candidates) {
        const std::string_view cw = bare(c);
        if (cw == w) continue;
        if (w.size() >= 3 && cw.starts_with(w)) {
            ++prefixed;
            prefix_match = c;
        }
        const size_t d = edit_distance(w, cw);
        if (d < best_distance) {
            best_distance = d;
            best = c;
        }
    }
    if (best) return best;
    if (prefixed == 1) return prefix_match;
    return std::nullopt;
}

std::string unknown_option_message(const CLI::App& app, const CLI::App* sub, int argc,
                                   char** argv) {
    std::vector<std::string> known;  // every name that parses, hidden ones included
    option_names(app, false, &known);
    if (sub) option_names(*sub, false, &known);
    std::vector<std::string> visible;
    option_names(app, true, &visible);
    if (sub) option_names(*sub, true, &visible);
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--") break;
        // "-" is stdout, "-1" a number, "-vv" or "-d5s" short options with what follows them.
        if (arg.size() < 2 || arg[0] != '-' || (arg[1] >= '0' && arg[1] <= '9')) continue;
        if (arg[1] != '-' && arg.size() > 2) continue;
        const std::string name(arg.substr(0, arg.find('=')));
        if (std::find(known.begin(), known.end(), name) != known.end()) continue;
        std::string msg = "unknown option '" + name + "'";
        if (sub) msg += " for '" + sub->get_name() + "'";
        if (auto near = closest_word(name, visible)) msg += "; did you mean '" + *near + "'?";
        return msg;
    }
    return {};
}

}  // namespace pmprof
