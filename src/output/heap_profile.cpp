// Writers of a HeapSnapshot (include/pmprof/heap/heap.h): pprof heap profile, text, JSON, and the
// growth between two heap profiles. Pure functions: they never touch the target.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>

#include "pmprof/heap/heap.h"

namespace pmprof {
namespace {

std::string arena_frame(int arena) {
    if (arena < 0) return "[mmapped]";
    if (arena == 0) return "[main arena]";
    return fmt::format("[arena {}]", arena);
}

std::string json_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
            out += c;
        }
    }
    return out;
}

struct Totals {
    uint64_t live_chunks = 0, live_bytes = 0, tcache_bytes = 0, internal_bytes = 0, fast_bytes = 0,
             bin_bytes = 0, top_bytes = 0, mmapped_live = 0, typed_chunks = 0;
};

Totals totals_of(const HeapSnapshot& s) {
    Totals t;
    for (const ArenaSummary& a : s.arenas) {
        t.live_chunks += a.live_chunks;
        t.live_bytes += a.live_bytes;
        t.tcache_bytes += a.tcache_bytes;
        t.internal_bytes += a.internal_bytes;
        t.fast_bytes += a.fast_bytes;
        t.bin_bytes += a.bin_bytes;
        t.top_bytes += a.top_size;
    }
    for (const HeapChunk& c : s.chunks) {
        t.typed_chunks += c.type != 0 ? 1 : 0;
        if (c.arena < 0) {
            ++t.live_chunks;
            t.live_bytes += c.chunk_size;
        }
    }
    return t;
}

double percent(uint64_t part, uint64_t whole) {
    return whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

void append_groups(std::string& out, const char* title, const std::vector<HeapGroup>& groups,
                   size_t top_n) {
    out += fmt::format("\n{}\n  {:>10} {:>14}  {}\n", title, "objects", "bytes", "name");
    for (size_t i = 0; i < groups.size() && i < top_n; ++i)
        out += fmt::format("  {:>10} {:>14}  {}\n", groups[i].objects, groups[i].bytes,
                           groups[i].name);
    if (groups.size() > top_n) out += fmt::format("  ... {} more\n", groups.size() - top_n);
}

void append_group_json(std::string& out, const char* key, const std::vector<HeapGroup>& groups) {
    out += fmt::format(",\n  \"{}\": [", key);
    for (size_t i = 0; i < groups.size(); ++i)
        out += fmt::format("{}\n    {{\"name\": \"{}\", \"objects\": {}, \"bytes\": {}}}",
                           i ? "," : "", json_escape(groups[i].name), groups[i].objects,
                           groups[i].bytes);
    out += "\n  ]";
}

/// Untyped chunks owned by each type name, by size class: the "owned by" rows of the type table.
std::map<std::string, std::vector<HeapGroup>> owned_by_owner(const HeapSnapshot& s) {
    std::map<std::pair<uint32_t, uint64_t>, HeapGroup> by_key;
    for (const HeapChunk& c : s.chunks) {
        if (c.internal || c.type != 0 || c.owner == 0) continue;
        HeapGroup& g = by_key[{c.owner, group_key(c, false)}];
        ++g.objects;
        g.bytes += static_cast<int64_t>(c.chunk_size);
    }
    std::map<std::string, std::vector<HeapGroup>> out;
    for (auto& [key, g] : by_key) {
        g.name = group_name(s, key.second) + " owned by " + s.type_names[key.first];
        out[s.type_names[key.first]].push_back(g);
    }
    for (auto& [name, rows] : out)
        std::stable_sort(rows.begin(), rows.end(),
                         [](const HeapGroup& a, const HeapGroup& b) { return a.bytes > b.bytes; });
    return out;
}

/// The type table with, under each type, up to three rows of what it owns.
void append_types_with_owned(std::string& out, const HeapSnapshot& s, size_t top_n) {
    std::vector<HeapGroup> groups = heap_by_type(s, true);
    auto owned = owned_by_owner(s);
    out += fmt::format("\n{}\n  {:>10} {:>14}  {}\n",
                       "top types (unknown types by size class; + rows: untyped chunks reachable "
                       "only through that type)",
                       "objects", "bytes", "name");
    for (size_t i = 0; i < groups.size() && i < top_n; ++i) {
        out += fmt::format("  {:>10} {:>14}  {}\n", groups[i].objects, groups[i].bytes,
                           groups[i].name);
        auto it = owned.find(groups[i].name);
        if (it == owned.end()) continue;
        for (size_t k = 0; k < it->second.size() && k < 3; ++k)
            out += fmt::format("  {:>10} {:>14}    + {}\n", it->second[k].objects,
                               it->second[k].bytes, it->second[k].name);
    }
    if (groups.size() > top_n) out += fmt::format("  ... {} more\n", groups.size() - top_n);
}

void append_reach_text(std::string& out, const HeapSnapshot& s, bool types, size_t top_n) {
    const ReachStats& r = s.reach;
    uint64_t direct = 0, typed = 0, owned_only = 0, neither = 0;
    for (const HeapChunk& c : s.chunks) {
        if (c.internal) continue;
        direct += c.reach == ChunkReach::Leaked ? 1 : 0;
        typed += c.type ? 1 : 0;
        owned_only += !c.type && c.owner ? 1 : 0;
        neither += !c.type && !c.owner ? 1 : 0;
    }
    out += fmt::format(
        "\nreachability (conservative scan of {} root ranges, {:.1f} MB, and {} registers; "
        "copied {:.1f} MB in the stop in {:.2f} ms, analysed in {:.2f} ms, {} pointers)\n"
        "  reachable {} chunks; attributed: {} to a type, {} more to one owner type, {} to "
        "neither\n",
        r.root_ranges, static_cast<double>(r.root_bytes) / 1e6, r.root_words,
        static_cast<double>(r.chunk_bytes + r.root_bytes) / 1e6,
        static_cast<double>(r.copy_ns) / 1e6, static_cast<double>(r.scan_ns) / 1e6, r.edges,
        r.reachable_chunks, typed, owned_only, neither);
    out += fmt::format("possibly leaked: {} chunks, {} bytes ({} with no pointer to them, {} "
                       "pointed to only from leaked chunks)\n",
                       r.leaked_chunks, r.leaked_bytes, direct, r.leaked_chunks - direct);
    if (r.leaked_chunks) append_groups(out, "top possibly leaked", heap_leaked(s, types), top_n);
}

/// Per leaf function name: {objects, bytes} summed over samples.
std::map<std::string, std::pair<int64_t, int64_t>> by_leaf(const Profile& p) {
    std::map<std::string, std::pair<int64_t, int64_t>> out;
    int io = p.sample_index("inuse_objects"), is = p.sample_index("inuse_space");
    if (io < 0 || is < 0) return out;
    for (const Sample& s : p.samples) {
        std::string name = "[unknown]";
        if (!s.location_ids.empty())
            if (const Location* l = p.location(s.location_ids[0]); l && !l->lines.empty())
                if (const Function* f = p.function(l->lines[0].function_id)) name = f->name;
        auto& v = out[name];
        v.first += s.values[static_cast<size_t>(io)];
        v.second += s.values[static_cast<size_t>(is)];
    }
    return out;
}

}  // namespace

