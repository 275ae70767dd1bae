// `pmprof report --base` and `--tagfocus`: profile subtraction (pprof -base semantics) and label
// filtering, both producing a new, self-consistent Profile that every writer accepts.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <regex>
#include <tuple>

#include "pmprof/report.h"
#include "report_frames.h"

namespace pmprof {
namespace {

// -v without overflow for INT64_MIN.
int64_t negate(int64_t v) { return v == INT64_MIN ? INT64_MAX : -v; }

// Re-interns the functions, mappings, locations and samples of several profiles into one, so
// equal symbols from different files share ids (what compute_top and the writers aggregate by).
class Merger {
  public:
    explicit Merger(const Profile& first) {
        out_.sample_types = first.sample_types;
        out_.period_type = first.period_type;
        out_.period = first.period;
        out_.time_nanos = first.time_nanos;
        out_.duration_nanos = first.duration_nanos;
        out_.default_sample_type = first.default_sample_type;
        out_.comments = first.comments;
    }

    void add(const Profile& p, int64_t sign) {
        ProfileIndex index(p);
        std::vector<uint64_t> locs;
        for (const Sample& s : p.samples) {
            locs.clear();
            for (uint64_t id : s.location_ids) locs.push_back(location_id(index, id));
            std::vector<Label> labels = s.labels;
            std::sort(labels.begin(), labels.end(), [](const Label& a, const Label& b) {
                return std::tie(a.key, a.str, a.num, a.num_unit) <
                       std::tie(b.key, b.str, b.num, b.num_unit);
            });
            auto [it, fresh] =
                samples_.emplace(SampleKey{locs, label_key(labels)}, out_.samples.size());
            if (fresh)
                out_.samples.push_back(Sample{locs, std::vector<int64_t>(width(), 0), labels});
            std::vector<int64_t>& values = out_.samples[it->second].values;
            for (size_t i = 0; i < width() && i < s.values.size(); ++i)
                values[i] = saturating_add(values[i], sign > 0 ? s.values[i] : negate(s.values[i]));
        }
    }

    Profile take() {
        std::erase_if(out_.samples, [](const Sample& s) {
            return std::all_of(s.values.begin(), s.values.end(), [](int64_t v) { return v == 0; });
        });
        return std::move(out_);
    }

  private:
    using SampleKey = std::pair<std::vector<uint64_t>, std::string>;

    static std::string label_key(const std::vector<Label>& labels) {
        std::string key;
        for (const Label& l : labels)
            key += fmt::format("{}\x1f{}\x1f{}\x1f{}\x1e", l.key, l.str, l.num, l.num_unit);
        return key;
    }
    using FunctionKey = std::tuple<std::string, std::string, std::string, int64_t>;
    using MappingKey = std::tuple<uint64_t, uint64_t, std::string>;
    using LocationKey = std::tuple<uint64_t, uint64_t, std::vector<std::pair<uint64_t, int64_t>>>;

    size_t width() const { return out_.sample_types.size(); }

    uint64_t function_id(const Function* f) {
        if (!f) return 0;
        FunctionKey key{f->name, f->system_name, f->filename, f->start_line};
        auto [it, fresh] = functions_.emplace(key, out_.functions.size() + 1);
        if (fresh) {
            Function copy = *f;
            copy.id = it->second;
            out_.functions.push_back(std::move(copy));
        }
        return it->second;
    }

    // Mappings match by size, offset and identity (build id, else file), as pprof's merge
    // does, so the same binary loaded at another address (ASLR) is one mapping.
    const Mapping* mapping_for(const Mapping* m) {
        if (!m) return nullptr;
        MappingKey key{m->memory_limit - m->memory_start, m->file_offset,
                       m->build_id.empty() ? m->filename : m->build_id};
        auto [it, fresh] = mappings_.emplace(key, out_.mappings.size());
        if (fresh) {
            Mapping copy = *m;
            copy.id = out_.mappings.size() + 1;
            out_.mappings.push_back(std::move(copy));
        }
        return &out_.mappings[it->second];
    }

