// Profile lookups and ProfileBuilder: interning raw stacks as they arrive, symbolizing once per
// unique pc at build() time, and laying the result out as profile.proto expects (ids from 1,
// locations leaf first, inline chains as several Lines of one Location).
#include "pmprof/profile/profile.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace pmprof {
namespace {

// The pseudo-frame put at the root of a stack the unwinder could not finish, so a flame graph
// shows the cut instead of presenting the partial stack as a complete one.
constexpr const char* kTruncatedFrame = "[truncated]";

// Dense ids (1..n in order, as the builder and most producers write them) make lookups O(1);
// anything else falls back to a scan.
template <typename T> const T* find_by_id(const std::vector<T>& items, uint64_t id) {
    if (id == 0) return nullptr;
    if (id <= items.size() && items[id - 1].id == id) return &items[id - 1];
    for (const T& item : items) {
        if (item.id == id) return &item;
    }
    return nullptr;
}

void append_bytes(std::string& key, const void* p, size_t n) {
    key.append(static_cast<const char*>(p), n);
}

void append_string(std::string& key, const std::string& s) {
    uint64_t n = s.size();
    append_bytes(key, &n, sizeof n);
    key += s;
}

// Length-prefixed, so distinct label lists never produce the same key.
std::string labels_key(const std::vector<Label>& labels) {
    std::string key;
    for (const Label& l : labels) {
        append_string(key, l.key);
        append_string(key, l.str);
        append_bytes(key, &l.num, sizeof l.num);
        append_string(key, l.num_unit);
    }
    return key;
}

}  // namespace

int Profile::sample_index(const std::string& type) const {
    const std::string& want = type.empty() ? default_sample_type : type;
    if (want.empty()) return static_cast<int>(sample_types.size()) - 1;
    for (size_t i = 0; i < sample_types.size(); ++i) {
        if (sample_types[i].type == want) return static_cast<int>(i);
    }
    // An unknown default_sample_type falls back to the last type, as pprof does.
    return type.empty() ? static_cast<int>(sample_types.size()) - 1 : -1;
}

const Location* Profile::location(uint64_t id) const { return find_by_id(locations, id); }
const Function* Profile::function(uint64_t id) const { return find_by_id(functions, id); }
const Mapping* Profile::mapping(uint64_t id) const { return find_by_id(mappings, id); }

// ---- ProfileBuilder: interning ---------------------------------------------------------------

ProfileBuilder::ProfileBuilder(std::vector<ValueType> sample_types, ValueType period_type,
                               int64_t period)
    : sample_types_(std::move(sample_types)), period_type_(std::move(period_type)),
      period_(period) {}

namespace {

// Adds `values` into `sum` element-wise; `sum` has one slot per sample type, extra values are
// ignored and missing ones count as 0.
void accumulate(std::vector<int64_t>& sum, const std::vector<int64_t>& values) {
    for (size_t i = 0; i < sum.size() && i < values.size(); ++i) sum[i] += values[i];
}

}  // namespace

void ProfileBuilder::add(const RawStack& stack, const std::vector<int64_t>& values,
                         const std::vector<Label>& labels) {
    std::string key(1, 'r');  // 'r'aw and 's'ynthetic stacks share stack_ids_
    for (const RawFrame& f : stack.frames) {
        append_bytes(key, &f.pc, sizeof f.pc);
        key.push_back(f.exact ? 1 : 0);
    }
    auto [it, inserted] = stack_ids_.try_emplace(key, static_cast<uint32_t>(stacks_.size()));
    if (inserted) stacks_.push_back(stack.frames);

    std::string entry_key;
    append_bytes(entry_key, &it->second, sizeof it->second);
    entry_key += stack.truncated ? "rt" : "rc";
    entry_key += labels_key(labels);
    auto [e, fresh] = entry_ids_.try_emplace(entry_key, entries_.size());
    if (fresh) {
        entries_.push_back(Entry{it->second, false, stack.truncated, labels,
                                 std::vector<int64_t>(sample_types_.size(), 0)});
    }
    accumulate(entries_[e->second].values, values);
}

