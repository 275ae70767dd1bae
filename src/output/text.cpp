// `go tool pprof -top` for a Profile: the same nodes, numbers, order, units and percentages as
// github.com/google/pprof/internal/report (printText, selectOutputUnit) and internal/measurement
// (ScaledLabel, Percentage) print at the default "functions" granularity.
#include "pmprof/output/text.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "pmprof/support/path.h"

namespace pmprof {
namespace {

// pprof's default -nodefraction: nodes whose |cum| is below this share of the total are dropped.
constexpr double kNodeFraction = 0.005;
// pprof's default -edgefraction: lighter edges are dropped before inline labels are computed.
constexpr double kEdgeFraction = 0.001;

// graph.NodeInfo.PrintableName() after Aggregate(function granularity): the function name, or
// "[objfile]" when it has none, or "<unknown>".
std::string node_name(const Profile& p, const Location& loc, const Line* line) {
    if (line != nullptr) {
        const Function* f = p.function(line->function_id);
        if (f != nullptr && !f->name.empty()) return f->name;
    }
    const Mapping* m = p.mapping(loc.mapping_id);
    if (m != nullptr && !m->filename.empty())
        return "[" + std::string(base_name(m->filename)) + "]";
    return "<unknown>";
}

int64_t value_of(const Sample& s, int index) {
    auto i = static_cast<size_t>(index);
    return i < s.values.size() ? s.values[i] : 0;
}

struct Node {
    TopRow row;
    std::string inline_label;  // "(inline)", "(partial-inline)" or ""
};

// Calls on_frame(name, inlined) for every line of the sample's stack, root first; `inlined` is
// true for a line that is not the last (real) function of its Location.
template <typename F> void for_each_frame(const Profile& p, const Sample& s, F&& on_frame) {
    for (auto id = s.location_ids.rbegin(); id != s.location_ids.rend(); ++id) {
        const Location* loc = p.location(*id);
        if (loc == nullptr) continue;
        size_t count = std::max<size_t>(loc->lines.size(), 1);
        for (size_t i = count; i-- > 0;) {  // outermost (real) function first
            const Line* line = loc->lines.empty() ? nullptr : &loc->lines[i];
            on_frame(node_name(p, *loc, line), i != count - 1);
        }
    }
}

// graph.newGraph: cum once per node per sample, flat on the leaf; sorted as FlatNameOrder.
std::vector<Node> build_nodes(const Profile& p, int index) {
    std::vector<Node> nodes;
    std::unordered_map<std::string, size_t> ids;
    std::unordered_set<size_t> seen;
    for (const Sample& s : p.samples) {
        int64_t v = value_of(s, index);
        if (v == 0) continue;
        seen.clear();
        size_t leaf = SIZE_MAX;
        for_each_frame(p, s, [&](const std::string& name, bool) {
            auto [it, inserted] = ids.try_emplace(name, nodes.size());
            if (inserted) nodes.push_back(Node{TopRow{name, 0, 0}, {}});
            if (seen.insert(it->second).second) nodes[it->second].row.cum += v;
            leaf = it->second;
        });
        if (leaf != SIZE_MAX) nodes[leaf].row.flat += v;
    }
    std::sort(nodes.begin(), nodes.end(), [](const Node& a, const Node& b) {
        if (std::llabs(a.row.flat) != std::llabs(b.row.flat)) {
            return std::llabs(a.row.flat) > std::llabs(b.row.flat);
        }
        if (a.row.function != b.row.function) return a.row.function < b.row.function;
        return std::llabs(a.row.cum) > std::llabs(b.row.cum);
    });
    return nodes;
}

// report.TextItems' inline labels, from the edges of the graph pprof rebuilds over the kept
// nodes only (an edge joins a node to the nearest kept caller), an edge being inline only when
// every occurrence was (graph.AddToEdgeDiv), after dropping edges lighter than `edge_cutoff`
// (graph.TrimLowFrequencyEdges).
void set_inline_labels(const Profile& p, int index, std::vector<Node>& kept, int64_t edge_cutoff) {
    std::unordered_map<std::string, size_t> ids;
    for (size_t i = 0; i < kept.size(); ++i) ids.emplace(kept[i].row.function, i);
    struct Edge {
        int64_t weight = 0;
        bool inline_all = true;
    };
    std::map<std::pair<size_t, size_t>, Edge> edges;  // (caller, callee)
    std::set<std::pair<size_t, size_t>> seen;
    for (const Sample& s : p.samples) {
        int64_t v = value_of(s, index);
        if (v == 0) continue;
        seen.clear();
        size_t parent = SIZE_MAX;
        for_each_frame(p, s, [&](const std::string& name, bool inlined) {
            auto it = ids.find(name);
            if (it == ids.end()) return;  // dropped node: the edge goes over it
            size_t n = it->second;
            if (parent != SIZE_MAX && parent != n && seen.insert({parent, n}).second) {
                Edge& e = edges[{parent, n}];
                e.weight += v;
                e.inline_all = e.inline_all && inlined;
            }
            parent = n;
        });
    }
    std::vector<std::pair<bool, bool>> in(kept.size());  // (some inline, some call) edge in
    for (const auto& [ends, e] : edges) {
        if (std::llabs(e.weight) < edge_cutoff) continue;
        (e.inline_all ? in[ends.second].first : in[ends.second].second) = true;
    }
    for (size_t i = 0; i < kept.size(); ++i) {
        if (in[i].first) kept[i].inline_label = in[i].second ? "(partial-inline)" : "(inline)";
    }
}

// ---- internal/measurement --------------------------------------------------------------------

struct Unit {
    const char* name;
    std::vector<std::string> aliases;
    double factor;
};
struct UnitType {
    std::vector<Unit> units;
    Unit default_unit;
};

const UnitType& memory_units() {
    static const UnitType t{{{"B", {"b", "byte"}, 1},
                             {"kB", {"kb", "kbyte", "kilobyte"}, 0x1p10},
                             {"MB", {"mb", "mbyte", "megabyte"}, 0x1p20},
                             {"GB", {"gb", "gbyte", "gigabyte"}, 0x1p30},
                             {"TB", {"tb", "tbyte", "terabyte"}, 0x1p40},
                             {"PB", {"pb", "pbyte", "petabyte"}, 0x1p50}},
                            {"B", {"b", "byte"}, 1}};
    return t;
}

const UnitType& time_units() {
    static const UnitType t{{{"ns", {"ns", "nanosecond"}, 1},
                             {"us", {"\u03bcs", "us", "microsecond"}, 1e3},
                             {"ms", {"ms", "millisecond"}, 1e6},
                             {"s", {"s", "sec", "second"}, 1e9},
                             {"hrs", {"hour", "hr"}, 3600e9}},
                            {"s", {}, 1e9}};
    return t;
}

const Unit* sniff_unit(const UnitType& t, std::string unit) {
    for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (unit.size() > 2 && unit.back() == 's') unit.pop_back();
    for (const Unit& u : t.units) {
        if (std::find(u.aliases.begin(), u.aliases.end(), unit) != u.aliases.end()) return &u;
    }
    return nullptr;
}

struct Scaled {
    double value = 0;
    std::string unit;
};

bool convert_unit(const UnitType& t, int64_t value, const std::string& from, const std::string& to,
                  Scaled& out) {
    const Unit* from_unit = sniff_unit(t, from);
    if (from_unit == nullptr) return false;
    double v = static_cast<double>(value) * from_unit->factor;
    if (to == "minimum" || to == "auto") {
        double f = 0;
        for (const Unit& u : t.units) {
            if (u.factor >= f && v / u.factor >= 1.0) {
                f = u.factor;
                out.unit = u.name;
            }
        }
        if (f != 0) {
            out.value = v / f;
            return true;
        }
    } else if (const Unit* to_unit = sniff_unit(t, to)) {
        out = {v / to_unit->factor, to_unit->name};
        return true;
    }
    out = {v / t.default_unit.factor, t.default_unit.name};
    return true;
}

// measurement.Scale.
Scaled scale(int64_t value, const std::string& from, const std::string& to) {
    if (value < 0 && -value > 0) {
        Scaled s = scale(-value, from, to);
        s.value = -s.value;
        return s;
    }
    Scaled s;
    if (convert_unit(memory_units(), value, from, to, s)) return s;
    if (convert_unit(time_units(), value, from, to, s)) return s;
    s.value = static_cast<double>(value);
    if (to != "count" && to != "sample" && to != "unit" && to != "minimum" && to != "auto") {
        s.unit = to;
    }
    return s;
}

// measurement.ScaledLabel: two decimals, ".00" dropped.
std::string scaled_label(int64_t value, const std::string& from, const std::string& to) {
    Scaled s = scale(value, from, to);
    char buf[64];
    snprintf(buf, sizeof buf, "%.2f", s.value);
    std::string sv = buf;
    if (sv.size() > 3 && sv.compare(sv.size() - 3, 3, ".00") == 0) sv.resize(sv.size() - 3);
    if (sv == "0" || sv == "-0") return "0";
    return sv + s.unit;
}

// measurement.Percentage.
std::string percentage(int64_t value, int64_t total) {
    double ratio =
        total != 0 ? std::fabs(static_cast<double>(value) / static_cast<double>(total)) * 100 : 0.0;
    char buf[64];
    if (ratio >= 99.95 && ratio <= 100.05) return "  100%";
    snprintf(buf, sizeof buf, ratio >= 1.0 ? "%5.2f%%" : "%5.2g%%", ratio);
    return buf;
}

// report.selectOutputUnit: the unit of the smallest node, unless the total is over 100x larger.
std::string select_output_unit(const std::vector<Node>& nodes, int64_t total,
                               const std::string& sample_unit) {
    if (nodes.empty()) return "minimum";
    int64_t min_value = 0;
    for (const Node& n : nodes) {
        int64_t v = std::llabs(n.row.flat) != 0 ? std::llabs(n.row.flat) : std::llabs(n.row.cum);
        if (v > 0 && (min_value == 0 || v < min_value)) min_value = v;
    }
    if (min_value == 0) min_value = total;
    std::string min_unit = scale(min_value, sample_unit, "minimum").unit;
    std::string max_unit = scale(total, sample_unit, "minimum").unit;
    std::string unit = min_unit;
    if (min_unit != max_unit && min_value * 100 < total) {
        unit = scale(100 * min_value, sample_unit, "minimum").unit;
    }
    return unit.empty() ? sample_unit : unit;
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

}  // namespace

std::vector<TopRow> compute_top(const Profile& profile, int sample_index) {
    std::vector<TopRow> rows;
    if (sample_index < 0 || static_cast<size_t>(sample_index) >= profile.sample_types.size()) {
        return rows;
    }
    for (Node& n : build_nodes(profile, sample_index)) rows.push_back(std::move(n.row));
    return rows;
}

int64_t profile_total(const Profile& profile, int sample_index) {
    // report.computeTotal: the sum of |value| in Go's int64, which wraps (abs(MinInt64) is
    // MinInt64); computed in uint64_t, where int64_t's overflow would be undefined.
    if (sample_index < 0) return 0;
    uint64_t total = 0;
    for (const Sample& s : profile.samples) {
        const auto v = static_cast<uint64_t>(value_of(s, sample_index));
        total += value_of(s, sample_index) < 0 ? 0 - v : v;
    }
    return static_cast<int64_t>(total);
}

namespace {

/// The nodes `top` shows, as report.newTrimmedGraph keeps them: those whose cum reaches
/// kNodeFraction of the summed flat values, then the first `n` (0: all), with inline labels.
struct TrimmedNodes {
    std::vector<Node> nodes;
    size_t dropped = 0;   // below the cutoff
    size_t shown_of = 0;  // above it, before the first `n` were kept
};

TrimmedNodes trim_nodes(const Profile& profile, int sample_index, size_t n) {
    TrimmedNodes t;
    t.nodes = build_nodes(profile, sample_index);
    int64_t flat_total = 0;
    for (const Node& x : t.nodes) flat_total += x.row.flat;
    const int64_t cutoff =
        std::llabs(static_cast<int64_t>(static_cast<double>(flat_total) * kNodeFraction));
    const size_t all_nodes = t.nodes.size();
    std::erase_if(t.nodes, [&](const Node& x) { return std::llabs(x.row.cum) < cutoff; });
    t.dropped = all_nodes - t.nodes.size();
    t.shown_of = t.nodes.size();
    if (n > 0 && n < t.nodes.size()) t.nodes.resize(n);
    set_inline_labels(
        profile, sample_index, t.nodes,
        std::llabs(static_cast<int64_t>(static_cast<double>(flat_total) * kEdgeFraction)));
    return t;
}

/// `top`'s header: File, Type, Active filters and the "Showing ..." / "Dropped ..." lines.
std::string top_header(const Profile& profile, const ValueType& type, const TopContext& context,
                       const TrimmedNodes& t, int64_t total,
                       const std::function<std::string(int64_t)>& fmt_value) {
    int64_t flat_sum = 0;
    for (const Node& x : t.nodes) flat_sum += x.row.flat;
    std::string out;
    if (!profile.mappings.empty() && !profile.mappings[0].filename.empty()) {
        out += "File: " + std::string(base_name(profile.mappings[0].filename)) + "\n";
    }
    out += "Type: " + type.type + "\n";
    if (!context.active_filters.empty()) {
        out += "Active filters:\n";
        for (const std::string& f : context.active_filters) out += "   " + f + "\n";
    }
    std::string pct = percentage(flat_sum, total);
    pct.erase(0, pct.find_first_not_of(' '));
    out += "Showing nodes accounting for " + fmt_value(flat_sum) + ", " + pct + " of " +
           fmt_value(total) + " total\n";
    if (total != 0 && t.dropped > 0) {
        out += "Dropped " + std::to_string(t.dropped) + (t.dropped > 1 ? " nodes" : " node") +
               " (cum <= " +
               fmt_value(
                   std::llabs(static_cast<int64_t>(static_cast<double>(total) * kNodeFraction))) +
               ")\n";
    }
    if (total != 0 && t.nodes.size() < t.shown_of && !t.nodes.empty()) {
        out += "Showing top " + std::to_string(t.nodes.size()) + " nodes out of " +
               std::to_string(t.shown_of) + "\n";
    }
    return out;
}

/// `top`'s table: the column heads and a row per node, flat, flat%, sum%, cum, cum%.
std::string top_table(const std::vector<Node>& nodes, int64_t total,
                      const std::function<std::string(int64_t)>& fmt_value) {
    std::string out;
    char line[512];
    snprintf(line, sizeof line, "%10s %5s%% %5s%% %10s %5s%%\n", "flat", "flat", "sum", "cum",
             "cum");
    out += line;
    int64_t running = 0;
    for (const Node& x : nodes) {
        running += x.row.flat;
        std::string inl = x.inline_label.empty() ? "" : " " + x.inline_label;
        snprintf(line, sizeof line, "%10s %s %s %10s %s  ", fmt_value(x.row.flat).c_str(),
                 percentage(x.row.flat, total).c_str(), percentage(running, total).c_str(),
                 fmt_value(x.row.cum).c_str(), percentage(x.row.cum, total).c_str());
        out += line + x.row.function + inl + "\n";
    }
    return out;
}

}  // namespace

std::string format_top(const Profile& profile, int sample_index, size_t n,
                       const TopContext& context) {
    if (sample_index < 0 || static_cast<size_t>(sample_index) >= profile.sample_types.size()) {
        return "no such sample type\n";
    }
    const ValueType& type = profile.sample_types[static_cast<size_t>(sample_index)];
    const std::string sample_unit = lower(type.unit);
    const int64_t total = context.total ? *context.total : profile_total(profile, sample_index);
    const TrimmedNodes trimmed = trim_nodes(profile, sample_index, n);
    const std::string out_unit = select_output_unit(trimmed.nodes, total, sample_unit);
    auto fmt_value = [&](int64_t v) { return scaled_label(v, sample_unit, out_unit); };
    return top_header(profile, type, context, trimmed, total, fmt_value) +
           top_table(trimmed.nodes, total, fmt_value);
}

}  // namespace pmprof