    uint64_t location_id(const ProfileIndex& index, uint64_t id) {
        const Location* loc = index.location(id);
        if (!loc) return 0;  // dangling: kept as an unknown frame by the writers
        const Mapping* old_m = index.mapping(loc->mapping_id);
        const Mapping* new_m = mapping_for(old_m);
        uint64_t address = loc->address;
        if (old_m && new_m) address = address - old_m->memory_start + new_m->memory_start;
        std::vector<std::pair<uint64_t, int64_t>> lines;
        for (const Line& l : loc->lines)
            lines.emplace_back(function_id(index.function(l.function_id)), l.line);
        uint64_t mid = new_m ? new_m->id : 0;
        auto [it, fresh] =
            locations_.emplace(LocationKey{mid, address, lines}, out_.locations.size() + 1);
        if (fresh) {
            Location copy;
            copy.id = it->second;
            copy.mapping_id = mid;
            copy.address = address;
            for (const auto& [fid, line] : lines) copy.lines.push_back(Line{fid, line});
            out_.locations.push_back(std::move(copy));
        }
        return it->second;
    }

    Profile out_;
    std::map<FunctionKey, uint64_t> functions_;
    std::map<MappingKey, size_t> mappings_;
    std::map<LocationKey, uint64_t> locations_;
    std::map<SampleKey, size_t> samples_;
};

std::string describe_types(const Profile& p) {
    std::string out;
    for (const ValueType& t : p.sample_types)
        out += (out.empty() ? "" : ", ") + t.type + "/" + t.unit;
    return out.empty() ? "none" : out;
}

// "LO:HI", "LO:", ":HI" or "N" over int64; false when `text` is none of them.
bool parse_range(const std::string& text, int64_t& lo, int64_t& hi) {
    auto parse = [](std::string_view s, int64_t& v) {
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        return ec == std::errc() && end == s.data() + s.size();
    };
    size_t colon = text.find(':');
    if (colon == std::string::npos) {
        if (!parse(text, lo)) return false;
        hi = lo;
        return true;
    }
    std::string_view a(text.data(), colon), b(text.data() + colon + 1, text.size() - colon - 1);
    lo = INT64_MIN;
    hi = INT64_MAX;
    if (!a.empty() && !parse(a, lo)) return false;
    if (!b.empty() && !parse(b, hi)) return false;
    return !(a.empty() && b.empty());
}

}  // namespace

Result<Profile> subtract_profile(const Profile& current, const Profile& base) {
    if (current.sample_types != base.sample_types)
        return Error{fmt::format("cannot subtract profiles with different sample types ({} vs "
                                 "base {})",
                                 describe_types(current), describe_types(base)),
                     0};
    Merger m(current);
    m.add(current, 1);
    m.add(base, -1);
    return m.take();
}

Result<Profile> tag_focus(const Profile& profile, const std::string& filter) {
    size_t eq = filter.find('=');
    if (eq == std::string::npos || eq == 0)
        return Error{"tag filter '" + filter + "' is not KEY=VALUE", 0};
    std::string key = filter.substr(0, eq), value = filter.substr(eq + 1);
    std::regex re;
    try {
        re = std::regex(value, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        return Error{fmt::format("tag filter '{}': bad regular expression: {}", filter, e.what()),
                     0};
    }
    int64_t lo = 0, hi = 0;
    bool numeric = parse_range(value, lo, hi);
    Profile out = profile;
    std::erase_if(out.samples, [&](const Sample& s) {
        for (const Label& l : s.labels) {
            if (l.key != key) continue;
            if (!l.str.empty() ? std::regex_search(l.str, re)
                               : numeric && l.num >= lo && l.num <= hi)
                return false;
        }
        return true;
    });
    return out;
}

}  // namespace pmprof