void ProfileBuilder::add_synthetic(const std::vector<std::string>& frames_leaf_first,
                                   const std::vector<int64_t>& values,
                                   const std::vector<Label>& labels) {
    std::string key(1, 's');
    for (const std::string& f : frames_leaf_first) append_string(key, f);
    auto [it, inserted] = stack_ids_.try_emplace(key, static_cast<uint32_t>(synthetic_.size()));
    if (inserted) synthetic_.push_back(frames_leaf_first);

    std::string entry_key;
    append_bytes(entry_key, &it->second, sizeof it->second);
    entry_key += "s";
    entry_key += labels_key(labels);
    auto [e, fresh] = entry_ids_.try_emplace(entry_key, entries_.size());
    if (fresh) {
        entries_.push_back(
            Entry{it->second, true, false, labels, std::vector<int64_t>(sample_types_.size(), 0)});
    }
    accumulate(entries_[e->second].values, values);
}

size_t ProfileBuilder::unique_stacks() const { return stacks_.size() + synthetic_.size(); }
size_t ProfileBuilder::sample_count() const { return entries_.size(); }

// ---- ProfileBuilder: build -------------------------------------------------------------------

namespace {

// Assembles functions, locations and mappings with deduplication and ids from 1.
class Tables {
  public:
    Tables(Profile& p, Symbolizer& sym, const std::vector<MemoryMap>& maps)
        : p_(p), sym_(sym), maps_(maps) {}

    uint64_t raw_location(const RawFrame& f);
    uint64_t pseudo_location(const std::string& name);
    void finish_mappings();

  private:
    uint64_t function_id(const std::string& name, const std::string& system_name,
                         const std::string& filename, int64_t start_line);
    uint64_t mapping_id(uint64_t pc, const SymbolizedPc& s);

