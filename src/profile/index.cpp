// ProfileIndex: tolerant id lookups and inline-expanded stacks over a Profile.
#include "pmprof/profile/index.h"

#include <fmt/format.h>

#include <charconv>

#include "pmprof/support/path.h"

namespace pmprof {
namespace {

constexpr std::string_view kUnknownLocation = "[unknown location]";
constexpr std::string_view kUnknownFunction = "[unknown function]";

template <typename T>
void index_ids(const std::vector<T>& items, std::unordered_map<uint64_t, size_t>& out) {
    out.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i) out.emplace(items[i].id, i);  // first one wins
}

}  // namespace

ProfileIndex::ProfileIndex(const Profile& profile) : profile_(profile) {
    index_ids(profile.locations, locations_);
    index_ids(profile.functions, functions_);
    index_ids(profile.mappings, mappings_);
    // Unsymbolized locations are named like pprof names them: by module and offset when the
    // mapping is known, by address otherwise.
    for (const Location& loc : profile.locations) {
        if (!loc.lines.empty()) continue;
        const Mapping* m = mapping(loc.mapping_id);
        std::string name;
        if (m && !m->filename.empty() && loc.address >= m->memory_start)
            name = fmt::format("{}+0x{:x}", base_name(m->filename),
                               loc.address - m->memory_start + m->file_offset);
        else
            name = fmt::format("0x{:x}", loc.address);
        synthetic_names_.emplace(loc.id, std::move(name));
    }
}

const Location* ProfileIndex::location(uint64_t id) const {
    auto it = locations_.find(id);
    return it == locations_.end() ? nullptr : &profile_.locations[it->second];
}

const Function* ProfileIndex::function(uint64_t id) const {
    auto it = functions_.find(id);
    return it == functions_.end() ? nullptr : &profile_.functions[it->second];
}

const Mapping* ProfileIndex::mapping(uint64_t id) const {
    if (id == 0) return nullptr;
    auto it = mappings_.find(id);
    return it == mappings_.end() ? nullptr : &profile_.mappings[it->second];
}

void ProfileIndex::expand_location(uint64_t id, std::vector<FrameView>& out) const {
    const Location* loc = location(id);
    if (!loc) {
        out.push_back(FrameView{kUnknownLocation, {}, {}, 0, 0});
        return;
    }
    const Mapping* m = mapping(loc->mapping_id);
    std::string_view module = m ? std::string_view(m->filename) : std::string_view();
    if (loc->lines.empty()) {
        auto it = synthetic_names_.find(loc->id);
        std::string_view name = it == synthetic_names_.end() ? kUnknownLocation : it->second;
        out.push_back(FrameView{name, {}, module, 0, 0});
        return;
    }
    for (const Line& line : loc->lines) {
        const Function* fn = function(line.function_id);
        if (!fn) {
            out.push_back(FrameView{kUnknownFunction, {}, module, line.line, 0});
            continue;
        }
        std::string_view name = fn->name.empty() ? std::string_view(fn->system_name) : fn->name;
        if (name.empty()) name = kUnknownFunction;
        out.push_back(FrameView{name, fn->filename, module, line.line, fn->start_line});
    }
}

void ProfileIndex::expand(const Sample& sample, std::vector<FrameView>& out) const {
    for (uint64_t id : sample.location_ids) expand_location(id, out);
}

int ProfileIndex::resolve_sample_index(const std::string& name) const {
    const auto& types = profile_.sample_types;
    if (types.empty()) return -1;
    std::string wanted = name.empty() ? profile_.default_sample_type : name;
    if (wanted.empty()) return static_cast<int>(types.size()) - 1;  // pprof's default: the last
    for (size_t i = 0; i < types.size(); ++i)
        if (types[i].type == wanted) return static_cast<int>(i);
    int n = -1;
    auto [end, ec] = std::from_chars(wanted.data(), wanted.data() + wanted.size(), n);
    if (ec == std::errc() && end == wanted.data() + wanted.size() && n >= 0 &&
        static_cast<size_t>(n) < types.size())
        return n;
    // A default_sample_type naming no type falls back to the last, as pprof does.
    if (name.empty()) return static_cast<int>(types.size()) - 1;
    return -1;
}

int64_t sample_value(const Sample& s, int index) {
    if (index < 0 || static_cast<size_t>(index) >= s.values.size()) return 0;
    return s.values[static_cast<size_t>(index)];
}

}  // namespace pmprof
