// `pmprof doctor`: debug and unwind information of each mapped ELF module, from the files alone
// (libelf): the symbol table, DWARF, the build id and the separate debug file it names,
// .eh_frame_hdr, and whether functions keep frame pointers (their first bytes sampled).
#include <gelf.h>
#include <libelf.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "pmprof/doctor/doctor.h"
#include "pmprof/support/fd.h"

namespace pmprof {
namespace {

struct ElfFacts {
    bool symtab = false, dynsym = false, dwarf = false, eh_frame_hdr = false, eh_frame = false,
         debug_frame = false;
    std::string build_id, debuglink;
    int fp_sampled = 0, fp_with = 0;  // functions whose first bytes were read; with a frame
};

std::string basename_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

/// push %rbp; mov %rsp,%rbp, after an optional endbr64: a function that keeps a frame pointer.
bool frame_pointer_prologue(const unsigned char* p, size_t n) {
    static const unsigned char kEndbr[] = {0xf3, 0x0f, 0x1e, 0xfa};
    if (n >= 4 && std::memcmp(p, kEndbr, 4) == 0) {
        p += 4;
        n -= 4;
    }
    return n >= 4 && p[0] == 0x55 && p[1] == 0x48 && p[2] == 0x89 && p[3] == 0xe5;
}

bool is_crt_function(const char* name) {
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
        if (std::strcmp(name, c) == 0) return true;
    return false;
}

/// Samples up to 64 functions of the symbol table `symtab` for their prologue.
void sample_prologues(Elf* elf, Elf_Scn* symtab, ElfFacts* f) {
    GElf_Shdr sh;
    if (!gelf_getshdr(symtab, &sh) || sh.sh_entsize == 0) return;
    Elf_Data* d = elf_getdata(symtab, nullptr);
    if (!d) return;
    const size_t count = sh.sh_size / sh.sh_entsize;
    const size_t step = count > 256 ? count / 256 : 1;
    for (size_t i = 0; i < count && f->fp_sampled < 64; i += step) {
        GElf_Sym sym;
        if (!gelf_getsym(d, static_cast<int>(i), &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
            sym.st_shndx == SHN_UNDEF || sym.st_shndx >= SHN_LORESERVE || sym.st_size < 16)
            continue;
        // Cold parts of split functions and the C runtime's start-up code never set up a
        // frame, whatever the compiler flags: they would only dilute the count.
        const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
        if (!name || std::strstr(name, ".cold") || is_crt_function(name)) continue;
        Elf_Scn* text = elf_getscn(elf, sym.st_shndx);
        GElf_Shdr tsh;
        if (!text || !gelf_getshdr(text, &tsh) || tsh.sh_type != SHT_PROGBITS) continue;
        Elf_Data* td = elf_getdata(text, nullptr);
        if (!td || !td->d_buf || sym.st_value < tsh.sh_addr) continue;
        const uint64_t off = sym.st_value - tsh.sh_addr;
        if (off + 8 > td->d_size) continue;
        ++f->fp_sampled;
        if (frame_pointer_prologue(static_cast<const unsigned char*>(td->d_buf) + off, 8))
            ++f->fp_with;
    }
}

std::optional<ElfFacts> read_facts(int fd) {
    elf_version(EV_CURRENT);
    Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    if (!elf) return std::nullopt;
    if (elf_kind(elf) != ELF_K_ELF) {
        elf_end(elf);
        return std::nullopt;
    }
    ElfFacts f;
    size_t shstrndx = 0;
    elf_getshdrstrndx(elf, &shstrndx);
    Elf_Scn *symtab = nullptr, *dynsym = nullptr;
    for (Elf_Scn* s = elf_nextscn(elf, nullptr); s; s = elf_nextscn(elf, s)) {
        GElf_Shdr sh;
        if (!gelf_getshdr(s, &sh)) continue;
        const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
        const std::string n = name ? name : "";
        if (sh.sh_type == SHT_SYMTAB) f.symtab = true, symtab = s;
        if (sh.sh_type == SHT_DYNSYM) f.dynsym = true, dynsym = s;
        if ((n == ".debug_info" || n == ".zdebug_info") && sh.sh_type != SHT_NOBITS) f.dwarf = true;
        if (n == ".eh_frame_hdr") f.eh_frame_hdr = true;
        if (n == ".eh_frame") f.eh_frame = true;
        if (n == ".debug_frame" && sh.sh_type != SHT_NOBITS) f.debug_frame = true;
        Elf_Data* d = nullptr;
        if (n == ".gnu_debuglink" && (d = elf_getdata(s, nullptr)) && d->d_buf)
            f.debuglink = std::string(static_cast<const char*>(d->d_buf),
                                      strnlen(static_cast<const char*>(d->d_buf), d->d_size));
        if (sh.sh_type == SHT_NOTE && f.build_id.empty() && (d = elf_getdata(s, nullptr))) {
            size_t off = 0, name_off = 0, desc_off = 0;
            GElf_Nhdr nh;
            while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
                if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4) continue;
                auto* p = static_cast<unsigned char*>(d->d_buf) + desc_off;
                for (size_t i = 0; i < nh.n_descsz; ++i) f.build_id += fmt::format("{:02x}", p[i]);
                break;
            }
        }
    }
    if (symtab || dynsym) sample_prologues(elf, symtab ? symtab : dynsym, &f);
    elf_end(elf);
    return f;
}

std::optional<ElfFacts> facts_of(const std::string& path) {
    auto fd = open_readonly(path);
    if (!fd.ok()) return std::nullopt;
    return read_facts(fd->get());
}

/// The separate debug file pmprof would find (src/elf/image.cpp's order), or "".
std::string find_debug_file(pid_t pid, const MemoryMap& m, const ElfFacts& f) {
    std::vector<std::string> candidates;
    const std::string root = fmt::format("/proc/{}/root", pid);
    if (f.build_id.size() > 2) {
        const std::string rel = "/usr/lib/debug/.build-id/" + f.build_id.substr(0, 2) + "/" +
                                f.build_id.substr(2) + ".debug";
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
    const std::string name = basename_of(m.path);
    std::optional<ElfFacts> f =
        facts_of(fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end));
    if (!f && !m.deleted) f = facts_of(fmt::format("/proc/{}/root{}", pid, m.path));
    if (!f) {
        out->push_back({"debug", name, Verdict::Degraded,
                        fmt::format("{}: cannot open the mapped file{}", m.path,
                                    m.deleted ? " (deleted, and map_files is not readable)" : ""),
                        "run pmprof as root (map_files needs CAP_SYS_ADMIN) or restore the file"});
        return;
    }
    const std::string debug = find_debug_file(pid, m, *f);
    std::optional<ElfFacts> d = debug.empty() ? std::nullopt : facts_of(debug);
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
