// ELF lookups for the heap walker (include/pmprof/heap/symbols.h), through ElfFile
// (include/pmprof/elf/elf_file.h): files are opened through /proc/PID/map_files/<lo>-<hi> first
// (deleted, replaced, other-namespace files), then /proc/PID/root/<path>; separate debug files by
// build id under the target's /usr/lib/debug/.build-id, then ours.
#include "pmprof/heap/symbols.h"

#include <elf.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>

#include "heap/cached_reader.h"
#include "pmprof/elf/elf_file.h"
#include "pmprof/os/procfs.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/path.h"
#include "pmprof/symbolize/symbolize.h"

namespace pmprof::heap_detail {
namespace {

/// The lowest mapping of `path` (its load address).
const MemoryMap* lowest_mapping(const std::vector<MemoryMap>& maps, const std::string& path) {
    const MemoryMap* best = nullptr;
    for (const MemoryMap& m : maps)
        if (m.path == path && (!best || m.start < best->start)) best = &m;
    return best;
}

/// The separate debug file for `build_id`, in the target's root or ours.
std::unique_ptr<ElfFile> open_debug(pid_t pid, const std::string& build_id) {
    const std::string rel = build_id_debug_path(build_id);
    if (rel.empty()) return nullptr;
    auto e = ElfFile::open(fmt::format("/proc/{}/root{}", pid, rel));
    if (!e) e = ElfFile::open(rel);
    return e;
}

bool is_libc_name(std::string_view base) {
    return base == "libc.so.6" || (base.starts_with("libc-2.") && base.ends_with(".so"));
}

}  // namespace

const MemoryMap* find_libc(const std::vector<MemoryMap>& maps) {
    for (const MemoryMap& m : maps)
        if (m.file_backed() && m.file_offset == 0 && is_libc_name(base_name(m.path))) return &m;
    return nullptr;
}

Result<void> check_glibc_malloc(pid_t pid, const std::vector<MemoryMap>& maps) {
    static const std::pair<const char*, const char*> kOthers[] = {
        {"libjemalloc", "jemalloc"},    {"libtcmalloc", "tcmalloc (gperftools)"},
        {"libmimalloc", "mimalloc"},    {"libhoard", "Hoard"},
        {"libtbbmalloc", "TBB malloc"}, {"ld-musl", "musl libc"},
        {"libc.musl", "musl libc"}};
    for (const MemoryMap& m : maps)
        for (const auto& [needle, name] : kOthers)
            if (base_name(m.path).starts_with(needle))
                return Error{fmt::format("pid {} uses {} ({}), not glibc malloc; pmprof heap reads "
                                         "only glibc's ptmalloc",
                                         pid, name, m.path),
                             0};
    if (!find_libc(maps))
        return Error{fmt::format("pid {} has no glibc libc.so.6 mapped (a static binary or "
                                 "another libc); pmprof heap reads only glibc's ptmalloc",
                                 pid),
                     0};
    // An executable that defines malloc itself (a statically linked allocator) replaces glibc's.
    const MemoryMap* exe = nullptr;
    for (const MemoryMap& m : maps)
        if (m.file_backed() && (!exe || m.start < exe->start)) exe = &m;
    if (exe && !is_libc_name(base_name(exe->path))) {
        if (auto e = ElfFile::open_mapped(pid, *exe)) {
            if (e->find_symbol(SHT_DYNSYM, "malloc", STT_FUNC))
                return Error{fmt::format("{} defines its own malloc (a statically linked "
                                         "allocator); pmprof heap reads only glibc's ptmalloc",
                                         exe->path),
                             0};
        }
    }
    return {};
}

Result<std::string> read_glibc_version(pid_t pid, const MemoryMap& libc) {
    auto text = read_file(map_files_path(pid, libc));
    if (!text.ok()) text = read_file(fmt::format("/proc/{}/root{}", pid, libc.path));
    if (!text.ok()) return Error{"reading " + libc.path + ": " + text.error().message, 0};
    static constexpr std::string_view kMark = "GNU C Library";
    static constexpr std::string_view kVersion = "release version ";
    for (size_t at = text->find(kMark); at != std::string::npos; at = text->find(kMark, at + 1)) {
        size_t v = text->find(kVersion, at);
        if (v == std::string::npos || v - at > 200) continue;
        v += kVersion.size();
        size_t end = text->find_first_not_of("0123456789.", v);
        std::string version = text->substr(v, end == std::string::npos ? 0 : end - v);
        while (!version.empty() && version.back() == '.') version.pop_back();
        if (!version.empty()) return version;
    }
    return Error{"no glibc version string in " + libc.path, 0};
}

std::optional<MallocRoots> roots_from_symbols(pid_t pid, const std::vector<MemoryMap>& maps) {
    const MemoryMap* libc = find_libc(maps);
    if (!libc) return std::nullopt;
    auto elf = ElfFile::open_mapped(pid, *libc);
    if (!elf) return std::nullopt;
    const MemoryMap* low = lowest_mapping(maps, libc->path);
    uint64_t bias = low->start - elf->first_load_vaddr();
    std::string from = libc->path;
    std::unique_ptr<ElfFile> debug;
    if (!elf->has_section(SHT_SYMTAB)) {
        debug = open_debug(pid, elf->build_id());
        if (!debug) return std::nullopt;
        from = "debug file for build id " + elf->build_id();
    }
    const ElfFile& symbols = debug ? *debug : *elf;
    auto main_arena = symbols.find_symbol(SHT_SYMTAB, "main_arena", STT_OBJECT);
    auto mp = symbols.find_symbol(SHT_SYMTAB, "mp_", STT_OBJECT);
    if (!main_arena || !mp) return std::nullopt;
    MallocRoots roots;
    roots.main_arena = bias + main_arena->value;
    roots.mp = bias + mp->value;
    roots.found_by = "symbols (" + from + ")";
    return roots;
}

namespace {

/// libc's writable data and the anonymous bss right after it.
std::vector<MemoryMap> libc_data(const std::vector<MemoryMap>& maps, const std::string& libc) {
    std::vector<MemoryMap> out;
    for (size_t i = 0; i < maps.size(); ++i) {
        if (maps[i].path != libc || !maps[i].writable()) continue;
        out.push_back(maps[i]);
        if (i + 1 < maps.size() && maps[i + 1].path.empty() && maps[i + 1].start == maps[i].end &&
            maps[i + 1].writable())
            out.push_back(maps[i + 1]);
    }
    return out;
}

/// Addresses in `regions` holding the qword `value`.
std::vector<uint64_t> find_qword(MemoryReader& mem, const std::vector<MemoryMap>& regions,
                                 uint64_t value) {
    std::vector<uint64_t> hits;
    for (const MemoryMap& m : regions) {
        std::vector<uint64_t> words((m.end - m.start) / 8);
        auto r = mem.read(m.start, words.data(), words.size() * 8);
        if (!r.ok()) continue;
        for (size_t i = 0; i < *r / 8; ++i)
            if (words[i] == value) hits.push_back(m.start + 8 * i);
    }
    return hits;
}

/// The main heap's top chunk: the chunk that ends where [heap] ends.
Result<uint64_t> find_main_top(MemoryReader& mem, const MemoryMap& heap) {
    uint64_t p = (heap.start + 15) & ~uint64_t{15};
    for (uint64_t n = 0; n < (heap.end - heap.start) / 16 && p + 16 <= heap.end; ++n) {
        uint64_t field = 0;
        if (!mem.read_value(p + 8, &field)) break;
        uint64_t size = field & ~uint64_t{7};
        if (size < 16 || (size & 15) || size > heap.end - p) break;
        if (p + size + 4096 > heap.end) return p;  // brk is page-aligned by the kernel
        p += size;
    }
    return Error{fmt::format("no top chunk found walking [heap] at 0x{:x}", heap.start), 0};
}

bool arena_cycle_ok(MemoryReader& mem, uint64_t arena, const GlibcMallocLayout& l) {
    uint64_t a = arena;
    for (int n = 0; n < 4096; ++n) {
        if (!mem.read_value(a + l.arena_next, &a)) return false;
        if (a == arena) return true;
    }
    return false;
}

}  // namespace

Result<MallocRoots> roots_by_scan(MemoryReader& mem, const std::vector<MemoryMap>& maps,
                                  const GlibcMallocLayout& layout) {
    const MemoryMap* libc = find_libc(maps);
    const MemoryMap* heap = nullptr;
    for (const MemoryMap& m : maps)
        if (m.path == "[heap]") heap = &m;
    if (!libc || !heap)
        return Error{"without libc symbols main_arena is found through the [heap] mapping, and "
                     "there is none",
                     0};
    auto top = find_main_top(mem, *heap);
    if (!top.ok()) return top.error();
    std::vector<MemoryMap> data = libc_data(maps, libc->path);
    MallocRoots roots;
    int arenas = 0, mps = 0;
    for (uint64_t hit : find_qword(mem, data, *top)) {
        if (hit < layout.arena_top || !arena_cycle_ok(mem, hit - layout.arena_top, layout))
            continue;
        roots.main_arena = hit - layout.arena_top;
        ++arenas;
    }
    for (uint64_t hit : find_qword(mem, data, heap->start)) {
        uint64_t mp = hit - layout.mp_sbrk_base, count = 0;
        if (hit < layout.mp_sbrk_base || !mem.read_value(mp + layout.mp_tcache_count, &count) ||
            count > 65535)
            continue;
        roots.mp = mp;
        ++mps;
    }
    if (arenas != 1 || mps != 1)
        return Error{fmt::format("scan of libc data found {} main_arena and {} mp_ candidates "
                                 "(need exactly one each); install libc6-dbg for symbols",
                                 arenas, mps),
                     0};
    roots.found_by = "scan of libc data (no symbols)";
    return roots;
}

std::vector<VtableRange> load_vtables(pid_t pid, const std::vector<MemoryMap>& maps) {
    std::vector<VtableRange> out;
    std::map<std::string, bool> seen;
    for (const MemoryMap& m : maps) {
        if (!m.file_backed() || !m.executable() || seen[m.path]) continue;
        seen[m.path] = true;
        const MemoryMap* low = lowest_mapping(maps, m.path);
        auto elf = ElfFile::open_mapped(pid, *low);
        if (!elf) continue;
        uint64_t bias = low->start - elf->first_load_vaddr();
        auto add = [&](const ElfSymbol& s) {
            if (s.size == 0 || !s.defined() || !s.name.starts_with("_ZTV")) return;
            std::string type = demangle(std::string(s.name));
            if (type.starts_with("vtable for ")) type.erase(0, 11);
            out.push_back({bias + s.value, bias + s.value + s.size, std::move(type)});
        };
        elf->for_each_symbol(SHT_DYNSYM, add);
        if (elf->has_section(SHT_SYMTAB)) {
            elf->for_each_symbol(SHT_SYMTAB, add);
        } else if (auto debug = open_debug(pid, elf->build_id())) {
            debug->for_each_symbol(SHT_SYMTAB, add);
        }
    }
    std::sort(out.begin(), out.end(), [](const VtableRange& a, const VtableRange& b) {
        return a.start != b.start ? a.start < b.start : a.end > b.end;
    });
    out.erase(
        std::unique(out.begin(), out.end(),
                    [](const VtableRange& a, const VtableRange& b) { return a.start == b.start; }),
        out.end());
    return out;
}

}  // namespace pmprof::heap_detail
