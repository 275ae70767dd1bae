// ProcessImage: reports the ELF files mapped into a process to libdwfl, from one maps snapshot.
//
// Every module is reported with dwfl_report_elf and an fd we opened, so libdwfl never looks a
// file up by path itself. The fd comes from /proc/PID/map_files/<lo>-<hi> (the very file that is
// mapped: deleted, replaced and other-mount-namespace binaries work, docs/facts.md), else from
// /proc/PID/root/<path> or <path>, whose build id is then checked against the one in the
// process's memory. The vDSO is copied out of the process into a memfd. All files are opened
// here, eagerly, so modules keep working after the target exits.
#include "pmprof/elf/image.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <tuple>

#include "pmprof/elf/debug_cache.h"
#include "pmprof/elf/elf_file.h"
#include "pmprof/elf/image_impl.h"
#include "pmprof/os/procfs.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/log.h"

namespace pmprof {

namespace {

constexpr size_t kMaxNoteBytes = 64 * 1024;

uint64_t page_size() { return static_cast<uint64_t>(sysconf(_SC_PAGESIZE)); }

/// The ELF header fields and program headers src/elf/image.cpp needs (64-bit files only), and
/// the file's build id when asked for.
struct ElfLayout {
    uint16_t type = 0;
    std::vector<Elf64_Phdr> phdrs;
    std::string build_id;
};

std::optional<ElfLayout> read_elf_layout(int fd, bool with_build_id) {
    auto elf = ElfFile::borrow(fd);
    if (!elf || !elf->is_64bit()) return std::nullopt;
    ElfLayout layout;
    layout.type = elf->type();
    layout.phdrs = elf->program_headers();
    if (layout.phdrs.empty() || layout.phdrs.size() > 4096) return std::nullopt;
    if (with_build_id) layout.build_id = elf->build_id();
    return layout;
}

}  // namespace

std::optional<uint64_t> load_bias(uint16_t e_type, const std::vector<Elf64_Phdr>& phdrs,
                                  const MemoryMap& m, const std::vector<MemoryMap>& file_maps,
                                  uint64_t page_size) {
    if (e_type == ET_EXEC) return 0;
    // The kernel maps PT_LOAD segment S from file offset page_down(S.p_offset) to address
    // page_down(bias + S.p_vaddr); a mapping that starts inside S (split by mprotect, as RELRO
    // does) keeps the same distance between offset and address. So if `m` came from S, file
    // offset O is at bias + S.p_vaddr + (O - S.p_offset), whichever page of S it starts at.
    // lld and mold pack segments without page alignment (the read-only segment ends inside the
    // page where the executable one starts), so one page of the file can belong to two
    // segments, and "the first segment whose pages hold the offset" is a page off. Each
    // segment that could have produced `m` gives a candidate; the right one is the segment the
    // other mappings of the same file agree with, then the one whose permissions `m` has.
    struct Candidate {
        uint64_t bias;
        int score;
    };
    auto candidates = [&](const MemoryMap& map) {
        std::vector<Candidate> out;
        for (const Elf64_Phdr& ph : phdrs) {
            if (ph.p_type != PT_LOAD) continue;
            const uint64_t seg_page = ph.p_offset & ~(page_size - 1);
            const uint64_t seg_end = ph.p_offset + std::max<uint64_t>(ph.p_filesz, 1);
            if (map.file_offset < seg_page || map.file_offset >= seg_end) continue;
            int score = 0;
            if (((ph.p_flags & PF_X) != 0) == map.executable()) score += 2;
            if (((ph.p_flags & PF_W) != 0) == map.writable()) score += 1;
            out.push_back({map.start - map.file_offset + ph.p_offset - ph.p_vaddr, score});
        }
        return out;
    };
    std::vector<Candidate> mine = candidates(m);
    if (mine.empty()) return std::nullopt;
    if (mine.size() == 1) return mine[0].bias;
    for (const MemoryMap& other : file_maps) {
        if (other.start == m.start || other.inode != m.inode || other.dev != m.dev) continue;
        for (const Candidate& theirs : candidates(other))
            for (Candidate& c : mine)
                if (c.bias == theirs.bias) c.score += 8;  // one vote per agreeing mapping
    }
    const Candidate* best = mine.data();
    for (const Candidate& c : mine)
        if (c.score > best->score) best = &c;
    return best->bias;
}

namespace {

/// The build id in the process's memory ("" when unreadable: PT_NOTE is usually in the first,
/// read-only mapping, but nothing guarantees it is mapped).
std::string build_id_in_memory(MemoryReader& memory, const ElfLayout& elf, uint64_t bias) {
    for (const Elf64_Phdr& ph : elf.phdrs) {
        if (ph.p_type != PT_NOTE || ph.p_filesz == 0 || ph.p_filesz > kMaxNoteBytes) continue;
        std::vector<uint8_t> notes(ph.p_filesz);
        auto n = memory.read(bias + ph.p_vaddr, notes.data(), notes.size());
        if (!n.ok() || *n != notes.size()) continue;
        if (std::string id = build_id_from_notes(notes); !id.empty()) return id;
    }
    return {};
}

/// An fd for the file `m` maps, with its layout, or nullopt (logged) when none can be trusted.
struct OpenedFile {
    UniqueFd fd;
    ElfLayout elf;
    uint64_t bias = 0;
};

std::optional<OpenedFile> open_mapped_file(pid_t pid, const MemoryMap& m,
                                           const std::vector<MemoryMap>& file_maps,
                                           MemoryReader& memory) {
    // map_files needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE); the path fallbacks are checked.
    std::vector<std::pair<std::string, bool>> candidates = {
        {map_files_path(pid, m), false},
        {fmt::format("/proc/{}/root{}", pid, m.path), true},
        {m.path, true},
    };
    for (auto& [path, check_id] : candidates) {
        if (check_id && m.deleted) break;  // the path names another file now
        auto fd = open_readonly(path);
        if (!fd.ok()) continue;
        auto elf = read_elf_layout(fd->get(), check_id);
        if (!elf) {
            log_debug("{}: not a 64-bit ELF file", path);
            return std::nullopt;
        }
        auto bias = load_bias(elf->type, elf->phdrs, m, file_maps, page_size());
        if (!bias) {
            log_debug("{}: no PT_LOAD covers file offset {:#x}", path, m.file_offset);
            return std::nullopt;
        }
        if (check_id) {
            std::string want = build_id_in_memory(memory, *elf, *bias);
            const std::string& have = elf->build_id;
            if (!want.empty() && want != have) {
                log_warn("{}: build id {} differs from the mapped file's {}; no symbols for it",
                         path, have.empty() ? "(none)" : have, want);
                continue;
            }
        }
        return OpenedFile{std::move(*fd), std::move(*elf), *bias};
    }
    log_debug("{}: cannot open the mapped file", m.path);
    return std::nullopt;
}

/// Copies the vDSO out of the process into a memfd libdwfl can read like a file.
std::optional<OpenedFile> open_vdso(const MemoryMap& m, MemoryReader& memory) {
    std::vector<uint8_t> bytes(m.end - m.start);
    auto n = memory.read(m.start, bytes.data(), bytes.size());
    if (!n.ok() || *n != bytes.size()) {
        log_debug("[vdso]: cannot read it from the process");
        return std::nullopt;
    }
    UniqueFd fd(memfd_create("pmprof-vdso", MFD_CLOEXEC));
    if (!fd.valid()) return std::nullopt;
    if (::write(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
        return std::nullopt;
    auto elf = read_elf_layout(fd.get(), false);
    if (!elf) return std::nullopt;
    MemoryMap whole = m;
    whole.file_offset = 0;
    auto bias = load_bias(elf->type, elf->phdrs, whole, {}, page_size());
    if (!bias) return std::nullopt;
    return OpenedFile{std::move(fd), std::move(*elf), *bias};
}

/// find_elf is never needed (every module comes with its fd); answering "not found" keeps
/// libdwfl from opening files by path behind our back.
int no_find_elf(Dwfl_Module*, void**, const char*, Dwarf_Addr, char**, Elf**) { return -1; }

/// find_debuginfo with the debug cache (include/pmprof/elf/debug_cache.h) in front of
/// dwfl_standard_find_debuginfo: a cached uncompressed copy for the module's build id is used as
/// is; otherwise the standard lookup runs and, if its file is compressed, a copy is added for the
/// next run. The cache must come first: the standard callback already hands libdwfl an Elf for the
/// file it found
/// ("backdoors" mod->debug.elf, libdwfl/dwfl_build_id_find_debuginfo.c), so replacing its fd
/// afterwards would change nothing. No exception may leave this C callback.
int find_debuginfo_cached(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base,
                          const char* file_name, const char* debuglink_file,
                          GElf_Word debuglink_crc, char** debuginfo_file_name) {
    std::string cache_dir;
    try {
        cache_dir = debug_cache_dir();
        const unsigned char* bits = nullptr;
        GElf_Addr vaddr = 0;
        // The main ELF is loaded before libdwfl looks for debug info, so the build id is known.
        int len = dwfl_module_build_id(mod, &bits, &vaddr);
        std::string cached_path;
        UniqueFd cached;
        if (len > 0)
            cached = open_cached_debug(hex_bytes(bits, static_cast<size_t>(len)), cache_dir,
                                       &cached_path);
        if (cached.valid()) {
            // libdwfl owns (frees) the name and the fd we return (libdwfl.h, find_debuginfo).
            if (char* name = strdup(cached_path.c_str()); name != nullptr) {
                *debuginfo_file_name = name;
                return cached.release();
            }
        }
    } catch (const std::exception& e) {
        log_debug("debug cache: {}", e.what());
        cache_dir.clear();
    }
    int fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                          debuglink_crc, debuginfo_file_name);
    if (fd < 0 || *debuginfo_file_name == nullptr || cache_dir.empty()) return fd;
    try {
        add_cached_debug(fd, *debuginfo_file_name, cache_dir);
    } catch (const std::exception& e) {
        log_debug("debug cache: {}", e.what());
    }
    return fd;
}

/// ":.debug:/usr/lib/debug", plus the target's own /usr/lib/debug when its root differs.
void setup_debuginfo_path(ProcessImage::Impl& impl) {
    impl.debuginfo_path = ":.debug:/usr/lib/debug";
    struct stat self_root {
    }, target_root{};
    std::string root = fmt::format("/proc/{}/root", impl.pid);
    if (::stat("/", &self_root) == 0 && ::stat(root.c_str(), &target_root) == 0 &&
        (self_root.st_dev != target_root.st_dev || self_root.st_ino != target_root.st_ino)) {
        int fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            impl.root_fd.reset(fd);
            impl.debuginfo_path += fmt::format(":/proc/self/fd/{}/usr/lib/debug", fd);
        }
    }
    impl.debuginfo_path_ptr = impl.debuginfo_path.data();
}

/// Reports one module; false (logged) when libdwfl refuses it (e.g. overlapping ranges).
bool report(ProcessImage::Impl& impl, const std::string& name, OpenedFile file) {
    std::optional<FileIdentity> identity = identity_of_fd(file.fd.get());
    int fd = file.fd.release();
    // With add_p_vaddr, BASE is the bias for ET_DYN and ignored for ET_EXEC (libdwfl.h). On
    // success libdwfl owns fd; on failure it does not.
    Dwfl_Module* mod = dwfl_report_elf(impl.dwfl, name.c_str(), name.c_str(), fd, file.bias, true);
    if (mod == nullptr) {
        log_debug("dwfl_report_elf {}: {}", name, dwfl_errmsg(-1));
        ::close(fd);
        return false;
    }
    if (identity) impl.main_files[mod] = *identity;
    return true;
}

void report_modules(ProcessImage::Impl& impl) {
    ProcessMemory memory(impl.pid);
    // One module per (file, bias): a file mapped twice at different places is two modules.
    std::set<std::tuple<std::string, uint64_t, uint64_t>> seen;  // dev, inode, bias
    for (const MemoryMap& m : impl.maps) {
        if (!m.executable()) continue;
        std::optional<OpenedFile> file;
        std::string name = m.path;
        if (m.path == "[vdso]") {
            file = open_vdso(m, memory);
        } else if (m.file_backed()) {
            file = open_mapped_file(impl.pid, m, impl.maps, memory);
        }
        if (!file) continue;
        if (!seen.emplace(m.dev, m.inode, file->bias).second) continue;
        report(impl, name, std::move(*file));
    }
}

}  // namespace

ProcessImage::ProcessImage(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessImage::~ProcessImage() = default;

Result<std::unique_ptr<ProcessImage>> ProcessImage::open(pid_t pid, std::vector<MemoryMap> maps) {
    auto impl = std::make_unique<Impl>();
    impl->pid = pid;
    std::sort(maps.begin(), maps.end(),
              [](const MemoryMap& a, const MemoryMap& b) { return a.start < b.start; });
    impl->maps = std::move(maps);
    setup_debuginfo_path(*impl);
    impl->callbacks.find_elf = no_find_elf;
    // dwfl_standard_find_debuginfo: .build-id and debuglink lookups along debuginfo_path, then
    // debuginfod (libdw 0.188 asks it only when DEBUGINFOD_URLS is set).
    // find_debuginfo_cached swaps in an uncompressed copy from the debug cache when one applies.
    impl->callbacks.find_debuginfo = find_debuginfo_cached;
    impl->callbacks.debuginfo_path = &impl->debuginfo_path_ptr;
    impl->dwfl = dwfl_begin(&impl->callbacks);
    if (impl->dwfl == nullptr) return Error{fmt::format("dwfl_begin: {}", dwfl_errmsg(-1))};
    dwfl_report_begin(impl->dwfl);
    report_modules(*impl);
    if (dwfl_report_end(impl->dwfl, nullptr, nullptr) != 0)
        return Error{fmt::format("dwfl_report_end pid {}: {}", pid, dwfl_errmsg(-1))};
    return std::unique_ptr<ProcessImage>(new ProcessImage(std::move(impl)));
}

pid_t ProcessImage::pid() const { return impl_->pid; }
const std::vector<MemoryMap>& ProcessImage::maps() const { return impl_->maps; }
ProcessImage::Impl& ProcessImage::impl() { return *impl_; }

const MemoryMap* ProcessImage::find_map(uint64_t pc) const { return find_mapping(impl_->maps, pc); }

}  // namespace pmprof
