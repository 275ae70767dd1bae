// `pmprof report FILE`: reads a pprof profile (pmprof's own, Go's runtime/pprof, any tool's) and
// prints top/list, subtracts a base profile, filters by label, or converts to another format.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/options.h"
#include "pmprof/output/text.h"
#include "pmprof/report/report.h"
#include "pmprof/support/error.h"

namespace pmprof {
namespace {

struct ReportArgs {
    std::string file;
    size_t top = 0;
    bool top_given = false;
    std::string list;
    std::vector<std::string> tagfocus;
    std::string sample_index;
    std::string base;
    std::string format;
    std::string output;
    std::vector<std::string> source_paths;
    bool per_thread = false;
};

// A file that is not a profile is fatal (exit 2) with one line naming it: never a crash.
Profile load(const std::string& path) {
    auto p = read_profile_file(path);
    if (!p.ok()) throw FatalError(p.error().message);
    return std::move(*p);
}

/// The profile to report, and (with --tagfocus) the unfiltered one's totals: pprof gives
/// percentages of the whole profile, not of what the filter kept.
struct Prepared {
    Profile profile;
    std::optional<Profile> before_filters;
};

Prepared prepare(const ReportArgs& a) {
    Prepared p{load(a.file), std::nullopt};
    if (!a.base.empty()) {
        auto diff = subtract_profile(p.profile, load(a.base));
        if (!diff.ok()) throw FatalError(diff.error().message);
        p.profile = std::move(*diff);
    }
    for (const std::string& f : a.tagfocus) {
        auto kept = tag_focus(p.profile, f);
        if (!kept.ok()) throw FatalError(kept.error().message, {}, kExitUsage);
        if (!p.before_filters) p.before_filters = std::move(p.profile);
        p.profile = std::move(*kept);
    }
    return p;
}

int run_report(const ReportArgs& a) {
    const std::string format = format_for_output(a.format, a.output, "text", /*json=*/false);
    const OutputPath out = prepare_output(a.output, format_is_binary(format));
    Prepared prepared = prepare(a);
    Profile& profile = prepared.profile;
    auto si = resolve_sample_type(profile, a.sample_index);
    if (!si.ok()) throw FatalError(si.error().message, {}, kExitUsage);

    std::string data;
    if (format == "text") {
        // --list alone prints only the listing; otherwise the top table (all rows by default).
        if (a.top_given || a.list.empty()) {
            TopContext context;
            if (prepared.before_filters) {
                context.total = profile_total(*prepared.before_filters, *si);
                for (const std::string& f : a.tagfocus)
                    context.active_filters.push_back("tagfocus=" + f);
            }
            data = format_top(profile, *si, a.top ? a.top : SIZE_MAX, context);
        }
        if (!a.list.empty()) {
            ListOptions lo{a.list, a.sample_index, a.source_paths};
            auto listing = format_list(profile, lo);
            if (!listing.ok()) throw FatalError(listing.error().message);
            data += *listing;
        }
    } else {
        RenderOptions ro;
        ro.sample_type = a.sample_index;
        ro.per_thread = a.per_thread;
        ro.title = "pmprof: " + a.file;
        auto rendered = render_profile(profile, format, ro);
        if (!rendered.ok()) throw FatalError(rendered.error().message);
        data = std::move(*rendered);
    }
    write_output(out, data);
    return kExitComplete;
}

}  // namespace

void add_report_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<ReportArgs>();
    CLI::App* cmd = app.add_subcommand(
        "report",
        "Read a pprof profile (pmprof's or Go's, gzipped or not): top, list, diff, convert");
    cmd->footer(
        std::string("\nWithout options prints the flat/flat%/sum%/cum/cum% table of "
                    "`go tool pprof -top`. The output format follows -o's file name "
                    "(callgrind.out.*, *.svg, *.folded, *.pb.gz) unless --format is given.\n") +
        kExitCodesHelp);
    cmd->add_option("file", args->file, "pprof file to read")->required();
    cmd->add_option("--top", args->top, "Print the top N functions (0: all)")
        ->each([args](const std::string&) { args->top_given = true; });
    cmd->add_option("--list", args->list,
                    "Print the source of functions matching REGEX with per-line flat and cum");
    cmd->add_option("--tagfocus", args->tagfocus,
                    "Keep samples whose label KEY matches VALUE (regex; numbers: N or LO:HI); "
                    "repeatable")
        ->type_name("KEY=VALUE")
        ->take_all()
        ->allow_extra_args(false);  // one value per occurrence: the file stays positional
    cmd->add_option("--sample-index", args->sample_index,
                    "Sample type to report (name or index; default: the profile's default)");
    cmd->add_option("--base", args->base, "Subtract this older profile (leak hunting)")
        ->type_name("OLD");
    cmd->add_option("-f,--format", args->format, "Output format (default: text)")
        ->check(CLI::IsMember(kProfileFormats));
    cmd->add_option("-o,--output", args->output, kOutputHelp);
    cmd->add_option("--source-path", args->source_paths,
                    "Directory to search for source files for --list (repeatable)")
        ->take_all()
        ->allow_extra_args(false);  // one value per occurrence: the file stays positional
    cmd->add_flag("--per-thread", args->per_thread, "folded: thread name as the root frame");
    cmd->callback([runner, args] { *runner = [args] { return run_report(*args); }; });
}

}  // namespace pmprof
