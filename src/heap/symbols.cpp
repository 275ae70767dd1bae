// ELF lookups for the heap walker (include/pmprof/heap/symbols.h), with libelf. Files are opened through
// /proc/PID/map_files/<lo>-<hi> first (deleted, replaced, other-namespace files), then
// /proc/PID/root/<path>; separate debug files by build id under /usr/lib/debug/.build-id.
#include "pmprof/heap/symbols.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>

#include "heap/cached_reader.h"
#include "pmprof/support/fd.h"
#include "pmprof/symbolize/symbolize.h"

namespace pmprof::heap_detail {
namespace {

std::string basename_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

/// An open ELF file; closes the Elf and the fd.
class ElfFile {
  public:
    static std::unique_ptr<ElfFile> open(const std::string& path) {
        elf_version(EV_CURRENT);
        auto fd = open_readonly(path);
        if (!fd.ok()) return nullptr;
        Elf* e = elf_begin(fd->get(), ELF_C_READ_MMAP, nullptr);
        if (!e || elf_kind(e) != ELF_K_ELF) {
            if (e) elf_end(e);
            return nullptr;
        }
        return std::unique_ptr<ElfFile>(new ElfFile(std::move(*fd), e));
    }
    ~ElfFile() { elf_end(elf_); }
    ElfFile(const ElfFile&) = delete;
    ElfFile& operator=(const ElfFile&) = delete;
    Elf* get() const { return elf_; }

    bool has_section(uint32_t type) const {
        for (Elf_Scn* s = elf_nextscn(elf_, nullptr); s; s = elf_nextscn(elf_, s)) {
            GElf_Shdr sh;
            if (gelf_getshdr(s, &sh) && sh.sh_type == type) return true;
        }
        return false;
    }

    /// Lowest PT_LOAD vaddr, page-aligned down: runtime address = bias + st_value with
    /// bias = (start of the lowest mapping) - this.
    uint64_t first_load_vaddr() const {
        size_t n = 0;
        uint64_t lo = UINT64_MAX;
        if (elf_getphdrnum(elf_, &n) != 0) return 0;
        for (size_t i = 0; i < n; ++i) {
            GElf_Phdr ph;
            if (gelf_getphdr(elf_, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD)
                lo = std::min<uint64_t>(lo, ph.p_vaddr & ~uint64_t{0xfff});
        }
        return lo == UINT64_MAX ? 0 : lo;
    }

    std::string build_id() const {
        for (Elf_Scn* s = elf_nextscn(elf_, nullptr); s; s = elf_nextscn(elf_, s)) {
            GElf_Shdr sh;
            if (!gelf_getshdr(s, &sh) || sh.sh_type != SHT_NOTE) continue;
            Elf_Data* d = elf_getdata(s, nullptr);
            size_t off = 0, name_off = 0, desc_off = 0;
            GElf_Nhdr nh;
            while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
                if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
                    std::memcmp(static_cast<char*>(d->d_buf) + name_off, "GNU", 4) != 0)
                    continue;
                std::string hex;
                auto* p = static_cast<unsigned char*>(d->d_buf) + desc_off;
                for (size_t i = 0; i < nh.n_descsz; ++i) hex += fmt::format("{:02x}", p[i]);
                return hex;
            }
        }
        return {};
    }

    /// Calls fn(name, value, size, type) for every symbol of sections of `type`.
    void for_each_symbol(uint32_t type,
                         const std::function<void(const char*, const GElf_Sym&)>& fn) const {
        for (Elf_Scn* s = elf_nextscn(elf_, nullptr); s; s = elf_nextscn(elf_, s)) {
            GElf_Shdr sh;
            if (!gelf_getshdr(s, &sh) || sh.sh_type != type || sh.sh_entsize == 0) continue;
            Elf_Data* d = elf_getdata(s, nullptr);
            if (!d) continue;
            size_t count = sh.sh_size / sh.sh_entsize;
            for (size_t i = 0; i < count; ++i) {
                GElf_Sym sym;
                if (!gelf_getsym(d, static_cast<int>(i), &sym)) continue;
                const char* name = elf_strptr(elf_, sh.sh_link, sym.st_name);
                if (name && *name) fn(name, sym);
            }
        }
    }