Profile heap_to_profile(const HeapSnapshot& snap, bool types) {
    Profile p;
    p.sample_types = {{"inuse_objects", "count"}, {"inuse_space", "bytes"}};
    p.default_sample_type = "inuse_space";
    p.period_type = {"space", "bytes"};
    p.period = 1;  // exact, not sampled
    p.time_nanos = snap.time_nanos;
    p.comments.push_back(fmt::format("pmprof heap: pid {}, glibc {}, {} arenas{}", snap.pid,
                                     snap.glibc_version, snap.arenas.size(),
                                     snap.partial() ? ", partial" : ""));
    std::unordered_map<std::string, uint64_t> loc_of;
    auto location = [&](const std::string& name) {
        auto [it, fresh] = loc_of.emplace(name, p.locations.size() + 1);
        if (fresh) {
            p.functions.push_back({it->second, name, name, "", 0});
            p.locations.push_back({it->second, 0, 0, {{it->second, 0}}});
        }
        return it->second;
    };
    // (arena, group key, reach, owner) -> sample. Labels reach=leaked|reachable and owner=TYPE
    // let `go tool pprof -tagfocus=reach=leaked` or `-tagfocus=owner=Session` select chunks.
    std::map<std::tuple<int, uint64_t, int, uint32_t>, size_t> sample_of;
    for (const HeapChunk& c : snap.chunks) {
        if (c.internal) continue;
        uint64_t key = group_key(c, types);
        int reach = c.reach == ChunkReach::Unknown ? 0 : c.reach == ChunkReach::Reachable ? 1 : 2;
        uint32_t owner = types ? c.owner : 0;
        auto [it, fresh] =
            sample_of.emplace(std::make_tuple(c.arena, key, reach, owner), p.samples.size());
        if (fresh) {
            Sample s;
            s.location_ids = {location(group_name(snap, key)), location(arena_frame(c.arena)),
                              location("[heap]")};
            s.values = {0, 0};
            if (reach) s.labels.push_back({"reach", reach == 1 ? "reachable" : "leaked", 0, ""});
            if (owner) s.labels.push_back({"owner", snap.type_names[owner], 0, ""});
            p.samples.push_back(std::move(s));
        }
        p.samples[it->second].values[0] += types ? c.objects : 1;
        p.samples[it->second].values[1] += static_cast<int64_t>(c.chunk_size);
    }
    return p;
}

