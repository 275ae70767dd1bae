// The allocator's entry points in the target's mapped ELF files (src/sites/probes.h). A uprobe
// is placed by file offset: symbol value - p_vaddr + p_offset of the PT_LOAD holding it. Every
// mapped object that exports malloc gets probes (the one the dynamic linker bound is the one
// that fires; the others cost nothing); operator new/delete only in objects that export malloc
// too (libstdc++'s call malloc, which is probed already).
#include "sites/probes.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <map>
#include <set>

#include "pmprof/elf/elf_file.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/path.h"

namespace pmprof {
namespace {

struct ElfSymbols {
    bool ok = false, dynamic = false, has_symtab = false;
    std::map<std::string, uint64_t> exported;  // defined FUNC in .dynsym -> file offset
    std::set<std::string> local_defined;       // defined FUNC in .symtab
};

uint64_t to_file_offset(const std::vector<Elf64_Phdr>& phdrs, uint64_t vaddr) {
    for (const Elf64_Phdr& ph : phdrs)
        if (ph.p_type == PT_LOAD && vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz)
            return vaddr - ph.p_vaddr + ph.p_offset;
    return 0;
}

ElfSymbols read_symbols(const std::string& path, const std::set<std::string>& wanted) {
    ElfSymbols out;
    auto elf = ElfFile::open(path);
    if (!elf) return out;
    out.ok = true;
    const std::vector<Elf64_Phdr> phdrs = elf->program_headers();
    for (const Elf64_Phdr& ph : phdrs)
        if (ph.p_type == PT_DYNAMIC) out.dynamic = true;
    out.has_symtab = elf->has_section(SHT_SYMTAB);
    auto wanted_func = [&](const ElfSymbol& s) {
        return s.defined() && s.type == STT_FUNC && s.value != 0 &&
               wanted.contains(std::string(s.name));
    };
    elf->for_each_symbol(SHT_SYMTAB, [&](const ElfSymbol& s) {
        if (wanted_func(s)) out.local_defined.insert(std::string(s.name));
    });
    elf->for_each_symbol(SHT_DYNSYM, [&](const ElfSymbol& s) {
        if (!wanted_func(s) || s.bind == STB_LOCAL) return;
        const uint64_t off = to_file_offset(phdrs, s.value);
        if (off != 0) out.exported[std::string(s.name)] = off;
    });
    return out;
}

std::string read_link(const std::string& path) {
    char buf[4096];
    const ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string allocator_name(const std::string& path) {
    const std::string_view b = base_name(path);
    for (const char* known : {"jemalloc", "tcmalloc", "mimalloc"})
        if (b.find(known) != std::string_view::npos) return known;
    if (b.starts_with("libc.so") || b.starts_with("libc-")) return "glibc";
    return std::string(b);
}

}  // namespace

const std::vector<AllocFunction>& alloc_functions() {
    static const std::vector<AllocFunction> fns = {
        {"malloc", AllocKind::Alloc, 0, false},
        {"calloc", AllocKind::Calloc, 0, false},
        {"realloc", AllocKind::Realloc, 1, false},
        {"free", AllocKind::Free, 0, false},
        {"posix_memalign", AllocKind::PosixMemalign, 2, false},
        {"aligned_alloc", AllocKind::Alloc, 1, false},
        {"memalign", AllocKind::Alloc, 1, false},
        {"valloc", AllocKind::Alloc, 0, false},
        {"pvalloc", AllocKind::Alloc, 0, false},
        {"cfree", AllocKind::Free, 0, false},
        // jemalloc's own API
        {"mallocx", AllocKind::Alloc, 0, false},
        {"rallocx", AllocKind::Realloc, 1, false},
        {"dallocx", AllocKind::Free, 0, false},
        {"sdallocx", AllocKind::Free, 0, false},
        // mimalloc's, where programs call it directly
        {"mi_malloc", AllocKind::Alloc, 0, false},
        {"mi_calloc", AllocKind::Calloc, 0, false},
        {"mi_realloc", AllocKind::Realloc, 1, false},
        {"mi_free", AllocKind::Free, 0, false},
        // C++ operators (new: size in rdi; delete: pointer in rdi)
        {"_Znwm", AllocKind::Alloc, 0, true},
        {"_Znam", AllocKind::Alloc, 0, true},
        {"_ZnwmRKSt9nothrow_t", AllocKind::Alloc, 0, true},
        {"_ZnamRKSt9nothrow_t", AllocKind::Alloc, 0, true},
        {"_ZnwmSt11align_val_t", AllocKind::Alloc, 0, true},
        {"_ZnamSt11align_val_t", AllocKind::Alloc, 0, true},
        {"_ZnwmSt11align_val_tRKSt9nothrow_t", AllocKind::Alloc, 0, true},
        {"_ZnamSt11align_val_tRKSt9nothrow_t", AllocKind::Alloc, 0, true},
        {"_ZdlPv", AllocKind::Free, 0, true},
        {"_ZdaPv", AllocKind::Free, 0, true},
        {"_ZdlPvm", AllocKind::Free, 0, true},
        {"_ZdaPvm", AllocKind::Free, 0, true},
        {"_ZdlPvRKSt9nothrow_t", AllocKind::Free, 0, true},
        {"_ZdaPvRKSt9nothrow_t", AllocKind::Free, 0, true},
        {"_ZdlPvSt11align_val_t", AllocKind::Free, 0, true},
        {"_ZdaPvSt11align_val_t", AllocKind::Free, 0, true},
        {"_ZdlPvmSt11align_val_t", AllocKind::Free, 0, true},
        {"_ZdaPvmSt11align_val_t", AllocKind::Free, 0, true},
    };
    return fns;
}

Result<AllocatorPlan> plan_alloc_probes(pid_t pid, const std::vector<MemoryMap>& maps) {
    std::set<std::string> wanted;
    for (const AllocFunction& f : alloc_functions()) wanted.insert(f.symbol);
    std::string exe = read_link(fmt::format("/proc/{}/exe", pid));
    const std::string deleted = " (deleted)";
    if (exe.size() > deleted.size() && exe.ends_with(deleted))
        exe.resize(exe.size() - deleted.size());

    AllocatorPlan plan;
    std::set<std::string> done;
    bool exe_static = false, exe_stripped = false, exe_private_malloc = false;
    for (const MemoryMap& m : maps) {
        if (!m.file_backed() || done.contains(m.path)) continue;
        done.insert(m.path);
        // Read through map_files: deleted, replaced or other-namespace files work too.
        const std::string via = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
        ElfSymbols syms = read_symbols(via, wanted);
        if (!syms.ok) continue;
        if (m.path == exe) {
            exe_static = !syms.dynamic;
            exe_stripped = !syms.has_symtab;
            exe_private_malloc =
                syms.local_defined.contains("malloc") && !syms.exported.contains("malloc");
        }
        if (!syms.exported.contains("malloc")) continue;
        const std::string probe_path =
            m.deleted ? via : fmt::format("/proc/{}/root{}", pid, m.path);
        if (plan.allocator.empty() || plan.allocator == "glibc") {
            plan.allocator = allocator_name(m.path);
            plan.glibc = plan.allocator == "glibc";
        }
        for (const AllocFunction& f : alloc_functions()) {
            auto it = syms.exported.find(f.symbol);
            if (it == syms.exported.end()) continue;
            plan.probes.push_back({&f, m.path, probe_path, it->second});
        }
    }
    if (exe_static && exe_stripped)
        return Error{fmt::format("{} is a stripped static binary: its allocator has no symbols "
                                 "to probe",
                                 exe)};
    if (exe_static)
        return Error{fmt::format("{} is statically linked: its allocator is not exported, so "
                                 "there is no entry point to probe",
                                 exe)};
    if (exe_private_malloc)
        return Error{fmt::format("{} has its own malloc linked in statically and not exported: "
                                 "probing the shared library's would miss its allocations",
                                 exe)};
    if (plan.probes.empty())
        return Error{fmt::format("pid {} maps no object that exports malloc", pid)};
    return plan;
}

}  // namespace pmprof
