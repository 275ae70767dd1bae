// C++ type attribution and grouping of live chunks (include/pmprof/heap/heap.h).
//
// Itanium C++ ABI §2.5: a polymorphic object's first word is its primary vptr, which points
// 16 bytes into the most-derived class's vtable group (after offset-to-top and the typeinfo
// pointer), so the `_ZTV` symbol containing it names the complete object's type, also under
// multiple and virtual inheritance. vptr[-1] is the std::type_info, whose second word is the
// mangled type name: the fallback when the defining module has no symbols.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <map>
#include <unordered_map>

#include "heap/cached_reader.h"
#include "pmprof/heap/heap.h"
#include "pmprof/heap/symbols.h"
#include "pmprof/symbolize/symbolize.h"

namespace pmprof {
namespace {

using heap_detail::MapIndex;

/// The first template argument of "prefix<A, B>" (nesting-aware), or "" when `name` is not one.
std::string first_template_arg(const std::string& name, const std::string& prefix) {
    if (!name.starts_with(prefix)) return {};
    int depth = 0;
    for (size_t i = prefix.size(); i < name.size(); ++i) {
        char c = name[i];
        if (c == '<' || c == '(') ++depth;
        if (c == '>' || c == ')') --depth;
        if ((c == ',' && depth == 0) || depth < 0)
            return name.substr(prefix.size(), i - prefix.size());
    }
    return {};
}

/// make_shared's control block holds the object: show it as that type.
std::string display_type(const std::string& type) {
    std::string held = first_template_arg(type, "std::_Sp_counted_ptr_inplace<");
    if (!held.empty()) return held;
    std::string ptr = first_template_arg(type, "std::_Sp_counted_ptr<");
    if (!ptr.empty()) return "shared_ptr control block for " + ptr;
    return type;
}

bool mangled_type_chars(const std::string& s) {
    if (s.empty()) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
    });
}

class TypeLookup {
  public:
    TypeLookup(std::vector<VtableRange> vtables, MemoryReader* rtti, const MapIndex& maps)
        : vtables_(std::move(vtables)), rtti_(rtti), maps_(maps) {}

    /// The type name for a would-be vptr, "" when it is not one.
    const std::string& type_of(uint64_t vptr) {
        auto it = cache_.find(vptr);
        if (it != cache_.end()) return it->second;
        std::string t = from_symbols(vptr);
        if (t.empty() && rtti_) t = from_rtti(vptr);
        return cache_.emplace(vptr, t.empty() ? t : display_type(t)).first->second;
    }

  private:
    std::string from_symbols(uint64_t vptr) const {
        auto it = std::upper_bound(vtables_.begin(), vtables_.end(), vptr,
                                   [](uint64_t v, const VtableRange& r) { return v < r.start; });
        if (it == vtables_.begin()) return {};
        --it;
        // A vptr points past offset-to-top and the typeinfo pointer: start + 16 at least.
        if (vptr < it->start + 16 || vptr >= it->end || (vptr & 7)) return {};
        return it->type;
    }

    std::string from_rtti(uint64_t vptr) {
        const MemoryMap* m = maps_.find(vptr);
        if (!m || !m->file_backed() || m->writable() || m->executable() || (vptr & 7)) return {};
        uint64_t head[2] = {0, 0};  // offset-to-top, typeinfo
        if (vptr < 16 || !rtti_->read_value(vptr - 16, &head) || head[0] != 0) return {};
        const MemoryMap* tm = maps_.find(head[1]);
        uint64_t ti[2] = {0, 0};  // type_info vptr, name
        if (!tm || !tm->file_backed() || (head[1] & 7) || !rtti_->read_value(head[1], &ti))
            return {};
        // The type_info's own vptr must be one of libstdc++'s __cxxabiv1 classes.
        if (!from_symbols(ti[0]).starts_with("__cxxabiv1::")) return {};
        char name[256] = {};
        const MemoryMap* nm = maps_.find(ti[1]);
        if (!nm || !nm->file_backed()) return {};
        auto r = rtti_->read(ti[1], name, sizeof name - 1);
        if (!r.ok()) return {};
        std::string mangled(name);
        if (!mangled_type_chars(mangled)) return {};
        std::string t = demangle_type(mangled);
        return t == mangled ? std::string{} : t;
    }

    std::vector<VtableRange> vtables_;
    MemoryReader* rtti_;
    const MapIndex& maps_;
    std::unordered_map<uint64_t, std::string> cache_;
};

std::string human_bytes(uint64_t v) {
    static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && v % 1024 == 0 && u < 4) {
        v /= 1024;
        ++u;
    }
    return fmt::format("{} {}", v, kUnits[u]);
}

