// Callgrind writer. Per function (object, file, name): self cost per source line from the leaf
// frames, and one call record per (call site line, callee) with the inclusive cost of the samples
// passing through it, arranged so self + calls of every function equals pprof's cum. The totals
// line is the sum of self costs, which is what callgrind_annotate reports and equals the profile's
// total for every sample type.
#include "pmprof/output/callgrind.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "pmprof/profile/index.h"

namespace pmprof {
namespace {

using Costs = std::vector<int64_t>;

void add_costs(Costs& into, const Costs& v) {
    if (into.size() < v.size()) into.resize(v.size(), 0);
    for (size_t i = 0; i < v.size(); ++i) into[i] = saturating_add(into[i], v[i]);
}

// Function identity in callgrind: object, file and name (that is how KCachegrind merges them).
struct FnKey {
    std::string module, file, name;
    // NOLINTNEXTLINE(modernize-use-nullptr): false positive, the 0 a defaulted <=> compares with.
    auto operator<=>(const FnKey&) const = default;
};

struct CallKey {
    int64_t line;
    size_t callee;  // index into functions
    // NOLINTNEXTLINE(modernize-use-nullptr): false positive, the 0 a defaulted <=> compares with.
    auto operator<=>(const CallKey&) const = default;
};

struct CallRecord {
    int64_t target_line = 0;
    uint64_t samples = 0;
    Costs inclusive;
};

struct FnRecord {
    std::map<int64_t, Costs> self;  // by line
    std::map<CallKey, CallRecord> calls;
};

// A line of the callgrind file may not hold a newline; anything else is allowed in names.
std::string one_line(std::string_view s, std::string_view fallback) {
    if (s.empty()) return std::string(fallback);
    std::string out(s);
    for (char& c : out)
        if (c == '\n' || c == '\r') c = ' ';
    return out;
}

// Event names are identifiers in the format; sample types like "alloc_space" already are.
std::string event_name(const std::string& type, size_t index) {
    std::string out;
    for (char c : type) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
    if (out.empty() || std::isdigit(static_cast<unsigned char>(out[0])))
        out = fmt::format("event{}{}", index, out);
    return out;
}

// Name compression (cl-format "Name compression"): the first use of a name in a class writes
// "(id) name", later uses only "(id)". Files share one class (fl/fi/fe/cfl), objects another
// (ob/cob), functions a third (fn/cfn).
class NameTable {
  public:
    std::string ref(const std::string& name) {
        auto [it, fresh] = ids_.emplace(name, ids_.size() + 1);
        return fresh ? fmt::format("({}) {}", it->second, name) : fmt::format("({})", it->second);
    }

  private:
    std::unordered_map<std::string, size_t> ids_;
};

class Collector {
  public:
    explicit Collector(const ProfileIndex& index) : index_(index) {}

    void add(const Sample& s, size_t events) {
        Costs v(events, 0);
        for (size_t i = 0; i < events; ++i) v[i] = sample_value(s, static_cast<int>(i));
        frames_.clear();
        index_.expand(s, frames_);
        if (frames_.empty()) return;
        size_t leaf = fn_id(frames_[0]);
        add_costs(fns_[leaf].self[frames_[0].line], v);
        // Readers compute a function's inclusive cost as self + its outgoing call costs, so each
        // sample must reach a function through exactly one of them: the leaf function through
        // its self cost, every other function through the call at its outermost frame only.
        // With recursion this drops the inner calls (a sample counts once, as pprof's cum).
        seen_.clear();
        seen_.insert(leaf);
        for (size_t i = frames_.size() - 1; i > 0; --i) {
            size_t caller = fn_id(frames_[i]), callee = fn_id(frames_[i - 1]);
            if (!seen_.insert(caller).second) continue;
            CallRecord& rec = fns_[caller].calls[CallKey{frames_[i].line, callee}];
            rec.target_line = frames_[i - 1].start_line;
            rec.samples += 1;
            add_costs(rec.inclusive, v);
        }
    }

    const std::vector<FnKey>& keys() const { return keys_; }
    const std::vector<FnRecord>& records() const { return fns_; }

  private:
    size_t fn_id(const FrameView& f) {
        FnKey key{one_line(f.module, "???"), one_line(f.file, "???"), one_line(f.name, "???")};
        auto [it, fresh] = ids_.emplace(key, keys_.size());
        if (fresh) {
            keys_.push_back(std::move(key));
            fns_.emplace_back();
        }
        return it->second;
    }