std::string format_heap_text(const HeapSnapshot& s, bool types, size_t top_n) {
    const MallInfo2& m = s.mallinfo;
    Totals t = totals_of(s);
    std::string out = fmt::format(
        "heap of pid {}: glibc {}, main_arena by {}, {} arenas\n"
        "target stopped {:.2f} ms; walked {:.1f} MB of arena memory in {:.2f} ms\n",
        s.pid, s.glibc_version, s.roots.found_by, s.arenas.size(),
        static_cast<double>(s.stop_window_ns) / 1e6, static_cast<double>(s.bytes_walked) / 1e6,
        static_cast<double>(s.walk_ns) / 1e6);
    out += fmt::format(
        "\nmallinfo2 (computed from malloc's own lists, as glibc does)\n"
        "  arena {}  ordblks {}  smblks {}  hblks {}  hblkhd {}  usmblks {}  fsmblks {}  "
        "uordblks {}  fordblks {}  keepcost {}\n",
        m.arena, m.ordblks, m.smblks, m.hblks, m.hblkhd, m.usmblks, m.fsmblks, m.uordblks,
        m.fordblks, m.keepcost);
    uint64_t free_not_top = m.fordblks - t.top_bytes;
    out += fmt::format(
        "\ntotals\n"
        "  arena bytes   {:>14}  (brk heap + arena heaps)\n"
        "  in use        {:>14}  (live {} in {} chunks; cached in tcache {}; malloc's own {}; "
        "headers {})\n"
        "  free          {:>14}  (top {}, bins {}, fastbins {})\n"
        "  mmapped       {:>14}  ({} chunks)\n"
        "  fragmentation {:>13.1f}%  (free outside top / arena bytes)\n",
        m.arena, m.uordblks, t.live_bytes - s.mmapped_bytes, t.live_chunks - s.mmapped_chunks,
        t.tcache_bytes, t.internal_bytes,
        m.uordblks - std::min(m.uordblks,
                              t.live_bytes - s.mmapped_bytes + t.tcache_bytes + t.internal_bytes),
        m.fordblks, t.top_bytes, t.bin_bytes, t.fast_bytes, m.hblkhd, m.hblks,
        percent(free_not_top, m.arena));
    out += fmt::format("\narenas\n  {:>3} {:>18} {:>5} {:>12} {:>10} {:>12} {:>10} {:>10} {:>10}\n",
                       "#", "address", "heaps", "system_mem", "live", "live_bytes", "free",
                       "tcache", "top");
    for (const ArenaSummary& a : s.arenas)
        out += fmt::format("  {:>3} {:>#18x} {:>5} {:>12} {:>10} {:>12} {:>10} {:>10} {:>10}{}\n",
                           a.index, a.address, a.heaps, a.system_mem, a.live_chunks, a.live_bytes,
                           a.bin_bytes + a.fast_bytes, a.tcache_bytes, a.top_size,
                           a.skipped ? "  SKIPPED" : "");
    if (types) {
        out +=
            fmt::format("\nlive chunks with a C++ type: {} of {}\n", t.typed_chunks, t.live_chunks);
        append_types_with_owned(out, s, top_n);
    }
    if (s.reach.done) append_reach_text(out, s, types, top_n);
    append_groups(out, "top size classes (chunk size)", heap_by_size(s), top_n);
    for (const std::string& p : s.problems) out += "problem: " + p + "\n";
    return out;
}

