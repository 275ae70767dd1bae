// `pmprof top`'s view and screen (include/pmprof/output/top.h).
#include "pmprof/output/top.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "pmprof/profile/index.h"

namespace pmprof {
namespace {

const std::string* label(const Sample& s, const char* key) {
    for (const Label& l : s.labels)
        if (l.key == key) return &l.str;
    return nullptr;
}

int64_t label_num(const Sample& s, const char* key) {
    for (const Label& l : s.labels)
        if (l.key == key) return l.str.empty() ? l.num : std::atoll(l.str.c_str());
    return 0;
}

/// What a sample says its thread was doing: running, blocked in a system call, or the state.
std::string state_of(const Sample& s) {
    const std::string* state = label(s, "state");
    if (state && *state == "running") return "running";
    if (const std::string* sys = label(s, "syscall"); sys && !sys->empty())
        return "blocked in " + *sys;
    return state ? *state : "unknown";
}

std::string fit(const std::string& text, size_t width) {
    if (text.size() <= width) return text;
    return width < 1 ? std::string() : text.substr(0, width - 1) + "~";
}

}  // namespace

bool parse_top_sort(const std::string& name, TopSort* out) {
    if (name == "self")
        *out = TopSort::Self;
    else if (name == "total")
        *out = TopSort::Total;
    else if (name == "name")
        *out = TopSort::Name;
    else
        return false;
    return true;
}

const char* top_sort_name(TopSort sort) {
    return sort == TopSort::Self ? "self" : sort == TopSort::Total ? "total" : "name";
}

TopView build_top_view(std::span<const Profile> window, const std::string& thread, TopSort sort) {
    struct Fn {
        double self = 0, total = 0;
    };
    struct Th {
        std::string name;
        double weight = 0;
        std::map<std::string, double> states;
    };
    std::map<std::string, Fn, std::less<>> fns;
    std::map<pid_t, Th> threads;
    double weight = 0;
    TopView v;
    std::vector<FrameView> frames;
    std::set<std::string_view> seen;
    for (const Profile& p : window) {
        const int index = p.sample_index();
        if (index < 0) continue;
        ProfileIndex idx(p);
        const bool ns = p.sample_types[static_cast<size_t>(index)].unit == "nanoseconds";
        // A sample record may stand for several ticks (a thread that did not run keeps its
        // stack): the samples/count type says how many.
        const bool counted = p.sample_types.front().type == "samples";
        for (const Sample& s : p.samples) {
            const pid_t tid = static_cast<pid_t>(label_num(s, "tid"));
            const std::string* name = label(s, "thread_name");
            if (!thread.empty() && thread != std::to_string(tid) && !(name && *name == thread))
                continue;
            const double w = static_cast<double>(sample_value(s, index)) / (ns ? 1e9 : 1.0);
            if (w <= 0) continue;
            v.samples +=
                counted ? static_cast<uint64_t>(std::max<int64_t>(1, sample_value(s, 0))) : 1;
            weight += w;
            Th& t = threads[tid];
            if (name) t.name = *name;
            t.weight += w;
            t.states[state_of(s)] += w;
            frames.clear();
            idx.expand(s, frames);
            seen.clear();
            for (size_t i = 0; i < frames.size(); ++i) {
                Fn& f = fns.try_emplace(std::string(frames[i].name)).first->second;
                if (i == 0) f.self += w;
                if (seen.insert(frames[i].name).second) f.total += w;
            }
        }
    }
    v.weight_s = weight;
    if (weight <= 0) return v;
    for (const auto& [name, f] : fns)
        v.functions.push_back({name, f.self / weight, f.total / weight});
    std::stable_sort(v.functions.begin(), v.functions.end(), [&](const TopRow& a, const TopRow& b) {
        if (sort == TopSort::Name) return a.function < b.function;
        const double ka = sort == TopSort::Self ? a.self : a.total;
        const double kb = sort == TopSort::Self ? b.self : b.total;
        return ka != kb ? ka > kb : (sort == TopSort::Self ? a.total > b.total : a.self > b.self);
    });
    for (const auto& [tid, t] : threads) {
        TopThread out{tid, t.name, t.weight / weight, {}};
        for (const auto& [state, w] : t.states) out.states.emplace_back(state, w / t.weight);
        std::stable_sort(out.states.begin(), out.states.end(),
                         [](const auto& a, const auto& b) { return a.second > b.second; });
        v.threads.push_back(std::move(out));
    }
    std::stable_sort(v.threads.begin(), v.threads.end(),
                     [](const TopThread& a, const TopThread& b) { return a.share > b.share; });
    return v;
}

std::string format_top_screen(const TopView& v, const TopScreen& s) {
    const size_t width = std::max<size_t>(s.width, 20);
    std::vector<std::string> lines;
    lines.push_back(fit(s.title, width));
    lines.push_back(
        fit(fmt::format("{} samples, {:.2f} s of weight; sort: {}; threads: {}{}", v.samples,
                        v.weight_s, top_sort_name(s.sort), s.thread.empty() ? "all" : s.thread,
                        s.paused ? "   [paused]" : ""),
            width));
    const std::string keys =
        "keys: q quit  p pause/resume  s sort (self/total/name)  t next thread  a all threads  "
        "+/- slower/faster";
    // Rows: the threads get up to a third of the screen, the functions the rest.
    const size_t fixed = lines.size() + 3 /* two headers, a blank */ + (s.keys ? 1 : 0);
    const size_t room = s.height > fixed + 2 ? s.height - fixed : 2;
    const size_t thread_rows = std::min(v.threads.size(), std::max<size_t>(1, room / 3));
    const size_t fn_rows = std::min(v.functions.size(), room - thread_rows);
    lines.push_back(fit("  %self  %total  function", width));
    for (size_t i = 0; i < fn_rows; ++i) {
        const TopRow& r = v.functions[i];
        lines.push_back(fit(
            fmt::format("{:6.1f}% {:6.1f}%  {}", r.self * 100, r.total * 100, r.function), width));
    }
    lines.emplace_back();
    lines.push_back(
        fit(fmt::format("{:<16} {:>7} {:>6}  state mix", "thread", "tid", "share"), width));
    for (size_t i = 0; i < thread_rows; ++i) {
        const TopThread& t = v.threads[i];
        std::string mix;
        for (const auto& [state, share] : t.states)
            mix += fmt::format("{}{} {:.0f}%", mix.empty() ? "" : ", ", state, share * 100);
        lines.push_back(fit(
            fmt::format("{:<16} {:>7} {:5.1f}%  {}", fit(t.name, 16), t.tid, t.share * 100, mix),
            width));
    }
    if (s.keys) {
        while (lines.size() + 1 < s.height) lines.emplace_back();
        lines.push_back(fit(keys, width));
    }
    std::string out;
    for (const std::string& l : lines) out += l + "\n";
    return out;
}

}  // namespace pmprof
