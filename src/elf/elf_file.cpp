// ElfFile (include/pmprof/elf/elf_file.h) with libelf: the file is mapped (ELF_C_READ_MMAP) and
// read in place, so sections and symbol names cost nothing until asked for.
#include "pmprof/elf/elf_file.h"

#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "pmprof/os/procfs.h"

namespace pmprof {

namespace {

// A PT_NOTE segment larger than this is not a build-id note block.
constexpr size_t kMaxNoteBytes = 64 * 1024;

}  // namespace

struct ElfFile::Impl {
    UniqueFd fd;  // adopted or opened (invalid when borrowed); outlives `elf` (declared first)
    Elf* elf = nullptr;

    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl() {
        if (elf != nullptr) elf_end(elf);
    }

    /// The first section of type `type`, with its header.
    Elf_Scn* first_section(uint32_t type, GElf_Shdr* sh) const {
        for (Elf_Scn* s = elf_nextscn(elf, nullptr); s != nullptr; s = elf_nextscn(elf, s))
            if (gelf_getshdr(s, sh) != nullptr && sh->sh_type == type) return s;
        return nullptr;
    }

    std::optional<ElfSymbol> symbol_at(const GElf_Shdr& sh, Elf_Data* d, size_t i) const {
        GElf_Sym sym;
        if (gelf_getsym(d, static_cast<int>(i), &sym) == nullptr) return std::nullopt;
        const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
        if (name == nullptr || *name == '\0') return std::nullopt;
        ElfSymbol out;
        out.name = name;
        out.value = sym.st_value;
        out.size = sym.st_size;
        out.type = static_cast<uint8_t>(GELF_ST_TYPE(sym.st_info));
        out.bind = static_cast<uint8_t>(GELF_ST_BIND(sym.st_info));
        out.shndx = sym.st_shndx;
        return out;
    }
};

ElfFile::ElfFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ElfFile::~ElfFile() = default;

std::unique_ptr<ElfFile> ElfFile::borrow(int fd) {
    elf_version(EV_CURRENT);
    auto impl = std::make_unique<Impl>();
    impl->elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    if (impl->elf == nullptr || elf_kind(impl->elf) != ELF_K_ELF) return nullptr;
    return std::unique_ptr<ElfFile>(new ElfFile(std::move(impl)));
}

std::unique_ptr<ElfFile> ElfFile::adopt(UniqueFd fd) {
    auto file = borrow(fd.get());
    if (file) file->impl_->fd = std::move(fd);
    return file;
}

std::unique_ptr<ElfFile> ElfFile::open(const std::string& path) {
    auto fd = open_readonly(path);
    if (!fd.ok()) return nullptr;
    return adopt(std::move(*fd));
}

std::unique_ptr<ElfFile> ElfFile::open_mapped(pid_t pid, const MemoryMap& m) {
    auto file = open(map_files_path(pid, m));
    if (!file && !m.deleted) file = open(fmt::format("/proc/{}/root{}", pid, m.path));
    return file;
}

bool ElfFile::is_64bit() const { return gelf_getclass(impl_->elf) == ELFCLASS64; }

uint16_t ElfFile::type() const {
    GElf_Ehdr eh;
    return gelf_getehdr(impl_->elf, &eh) != nullptr ? eh.e_type : ET_NONE;
}

std::vector<Elf64_Phdr> ElfFile::program_headers() const {
    std::vector<Elf64_Phdr> out;
    size_t n = 0;
    if (elf_getphdrnum(impl_->elf, &n) != 0) return out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        GElf_Phdr ph;
        if (gelf_getphdr(impl_->elf, static_cast<int>(i), &ph) == nullptr) return {};
        out.push_back(ph);
    }
    return out;
}

uint64_t ElfFile::first_load_vaddr() const {
    uint64_t lo = UINT64_MAX;
    for (const Elf64_Phdr& ph : program_headers())
        if (ph.p_type == PT_LOAD) lo = std::min<uint64_t>(lo, ph.p_vaddr & ~uint64_t{0xfff});
    return lo == UINT64_MAX ? 0 : lo;
}

std::vector<ElfSection> ElfFile::sections() const {
    std::vector<ElfSection> out;
    size_t shstrndx = 0;
    const bool names = elf_getshdrstrndx(impl_->elf, &shstrndx) == 0;
    for (Elf_Scn* s = elf_nextscn(impl_->elf, nullptr); s != nullptr;
         s = elf_nextscn(impl_->elf, s)) {
        GElf_Shdr sh;
        if (gelf_getshdr(s, &sh) == nullptr) continue;
        ElfSection& sec = out.emplace_back();
        sec.index = elf_ndxscn(s);
        if (const char* name = names ? elf_strptr(impl_->elf, shstrndx, sh.sh_name) : nullptr)
            sec.name = name;
        sec.type = sh.sh_type;
        sec.flags = sh.sh_flags;
        sec.addr = sh.sh_addr;
        sec.size = sh.sh_size;
        sec.inflated_size = sh.sh_size;
        GElf_Chdr chdr;
        if ((sh.sh_flags & SHF_COMPRESSED) != 0 && gelf_getchdr(s, &chdr) != nullptr) {
            sec.compressed = true;
            sec.inflated_size = chdr.ch_size;
        }
    }
    return out;
}

bool ElfFile::has_section(uint32_t type) const {
    GElf_Shdr sh;
    return impl_->first_section(type, &sh) != nullptr;
}

