// `pmprof doctor`: debug and unwind information of each mapped ELF module, from the files alone
// (ElfFile, include/pmprof/elf/elf_file.h): the symbol table, DWARF, the build id and the
// separate debug file it names, .eh_frame_hdr, and whether functions keep frame pointers (their
// first bytes sampled).
#include <elf.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include <fmt/format.h>

#include "pmprof/doctor/doctor.h"
#include "pmprof/elf/elf_file.h"
#include "pmprof/support/path.h"

namespace pmprof {
namespace {

struct ElfFacts {
    bool symtab = false, dynsym = false, dwarf = false, eh_frame_hdr = false, eh_frame = false,
         debug_frame = false;
    std::string build_id, debuglink;
    int fp_sampled = 0, fp_with = 0;  // functions whose first bytes were read; with a frame
};

/// push %rbp; mov %rsp,%rbp, after an optional endbr64: a function that keeps a frame pointer.
bool frame_pointer_prologue(const unsigned char* p, size_t n) {
    static const unsigned char kEndbr[] = {0xf3, 0x0f, 0x1e, 0xfa};
    if (n >= 4 && std::memcmp(p, kEndbr, 4) == 0) {
        p += 4;
        n -= 4;
    }
    return n >= 4 && p[0] == 0x55 && p[1] == 0x48 && p[2] == 0x89 && p[3] == 0xe5;
}

bool is_crt_function(std::string_view name) {
    static const char* const kCrt[] = {"_start",
                                       "_init",
                                       "_fini",
                                       "deregister_tm_clones",
                                       "register_tm_clones",
                                       "__do_global_dtors_aux",
                                       "frame_dummy",
                                       "__libc_csu_init",
                                       "__libc_csu_fini"};
    for (const char* c : kCrt)
        if (name == c) return true;
    return false;
}

/// Samples up to 64 functions of the symbol table of type `table` for their prologue.
void sample_prologues(const ElfFile& elf, uint32_t table, ElfFacts* f) {
    const size_t count = elf.symbol_count(table);
    const size_t step = count > 256 ? count / 256 : 1;
    for (size_t i = 0; i < count && f->fp_sampled < 64; i += step) {
        std::optional<ElfSymbol> sym = elf.symbol(table, i);
        if (!sym || sym->type != STT_FUNC || !sym->defined() || sym->shndx >= SHN_LORESERVE ||
            sym->size < 16)
            continue;
        // Cold parts of split functions and the C runtime's start-up code never set up a
        // frame, whatever the compiler flags: they would only dilute the count.
        if (sym->name.find(".cold") != std::string_view::npos || is_crt_function(sym->name))
            continue;
        std::span<const uint8_t> code = elf.section_bytes(sym->shndx, sym->value, 8);
        if (code.empty()) continue;
        ++f->fp_sampled;
        if (frame_pointer_prologue(code.data(), code.size())) ++f->fp_with;
    }
}

ElfFacts read_facts(const ElfFile& elf) {
    ElfFacts f;
    for (const ElfSection& sec : elf.sections()) {
        const std::string& n = sec.name;
        if (sec.type == SHT_SYMTAB) f.symtab = true;
        if (sec.type == SHT_DYNSYM) f.dynsym = true;
        if ((n == ".debug_info" || n == ".zdebug_info") && sec.has_bits()) f.dwarf = true;
        if (n == ".eh_frame_hdr") f.eh_frame_hdr = true;
        if (n == ".eh_frame") f.eh_frame = true;
        if (n == ".debug_frame" && sec.has_bits()) f.debug_frame = true;
    }
    f.debuglink = elf.debuglink();
    f.build_id = elf.build_id();
    if (f.symtab || f.dynsym) sample_prologues(elf, f.symtab ? SHT_SYMTAB : SHT_DYNSYM, &f);
    return f;
}

std::optional<ElfFacts> facts_of(std::unique_ptr<ElfFile> elf) {
    if (!elf) return std::nullopt;
    return read_facts(*elf);
}

/// The separate debug file pmprof would find (src/elf/image.cpp's order), or "".
std::string find_debug_file(pid_t pid, const MemoryMap& m, const ElfFacts& f) {
    std::vector<std::string> candidates;
    const std::string root = fmt::format("/proc/{}/root", pid);
    if (const std::string rel = build_id_debug_path(f.build_id); !rel.empty()) {
        candidates.push_back(rel);
        candidates.push_back(root + rel);
    }
    if (!f.debuglink.empty()) {
        const std::string dir = m.path.substr(0, m.path.rfind('/'));
        for (const std::string& c : {dir + "/" + f.debuglink, dir + "/.debug/" + f.debuglink,
                                     "/usr/lib/debug" + dir + "/" + f.debuglink}) {
            if (c == m.path) continue;
            candidates.push_back(c);
            candidates.push_back(root + c);
        }
    }
    for (const std::string& c : candidates)
        if (::access(c.c_str(), R_OK) == 0) return c;
    return "";
}

std::string debug_fix(const std::string& module) {
    std::string fix =
        "install the module's debug package (Debian: the -dbgsym or -dbg package of " + module +
        "; find it with `dpkg -S " + module + "`)";
    if (std::getenv("DEBUGINFOD_URLS") == nullptr)
        fix += ", or set DEBUGINFOD_URLS (e.g. https://debuginfod.debian.net) to fetch it";
    return fix;
}

}  // namespace

void inspect_module(pid_t pid, const MemoryMap& m, std::vector<Finding>* out) {
    const std::string name(base_name(m.path));
    std::optional<ElfFacts> f = facts_of(ElfFile::open_mapped(pid, m));
    if (!f) {
        out->push_back({"debug", name, Verdict::Degraded,
                        fmt::format("{}: cannot open the mapped file{}", m.path,
                                    m.deleted ? " (deleted, and map_files is not readable)" : ""),
                        "run pmprof as root (map_files needs CAP_SYS_ADMIN) or restore the file"});
        return;
    }
    const std::string debug = find_debug_file(pid, m, *f);
    std::optional<ElfFacts> d = debug.empty() ? std::nullopt : facts_of(ElfFile::open(debug));
    const bool symbols = f->symtab || (d && d->symtab);
    const bool dwarf = f->dwarf || (d && d->dwarf);
    std::string msg = fmt::format(
        "{}: {}, {}, build id {}, {}", m.path,
        symbols ? "symtab" : (f->dynsym ? "no symtab (dynamic symbols only)" : "no symbols"),
        dwarf ? "DWARF" : "no DWARF", f->build_id.empty() ? "none" : f->build_id,
        debug.empty() ? "no separate debug file" : "debug file " + debug);
    const bool debuginfod = std::getenv("DEBUGINFOD_URLS") != nullptr;
    if (!dwarf && debuginfod) msg += " (DEBUGINFOD_URLS is set: it may be fetched)";
    Verdict v = Verdict::Ok;
    std::string fix;
    if (!dwarf) {
        // No DWARF: function names still come from the symbol table, file:line do not.
        v = debuginfod ? Verdict::Info : Verdict::Degraded;
        msg += symbols ? ": function names, but no file:line or inlined frames"
                       : ": exported functions only, no file:line";
        if (!debuginfod || !symbols) fix = debug_fix(name);
    }
    out->push_back({"debug", name, v, msg, fix});

    // Unwinding: libdwfl uses .eh_frame (indexed by .eh_frame_hdr) or .debug_frame; without
    // them only frame pointers remain.
    const bool cfi = f->eh_frame_hdr || f->eh_frame || f->debug_frame || (d && d->debug_frame);
    std::string fp = f->fp_sampled == 0
                         ? "frame pointers not sampled (no function symbols)"
                         : fmt::format("frame pointers in {} of {} sampled functions", f->fp_with,
                                       f->fp_sampled);
    std::string cfi_text = f->eh_frame_hdr ? ".eh_frame_hdr"
                           : f->eh_frame   ? ".eh_frame without .eh_frame_hdr"
                           : cfi           ? ".debug_frame only"
                                           : "no unwind tables";
    const bool has_fp = f->fp_sampled > 0 && f->fp_with * 2 >= f->fp_sampled;
    Verdict uv = cfi || has_fp ? Verdict::Ok : Verdict::Degraded;
    out->push_back({"unwind", name, uv, fmt::format("{}: {}; {}", name, cfi_text, fp),
                    uv == Verdict::Ok ? ""
                                      : "rebuild with -fasynchronous-unwind-tables (the default) "
                                        "or -fno-omit-frame-pointer; stacks through it may be cut "
                                        "short"});
}

}  // namespace pmprof