std::string format_heap_json(const HeapSnapshot& s, bool types) {
    const MallInfo2& m = s.mallinfo;
    Totals t = totals_of(s);
    std::string out = fmt::format(
        "{{\n  \"pid\": {}, \"glibc\": \"{}\", \"roots_found_by\": \"{}\", \"time_nanos\": {},\n"
        "  \"stop_window_ns\": {}, \"walk_ns\": {}, \"bytes_walked\": {}, \"partial\": {},\n"
        "  \"mallinfo2\": {{\"arena\": {}, \"ordblks\": {}, \"smblks\": {}, \"hblks\": {}, "
        "\"hblkhd\": {}, \"usmblks\": {}, \"fsmblks\": {}, \"uordblks\": {}, \"fordblks\": {}, "
        "\"keepcost\": {}}},\n"
        "  \"live_chunks\": {}, \"live_bytes\": {}, \"typed_chunks\": {}, \"mmapped_chunks\": {}, "
        "\"mmapped_bytes\": {}",
        s.pid, json_escape(s.glibc_version), json_escape(s.roots.found_by), s.time_nanos,
        s.stop_window_ns, s.walk_ns, s.bytes_walked, s.partial() ? "true" : "false", m.arena,
        m.ordblks, m.smblks, m.hblks, m.hblkhd, m.usmblks, m.fsmblks, m.uordblks, m.fordblks,
        m.keepcost, t.live_chunks, t.live_bytes, t.typed_chunks, s.mmapped_chunks, s.mmapped_bytes);
    out += ",\n  \"arenas\": [";
    for (size_t i = 0; i < s.arenas.size(); ++i) {
        const ArenaSummary& a = s.arenas[i];
        out += fmt::format(
            "{}\n    {{\"index\": {}, \"address\": {}, \"heaps\": {}, \"skipped\": {}, "
            "\"system_mem\": {}, \"top\": {}, \"bin_chunks\": {}, \"bin_bytes\": {}, "
            "\"fast_chunks\": {}, \"fast_bytes\": {}, \"tcache_chunks\": {}, \"tcache_bytes\": {}, "
            "\"live_chunks\": {}, \"live_bytes\": {}, \"internal_chunks\": {}, "
            "\"walked_free_chunks\": {}, \"walked_free_bytes\": {}}}",
            i ? "," : "", a.index, a.address, a.heaps, a.skipped ? "true" : "false", a.system_mem,
            a.top_size, a.bin_chunks, a.bin_bytes, a.fast_chunks, a.fast_bytes, a.tcache_chunks,
            a.tcache_bytes, a.live_chunks, a.live_bytes, a.internal_chunks, a.walked_free_chunks,
            a.walked_free_bytes);
    }
    out += "\n  ]";
    if (types) append_group_json(out, "types", heap_by_type(s, true));
    append_group_json(out, "sizes", heap_by_size(s));
    if (s.reach.done) {
        const ReachStats& r = s.reach;
        out += fmt::format(
            ",\n  \"reach\": {{\"root_ranges\": {}, \"root_bytes\": {}, \"root_words\": {}, "
            "\"chunk_bytes\": {}, \"copy_ns\": {}, \"scan_ns\": {}, "
            "\"edges\": {}, \"reachable_chunks\": {}, \"owned_chunks\": {}, "
            "\"leaked_chunks\": {}, \"leaked_bytes\": {}}}",
            r.root_ranges, r.root_bytes, r.root_words, r.chunk_bytes, r.copy_ns, r.scan_ns, r.edges,
            r.reachable_chunks, r.owned_chunks, r.leaked_chunks, r.leaked_bytes);
        append_group_json(out, "leaked", heap_leaked(s, types));
        if (types) append_group_json(out, "owned", heap_owned(s));
    }
    out += ",\n  \"problems\": [";
    for (size_t i = 0; i < s.problems.size(); ++i)
        out += fmt::format("{}\"{}\"", i ? ", " : "", json_escape(s.problems[i]));
    out += "]\n}\n";
    return out;
}

std::vector<HeapGrowth> heap_growth(const Profile& base, const Profile& now) {
    auto b = by_leaf(base), n = by_leaf(now);
    std::vector<HeapGrowth> rows;
    for (const auto& [name, v] : n) {
        auto it = b.find(name);
        auto old = it == b.end() ? std::make_pair<int64_t, int64_t>(0, 0) : it->second;
        rows.push_back({name, v.first - old.first, v.second - old.second, v.first, v.second});
    }
    for (const auto& [name, v] : b)
        if (!n.contains(name)) rows.push_back({name, -v.first, -v.second, 0, 0});
    std::erase_if(rows,
                  [](const HeapGrowth& r) { return r.bytes_delta == 0 && r.objects_delta == 0; });
    std::stable_sort(rows.begin(), rows.end(), [](const HeapGrowth& a, const HeapGrowth& b2) {
        return a.bytes_delta > b2.bytes_delta;
    });
    return rows;
}

std::string format_heap_growth(const std::vector<HeapGrowth>& rows, size_t top_n) {
    std::string out = fmt::format("{:>12} {:>14} {:>10} {:>14}  {}\n", "+objects", "+bytes",
                                  "objects", "bytes", "name");
    for (size_t i = 0; i < rows.size() && i < top_n; ++i)
        out +=
            fmt::format("{:>+12} {:>+14} {:>10} {:>14}  {}\n", rows[i].objects_delta,
                        rows[i].bytes_delta, rows[i].objects_now, rows[i].bytes_now, rows[i].name);
    if (rows.empty()) out += "  (no change)\n";
    return out;
}

}  // namespace pmprof