std::vector<HeapGroup> sorted_groups(std::map<std::string, HeapGroup>& groups) {
    std::vector<HeapGroup> out;
    out.reserve(groups.size());
    for (auto& [name, g] : groups) out.push_back(std::move(g));
    std::stable_sort(out.begin(), out.end(),
                     [](const HeapGroup& a, const HeapGroup& b) { return a.bytes > b.bytes; });
    return out;
}

}  // namespace

void attribute_types(HeapSnapshot& snap, std::vector<VtableRange> vtables, MemoryReader* rtti,
                     const std::vector<MemoryMap>& maps) {
    MapIndex index(maps);
    TypeLookup lookup(std::move(vtables), rtti, index);
    std::unordered_map<std::string, uint32_t> ids;
    for (uint32_t i = 0; i < snap.type_names.size(); ++i) ids[snap.type_names[i]] = i;
    auto id_of = [&](const std::string& name) {
        auto [it, fresh] = ids.emplace(name, static_cast<uint32_t>(snap.type_names.size()));
        if (fresh) snap.type_names.push_back(name);
        return it->second;
    };
    for (HeapChunk& c : snap.chunks) {
        if (c.internal) continue;
        const std::string& t = lookup.type_of(c.word0);
        if (!t.empty()) {
            c.type = id_of(t);
            c.objects = 1;
            continue;
        }
        // new T[n] for a T with a non-trivial destructor: an 8-byte cookie n, then the objects.
        uint64_t usable = c.chunk_size - 8;
        if (c.word0 >= 1 && c.word0 <= (usable - 8) / 8) {
            const std::string& at = lookup.type_of(c.word1);
            if (!at.empty()) {
                c.type = id_of(at);
                c.objects = static_cast<uint32_t>(c.word0);
            }
        }
    }
}

std::string size_class_label(uint64_t chunk_size) {
    if (chunk_size <= 1024) return fmt::format("[{} B]", chunk_size);
    uint64_t lo = std::bit_floor(chunk_size);
    return fmt::format("[{}-{})", human_bytes(lo), human_bytes(lo * 2));
}

uint64_t group_key(const HeapChunk& c, bool types) {
    if (types && c.type) return (uint64_t{1} << 63) | c.type;
    return c.chunk_size <= 1024 ? c.chunk_size : std::bit_floor(c.chunk_size);
}

std::string group_name(const HeapSnapshot& snap, uint64_t key) {
    if (key >> 63) return snap.type_names[key & 0xffffffff];
    return size_class_label(key);
}

std::vector<HeapGroup> heap_by_type(const HeapSnapshot& snap, bool types) {
    // Integer keys first (one hash lookup per chunk), names once per group.
    std::unordered_map<uint64_t, HeapGroup> by_key;
    for (const HeapChunk& c : snap.chunks) {
        if (c.internal) continue;
        HeapGroup& g = by_key[group_key(c, types)];
        g.objects += types ? c.objects : 1;
        g.bytes += static_cast<int64_t>(c.chunk_size);
    }
    std::map<std::string, HeapGroup> groups;
    for (auto& [key, g] : by_key) {
        g.name = group_name(snap, key);
        HeapGroup& merged = groups[g.name];
        merged.name = g.name;
        merged.objects += g.objects;
        merged.bytes += g.bytes;
    }
    return sorted_groups(groups);
}

std::vector<HeapGroup> heap_by_size(const HeapSnapshot& snap) { return heap_by_type(snap, false); }

namespace {

/// Groups the chunks `pick` selects by group name plus " owned by OWNER" when they have one.
template <typename Pick>
std::vector<HeapGroup> owner_groups(const HeapSnapshot& snap, bool types, Pick&& pick) {
    std::map<std::pair<uint64_t, uint32_t>, HeapGroup> by_key;
    for (const HeapChunk& c : snap.chunks) {
        if (c.internal || !pick(c)) continue;
        HeapGroup& g = by_key[{group_key(c, types), types ? c.owner : 0}];
        g.objects += types ? c.objects : 1;
        g.bytes += static_cast<int64_t>(c.chunk_size);
    }
    std::map<std::string, HeapGroup> groups;
    for (auto& [key, g] : by_key) {
        std::string name = group_name(snap, key.first);
        if (key.second) name += " owned by " + snap.type_names[key.second];
        HeapGroup& merged = groups[name];
        merged.name = name;
        merged.objects += g.objects;
        merged.bytes += g.bytes;
    }
    return sorted_groups(groups);
}

}  // namespace

std::vector<HeapGroup> heap_leaked(const HeapSnapshot& snap, bool types) {
    return owner_groups(snap, types, [](const HeapChunk& c) {
        return c.reach == ChunkReach::Leaked || c.reach == ChunkReach::LeakedIndirect;
    });
}

std::vector<HeapGroup> heap_owned(const HeapSnapshot& snap) {
    return owner_groups(snap, true, [](const HeapChunk& c) { return c.owner != 0 && c.type == 0; });
}

}  // namespace pmprof