    struct MappingInfo {
        uint64_t id = 0;
        bool functions = false, filenames = false, lines = false, inlines = false;
    };
    Profile& p_;
    Symbolizer& sym_;
    const std::vector<MemoryMap>& maps_;
    std::map<std::tuple<std::string, std::string, std::string, int64_t>, uint64_t> functions_;
    std::map<std::pair<uint64_t, bool>, uint64_t> raw_locations_;  // (pc, exact)
    std::map<std::string, uint64_t> pseudo_locations_;
    std::map<size_t, MappingInfo> mappings_;  // index into maps_
};

uint64_t Tables::function_id(const std::string& name, const std::string& system_name,
                             const std::string& filename, int64_t start_line) {
    auto [it, inserted] =
        functions_.try_emplace({name, system_name, filename, start_line}, p_.functions.size() + 1);
    if (inserted) p_.functions.push_back({it->second, name, system_name, filename, start_line});
    return it->second;
}

// One Mapping per executable mapping a pc falls in: file-backed ones, and the vDSO, which
// pprof recognizes by name and does not try to symbolize again.
uint64_t Tables::mapping_id(uint64_t pc, const SymbolizedPc& s) {
    for (size_t i = 0; i < maps_.size(); ++i) {
        const MemoryMap& m = maps_[i];
        if (!m.contains(pc)) continue;
        if (!m.executable() || !(m.file_backed() || m.path == "[vdso]" || m.path == "[vsyscall]")) {
            return 0;
        }
        auto [it, inserted] = mappings_.try_emplace(i);
        if (inserted) {
            it->second.id = p_.mappings.size() + 1;
            Mapping mp;
            mp.id = it->second.id;
            mp.memory_start = m.start;
            mp.memory_limit = m.end;
            mp.file_offset = m.file_offset;
            mp.filename = m.path;
            p_.mappings.push_back(std::move(mp));
        }
        Mapping& mp = p_.mappings[it->second.id - 1];
        if (mp.build_id.empty()) mp.build_id = s.build_id;
        MappingInfo& info = it->second;
        for (const SourceFrame& f : s.frames) {
            info.functions |= !f.function.empty() || !f.mangled.empty();
            info.filenames |= !f.file.empty();
            info.lines |= f.line > 0;
        }
        info.inlines |= s.frames.size() > 1;
        return info.id;
    }
    return 0;
}

// A pc without symbol keeps its mapping and gets a pseudo-function "libfoo.so+0x1234": then
// `go tool pprof -top`, folded and text output all show where it was instead of a bare address
// or "<unknown>", and pprof still re-symbolizes it when the mapping has no functions at all.
uint64_t Tables::raw_location(const RawFrame& f) {
    auto [it, inserted] = raw_locations_.try_emplace({f.pc, f.exact}, p_.locations.size() + 1);
    if (!inserted) return it->second;
    const SymbolizedPc& s = sym_.symbolize(f);
    Location loc;
    loc.id = it->second;
    loc.address = f.pc;
    loc.mapping_id = mapping_id(f.pc, s);
    for (const SourceFrame& sf : s.frames) {
        const std::string& name = sf.function.empty() ? sf.mangled : sf.function;
        loc.lines.push_back(
            {function_id(name, sf.mangled.empty() ? name : sf.mangled, sf.file, sf.start_line),
             sf.line});
    }
    if (loc.lines.empty()) {
        std::string name = module_offset_label(s);  // "0x..." when no module covers the pc
        loc.lines.push_back({function_id(name, name, "", 0), 0});
    }
    p_.locations.push_back(std::move(loc));
    return it->second;
}

uint64_t Tables::pseudo_location(const std::string& name) {
    auto [it, inserted] = pseudo_locations_.try_emplace(name, p_.locations.size() + 1);
    if (inserted) {
        Location loc;
        loc.id = it->second;
        loc.lines.push_back({function_id(name, name, "", 0), 0});
        p_.locations.push_back(std::move(loc));
    }
    return it->second;
}

// has_* say what symbolization found in the mapping. has_functions makes `go tool pprof` keep
// our names instead of re-symbolizing; has_inline_frames is only claimed when an inline chain
// was actually seen. Mappings are then renumbered in address order (the order of `maps`), which
// puts the main executable first as pprof's reports expect.
void Tables::finish_mappings() {
    std::vector<Mapping> sorted;
    std::vector<uint64_t> new_id(p_.mappings.size() + 1, 0);
    for (const auto& [index, info] : mappings_) {  // std::map: ascending index into maps_
        Mapping m = std::move(p_.mappings[info.id - 1]);
        m.has_functions = info.functions;
        m.has_filenames = info.filenames;
        m.has_line_numbers = info.lines;
        m.has_inline_frames = info.inlines;
        new_id[info.id] = sorted.size() + 1;
        m.id = sorted.size() + 1;
        sorted.push_back(std::move(m));
    }
    p_.mappings = std::move(sorted);
    for (Location& l : p_.locations) l.mapping_id = new_id[l.mapping_id];
}

}  // namespace

Profile ProfileBuilder::build(Symbolizer& sym, const std::vector<MemoryMap>& maps) const {
    Profile p;
    p.sample_types = sample_types_;
    p.period_type = period_type_;
    p.period = period_;
    Tables tables(p, sym, maps);
    for (const Entry& e : entries_) {
        Sample s;
        if (e.synthetic) {
            for (const std::string& name : synthetic_[e.stack]) {
                s.location_ids.push_back(tables.pseudo_location(name));
            }
        } else {
            for (const RawFrame& f : stacks_[e.stack]) {
                s.location_ids.push_back(tables.raw_location(f));
            }
            if (e.truncated) s.location_ids.push_back(tables.pseudo_location(kTruncatedFrame));
        }
        s.values = e.values;
        s.labels = e.labels;
        p.samples.push_back(std::move(s));
    }
    tables.finish_mappings();
    return p;
}

}  // namespace pmprof