    const ProfileIndex& index_;
    std::map<FnKey, size_t> ids_;
    std::vector<FnKey> keys_;
    std::vector<FnRecord> fns_;
    std::vector<FrameView> frames_;
    std::set<size_t> seen_;  // functions already accounted for in the current sample
};

void append_costs(std::string& out, int64_t line, const Costs& c, size_t events) {
    out += fmt::format("{}", line < 0 ? 0 : line);
    for (size_t i = 0; i < events; ++i) out += fmt::format(" {}", i < c.size() ? c[i] : 0);
    out += '\n';
}

/// The profiled process as pmprof's verbs name it in a profile's first comment, "pmprof VERB
/// PID: COMMAND LINE" (or "pmprof VERB: COMMAND LINE"): {pid or "", command line or ""}.
std::pair<std::string, std::string> target_of(const Profile& p) {
    if (p.comments.empty() || !p.comments.front().starts_with("pmprof ")) return {};
    const std::string& c = p.comments.front();
    const size_t colon = c.find(": ");
    if (colon == std::string::npos) return {};
    const std::string head = c.substr(0, colon);  // "pmprof attach 123"
    const size_t last = head.rfind(' ');
    std::string pid = head.substr(last + 1);
    const bool digits = last > std::string("pmprof").size() && !pid.empty() &&
                        pid.find_first_not_of("0123456789") == std::string::npos;
    return {digits ? pid : std::string(), c.substr(colon + 2)};
}

std::string header(const Profile& p, const CallgrindOptions& opt, const Costs& totals) {
    std::string out = "# callgrind format\nversion: 1\ncreator: pmprof\n";
    for (const std::string& c : p.comments) out += "# " + one_line(c, "") + "\n";
    // "pid:" and "cmd:" describe the profiled process (callgrind_annotate's "Profiled target").
    auto [pid, command] = target_of(p);
    if (!opt.command.empty()) command = opt.command;
    if (!pid.empty()) out += "pid: " + pid + "\n";
    if (!command.empty()) out += "cmd: " + one_line(command, "") + "\n";
    out += "positions: line\n";
    std::string events;
    for (size_t i = 0; i < p.sample_types.size(); ++i) {
        const ValueType& t = p.sample_types[i];
        std::string name = event_name(t.type, i);
        out += fmt::format("event: {} : {} ({})\n", name, one_line(t.type, "?"),
                           one_line(t.unit, "count"));
        events += (i ? " " : "") + name;
    }
    out += "events: " + events + "\n";
    out += "summary:";
    for (int64_t t : totals) out += fmt::format(" {}", t);
    return out + "\n";
}

}  // namespace

std::string write_callgrind(const Profile& profile, const CallgrindOptions& opt) {
    const size_t events = profile.sample_types.size();
    ProfileIndex index(profile);
    Collector col(index);
    Costs totals(events, 0);
    for (const Sample& s : profile.samples) {
        col.add(s, events);
        for (size_t i = 0; i < events; ++i)
            totals[i] = saturating_add(totals[i], sample_value(s, static_cast<int>(i)));
    }

    std::string out = header(profile, opt, totals);
    // Functions in a stable order (object, file, name) so output is deterministic.
    std::vector<size_t> order(col.keys().size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return col.keys()[a] < col.keys()[b]; });

    NameTable objects, files, functions;
    for (size_t id : order) {
        const FnKey& k = col.keys()[id];
        const FnRecord& r = col.records()[id];
        out += "\nob=" + objects.ref(k.module) + "\nfl=" + files.ref(k.file) +
               "\nfn=" + functions.ref(k.name) + "\n";
        for (const auto& [line, costs] : r.self) append_costs(out, line, costs, events);
        for (const auto& [ck, rec] : r.calls) {
            const FnKey& callee = col.keys()[ck.callee];
            if (callee.module != k.module) out += "cob=" + objects.ref(callee.module) + "\n";
            out += "cfl=" + files.ref(callee.file) + "\ncfn=" + functions.ref(callee.name) + "\n";
            out += fmt::format("calls={} {}\n", rec.samples, rec.target_line);
            append_costs(out, ck.line, rec.inclusive, events);
        }
    }
    out += "\ntotals:";
    for (int64_t t : totals) out += fmt::format(" {}", t);
    return out + "\n";
}

}  // namespace pmprof