std::span<const uint8_t> ElfFile::section_bytes(size_t index, uint64_t addr, size_t n) const {
    Elf_Scn* s = elf_getscn(impl_->elf, index);
    GElf_Shdr sh;
    if (s == nullptr || gelf_getshdr(s, &sh) == nullptr || sh.sh_type != SHT_PROGBITS) return {};
    Elf_Data* d = elf_getdata(s, nullptr);
    if (d == nullptr || d->d_buf == nullptr || addr < sh.sh_addr) return {};
    const uint64_t off = addr - sh.sh_addr;
    if (off > d->d_size || n > d->d_size - off) return {};
    return {static_cast<const uint8_t*>(d->d_buf) + off, n};
}

void ElfFile::for_each_symbol(uint32_t table,
                              const std::function<void(const ElfSymbol&)>& fn) const {
    for (Elf_Scn* s = elf_nextscn(impl_->elf, nullptr); s != nullptr;
         s = elf_nextscn(impl_->elf, s)) {
        GElf_Shdr sh;
        if (gelf_getshdr(s, &sh) == nullptr || sh.sh_type != table || sh.sh_entsize == 0) continue;
        Elf_Data* d = elf_getdata(s, nullptr);
        if (d == nullptr) continue;
        const size_t count = sh.sh_size / sh.sh_entsize;
        for (size_t i = 0; i < count; ++i)
            if (auto sym = impl_->symbol_at(sh, d, i)) fn(*sym);
    }
}

size_t ElfFile::symbol_count(uint32_t table) const {
    GElf_Shdr sh;
    if (impl_->first_section(table, &sh) == nullptr || sh.sh_entsize == 0) return 0;
    return sh.sh_size / sh.sh_entsize;
}

std::optional<ElfSymbol> ElfFile::symbol(uint32_t table, size_t i) const {
    GElf_Shdr sh;
    Elf_Scn* s = impl_->first_section(table, &sh);
    if (s == nullptr || sh.sh_entsize == 0 || i >= sh.sh_size / sh.sh_entsize) return std::nullopt;
    Elf_Data* d = elf_getdata(s, nullptr);
    if (d == nullptr) return std::nullopt;
    return impl_->symbol_at(sh, d, i);
}

std::optional<ElfSymbol> ElfFile::find_symbol(uint32_t table, std::string_view name,
                                              uint8_t sym_type) const {
    std::optional<ElfSymbol> found;
    for_each_symbol(table, [&](const ElfSymbol& s) {
        if (!found && s.defined() && s.type == sym_type && s.name == name) found = s;
    });
    return found;
}

std::string ElfFile::build_id() const {
    for (Elf_Scn* s = elf_nextscn(impl_->elf, nullptr); s != nullptr;
         s = elf_nextscn(impl_->elf, s)) {
        GElf_Shdr sh;
        if (gelf_getshdr(s, &sh) == nullptr || sh.sh_type != SHT_NOTE) continue;
        Elf_Data* d = elf_getdata(s, nullptr);
        if (d == nullptr || d->d_buf == nullptr) continue;
        std::string id = build_id_from_notes({static_cast<const uint8_t*>(d->d_buf), d->d_size});
        if (!id.empty()) return id;
    }
    for (const Elf64_Phdr& ph : program_headers()) {
        if (ph.p_type != PT_NOTE || ph.p_filesz == 0 || ph.p_filesz > kMaxNoteBytes) continue;
        Elf_Data* d = elf_getdata_rawchunk(impl_->elf, static_cast<int64_t>(ph.p_offset),
                                           ph.p_filesz, ELF_T_BYTE);
        if (d == nullptr || d->d_buf == nullptr) continue;
        std::string id = build_id_from_notes({static_cast<const uint8_t*>(d->d_buf), d->d_size});
        if (!id.empty()) return id;
    }
    return {};
}

std::string ElfFile::debuglink() const {
    size_t shstrndx = 0;
    if (elf_getshdrstrndx(impl_->elf, &shstrndx) != 0) return {};
    for (Elf_Scn* s = elf_nextscn(impl_->elf, nullptr); s != nullptr;
         s = elf_nextscn(impl_->elf, s)) {
        GElf_Shdr sh;
        if (gelf_getshdr(s, &sh) == nullptr) continue;
        const char* name = elf_strptr(impl_->elf, shstrndx, sh.sh_name);
        if (name == nullptr || std::strcmp(name, ".gnu_debuglink") != 0) continue;
        Elf_Data* d = elf_getdata(s, nullptr);
        if (d == nullptr || d->d_buf == nullptr) return {};
        const auto* text = static_cast<const char*>(d->d_buf);
        return std::string(text, strnlen(text, d->d_size));
    }
    return {};
}

std::string build_id_from_notes(std::span<const uint8_t> notes) {
    size_t pos = 0;
    auto align4 = [](size_t v) { return (v + 3) & ~size_t{3}; };
    while (pos + sizeof(Elf64_Nhdr) <= notes.size()) {
        Elf64_Nhdr nh{};
        std::memcpy(&nh, notes.data() + pos, sizeof nh);
        const size_t name_at = pos + sizeof nh;
        const size_t desc_at = name_at + align4(nh.n_namesz);
        if (desc_at < name_at || desc_at + nh.n_descsz > notes.size()) break;
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
            std::memcmp(notes.data() + name_at, "GNU", 4) == 0)
            return hex_bytes(notes.data() + desc_at, nh.n_descsz);
        pos = desc_at + align4(nh.n_descsz);
    }
    return {};
}

std::string hex_bytes(const unsigned char* bytes, size_t len) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string s;
    s.reserve(len * 2);
    for (size_t i = 0; i < len; ++i) {
        s.push_back(kDigits[bytes[i] >> 4]);
        s.push_back(kDigits[bytes[i] & 0xf]);
    }
    return s;
}

std::string build_id_debug_path(const std::string& build_id) {
    if (build_id.size() < 3) return {};
    return "/usr/lib/debug/.build-id/" + build_id.substr(0, 2) + "/" + build_id.substr(2) +
           ".debug";
}

}  // namespace pmprof