  private:
    ElfFile(UniqueFd fd, Elf* e) : fd_(std::move(fd)), elf_(e) {}
    UniqueFd fd_;
    Elf* elf_;
};

/// The lowest mapping of `path` (its load address).
const MemoryMap* lowest_mapping(const std::vector<MemoryMap>& maps, const std::string& path) {
    const MemoryMap* best = nullptr;
    for (const MemoryMap& m : maps)
        if (m.path == path && (!best || m.start < best->start)) best = &m;
    return best;
}

std::unique_ptr<ElfFile> open_mapped(pid_t pid, const MemoryMap& m) {
    auto e = ElfFile::open(fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end));
    if (!e) e = ElfFile::open(fmt::format("/proc/{}/root{}", pid, m.path));
    return e;
}

/// The separate debug file for `build_id`, in the target's root or ours.
std::unique_ptr<ElfFile> open_debug(pid_t pid, const std::string& build_id) {
    if (build_id.size() < 3) return nullptr;
    std::string rel =
        "/usr/lib/debug/.build-id/" + build_id.substr(0, 2) + "/" + build_id.substr(2) + ".debug";
    auto e = ElfFile::open(fmt::format("/proc/{}/root{}", pid, rel));
    if (!e) e = ElfFile::open(rel);
    return e;
}

bool is_libc_name(const std::string& base) {
    return base == "libc.so.6" || (base.starts_with("libc-2.") && base.ends_with(".so"));
}

}  // namespace

std::string demangle_name(const std::string& mangled, bool is_type) {
    return is_type ? demangle_type(mangled) : demangle(mangled);
}

const MemoryMap* find_libc(const std::vector<MemoryMap>& maps) {
    for (const MemoryMap& m : maps)
        if (m.file_backed() && m.file_offset == 0 && is_libc_name(basename_of(m.path))) return &m;
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
            if (basename_of(m.path).starts_with(needle))
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
    if (exe && !is_libc_name(basename_of(exe->path))) {
        if (auto e = open_mapped(pid, *exe)) {
            bool defines_malloc = false;
            e->for_each_symbol(SHT_DYNSYM, [&](const char* name, const GElf_Sym& s) {
                if (s.st_shndx != SHN_UNDEF && GELF_ST_TYPE(s.st_info) == STT_FUNC &&
                    std::strcmp(name, "malloc") == 0)
                    defines_malloc = true;
            });
            if (defines_malloc)
                return Error{fmt::format("{} defines its own malloc (a statically linked "
                                         "allocator); pmprof heap reads only glibc's ptmalloc",
                                         exe->path),
                             0};
        }
    }
    return {};
}

Result<std::string> read_glibc_version(pid_t pid, const MemoryMap& libc) {
    std::string path = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, libc.start, libc.end);
    auto text = read_file(path);
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
    auto elf = open_mapped(pid, *libc);
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
    MallocRoots roots;
    (debug ? *debug : *elf).for_each_symbol(SHT_SYMTAB, [&](const char* name, const GElf_Sym& s) {
        if (GELF_ST_TYPE(s.st_info) != STT_OBJECT) return;
        if (std::strcmp(name, "main_arena") == 0) roots.main_arena = bias + s.st_value;
        if (std::strcmp(name, "mp_") == 0) roots.mp = bias + s.st_value;
    });
    if (!roots.main_arena || !roots.mp) return std::nullopt;
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
        auto elf = open_mapped(pid, *low);
        if (!elf) continue;
        uint64_t bias = low->start - elf->first_load_vaddr();
        auto add = [&](const char* name, const GElf_Sym& s) {
            if (s.st_size == 0 || s.st_shndx == SHN_UNDEF || std::strncmp(name, "_ZTV", 4) != 0)
                return;
            std::string type = demangle_name(name, false);
            if (type.starts_with("vtable for ")) type.erase(0, 11);
            out.push_back({bias + s.st_value, bias + s.st_value + s.st_size, std::move(type)});
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
