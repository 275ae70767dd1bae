// merge_profiles: several profiles re-interned into one (pprof's merge), for `report --base`
// and for a sampler that followed an execve (one profile per program image).
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>

#include "pmprof/profile/labels.h"
#include "pmprof/profile/profile.h"

namespace pmprof {
namespace {

// -v without overflow for INT64_MIN.
int64_t negate(int64_t v) { return v == INT64_MIN ? INT64_MAX : -v; }

/// Id lookups of one profile.
class Index {
  public:
    explicit Index(const Profile& p) {
        for (const Location& l : p.locations) locations_.emplace(l.id, &l);
        for (const Function& f : p.functions) functions_.emplace(f.id, &f);
        for (const Mapping& m : p.mappings) mappings_.emplace(m.id, &m);
    }
    const Location* location(uint64_t id) const { return find(locations_, id); }
    const Function* function(uint64_t id) const { return find(functions_, id); }
    const Mapping* mapping(uint64_t id) const { return find(mappings_, id); }

  private:
    template <typename T>
    static const T* find(const std::unordered_map<uint64_t, const T*>& m, uint64_t id) {
        auto it = m.find(id);
        return it == m.end() ? nullptr : it->second;
    }
    std::unordered_map<uint64_t, const Location*> locations_;
    std::unordered_map<uint64_t, const Function*> functions_;
    std::unordered_map<uint64_t, const Mapping*> mappings_;
};

// Equal symbols from different profiles share ids (what compute_top and the writers aggregate
// by); samples with the same locations and labels add up.
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
        const Index index(p);
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

    uint64_t location_id(const Index& index, uint64_t id) {
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

}  // namespace

Profile merge_profiles(const std::vector<std::pair<const Profile*, int>>& parts) {
    if (parts.empty()) return Profile{};
    Merger m(*parts.front().first);
    for (const auto& [p, sign] : parts) m.add(*p, sign);
    return m.take();
}

std::vector<Label> process_labels(pid_t pid, const std::string& comm) {
    return {{"pid", "", pid, ""}, {"comm", comm, 0, ""}};
}

void add_sample_labels(Profile& profile, const std::vector<Label>& labels) {
    for (Sample& s : profile.samples) s.labels.insert(s.labels.end(), labels.begin(), labels.end());
}

}  // namespace pmprof
