// `pmprof report --list REGEX`: pprof's `list` (github.com/google/pprof internal/report
// printSource): for each matching function, the source from its first line (or 5 before the
// first sampled line) to 5 after the last sampled line, with per-line flat and cum values.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sys/stat.h>

#include "pmprof/profile/index.h"
#include "pmprof/report/report.h"

namespace pmprof {
namespace {

constexpr int64_t kMargin = 5;  // lines before the first / after the last sample, as pprof

struct LineCost {
    int64_t flat = 0, cum = 0;
};

struct Routine {
    int64_t start_line = 0;
    std::map<int64_t, LineCost> lines;
};

using RoutineKey = std::pair<std::string, std::string>;  // function name, file

bool is_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The recorded path when it exists, else DIR/path and then DIR/<path minus leading components>
// for each --source-path DIR (binaries built elsewhere record their build directory's paths).
std::string find_source(const std::string& recorded, const std::vector<std::string>& dirs) {
    if (recorded.empty()) return {};
    if (is_file(recorded)) return recorded;
    std::string rel = recorded;
    while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
    while (!rel.empty()) {
        for (const std::string& d : dirs) {
            std::string candidate = d + "/" + rel;
            if (is_file(candidate)) return candidate;
        }
        size_t slash = rel.find('/');
        if (slash == std::string::npos) break;
        rel.erase(0, slash + 1);
    }
    return {};
}

std::vector<std::string> read_lines(const std::string& path) {
    std::vector<std::string> lines;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

std::string percentage(int64_t value, int64_t total) {
    double ratio =
        total != 0 ? std::fabs(static_cast<double>(value) / static_cast<double>(total)) * 100 : 0;
    if (ratio >= 99.95 && ratio <= 100.05) return "  100%";
    if (ratio >= 1.0) return fmt::format("{:5.2f}%", ratio);
    return fmt::format("{:5.2g}%", ratio);
}

// Per (function, file) and line: flat from the leaf frame, cum once per sample for every frame.
std::map<RoutineKey, Routine> collect(const ProfileIndex& index, const std::regex& re, int si,
                                      int64_t& total) {
    std::map<RoutineKey, Routine> routines;
    std::map<std::string_view, bool> matches;  // regex results per function name
    std::vector<FrameView> frames;
    std::set<std::tuple<std::string_view, std::string_view, int64_t>> seen;
    for (const Sample& s : index.profile().samples) {
        int64_t v = sample_value(s, si);
        total = saturating_add(total, v);
        if (v == 0) continue;
        frames.clear();
        index.expand(s, frames);
        seen.clear();
        for (size_t i = 0; i < frames.size(); ++i) {
            const FrameView& f = frames[i];
            auto [m, fresh] = matches.emplace(f.name, false);
            if (fresh) m->second = std::regex_search(f.name.begin(), f.name.end(), re);
            if (!m->second) continue;
            Routine& r = routines[RoutineKey{std::string(f.name), std::string(f.file)}];
            if (f.start_line > 0) r.start_line = f.start_line;
            if (i == 0) r.lines[f.line].flat = saturating_add(r.lines[f.line].flat, v);
            if (seen.emplace(f.name, f.file, f.line).second)
                r.lines[f.line].cum = saturating_add(r.lines[f.line].cum, v);
        }
    }
    return routines;
}

void print_routine(std::string& out, const RoutineKey& key, const Routine& r, int64_t total,
                   const std::string& unit, const std::vector<std::string>& dirs) {
    auto value_or_dot = [&](int64_t v) {
        return v == 0 ? std::string(".") : format_scaled_value(v, unit);
    };
    int64_t flat_sum = 0, cum_sum = 0;
    for (const auto& [line, c] : r.lines) {  // pprof's Nodes.Sum() over the line nodes
        flat_sum = saturating_add(flat_sum, c.flat);
        cum_sum = saturating_add(cum_sum, c.cum);
    }
    const std::string& file = key.second;
    out += fmt::format("ROUTINE ======================== {} in {}\n", key.first,
                       file.empty() ? "??" : file);
    out +=
        fmt::format("{:>10} {:>10} (flat, cum) {} of Total\n", format_scaled_value(flat_sum, unit),
                    format_scaled_value(cum_sum, unit), percentage(cum_sum, total));
    std::string path = find_source(file, dirs);
    if (path.empty()) {
        out += fmt::format(" Error: could not find source file {} (use --source-path DIR)\n",
                           file.empty() ? "(no file recorded)" : file);
        for (const auto& [line, c] : r.lines)
            out += fmt::format("{:>10} {:>10} {:>6}:\n", value_or_dot(c.flat), value_or_dot(c.cum),
                               line);
        return;
    }
    std::vector<std::string> text = read_lines(path);
    int64_t first = r.lines.begin()->first, last = r.lines.rbegin()->first;
    int64_t lo =
        r.start_line > 0 && r.start_line <= first ? r.start_line : saturating_add(first, -kMargin);
    int64_t hi =
        std::min<int64_t>(saturating_add(last, kMargin), static_cast<int64_t>(text.size()));
    lo = std::max<int64_t>(lo, 1);
    for (int64_t n = lo; n <= hi; ++n) {
        auto it = r.lines.find(n);
        LineCost c = it == r.lines.end() ? LineCost{} : it->second;
        out += fmt::format("{:>10} {:>10} {:>6}:{}\n", value_or_dot(c.flat), value_or_dot(c.cum), n,
                           text[static_cast<size_t>(n - 1)]);
    }
}

}  // namespace

Result<std::string> format_list(const Profile& profile, const ListOptions& opt) {
    auto si = resolve_sample_type(profile, opt.sample_type);
    if (!si.ok()) return si.error();
    std::regex re;
    try {
        re = std::regex(opt.regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        return Error{fmt::format("--list '{}': bad regular expression: {}", opt.regex, e.what()),
                     0};
    }
    ProfileIndex index(profile);
    int64_t total = 0;
    auto routines = collect(index, re, *si, total);
    if (routines.empty()) return Error{"no function with samples matches '" + opt.regex + "'", 0};
    const std::string& unit = profile.sample_types[static_cast<size_t>(*si)].unit;
    std::string out = fmt::format("Total: {}\n", format_scaled_value(total, unit));
    for (const auto& [key, r] : routines) print_routine(out, key, r, total, unit, opt.source_paths);
    return out;
}

}  // namespace pmprof
