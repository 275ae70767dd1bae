// ElfFile: the one reader of ELF files outside libdwfl. What pmprof needs from a file without a
// process image around it: its program headers (load bias), sections, symbol tables
// (.symtab/.dynsym), build id and .gnu_debuglink, for the image (src/elf/image.cpp), the debug
// cache, the heap walker's libc and vtable lookups and `pmprof doctor`. libelf stays inside
// src/elf/elf_file.cpp; callers see <elf.h>'s plain types and constants only.
#pragma once

#include <elf.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pmprof/support/fd.h"
#include "pmprof/support/types.h"

namespace pmprof {

struct ElfSection {
    size_t index = 0;
    std::string name;  // ".eh_frame"; "" when the section name table is missing
    uint32_t type = SHT_NULL;
    uint64_t flags = 0;
    uint64_t addr = 0;
    uint64_t size = 0;           // in the file (the compressed size when compressed)
    bool compressed = false;     // SHF_COMPRESSED with a readable compression header
    uint64_t inflated_size = 0;  // size once decompressed: `size` unless compressed
    bool has_bits() const { return type != SHT_NOBITS; }
};

struct ElfSymbol {
    std::string_view name;  // valid as long as the ElfFile
    uint64_t value = 0;     // st_value: the link-time address
    uint64_t size = 0;
    uint8_t type = STT_NOTYPE;  // STT_FUNC, STT_OBJECT, ...
    uint8_t bind = STB_LOCAL;   // STB_LOCAL, STB_GLOBAL, STB_WEAK
    uint16_t shndx = SHN_UNDEF;
    bool defined() const { return shndx != SHN_UNDEF; }
};

class ElfFile {
  public:
    /// The ELF file at `path`, or nullptr when it cannot be opened or is not ELF.
    static std::unique_ptr<ElfFile> open(const std::string& path);
    /// The ELF file on `fd`, which the ElfFile keeps open; nullptr when it is not ELF.
    static std::unique_ptr<ElfFile> adopt(UniqueFd fd);
    /// The ELF file on `fd`, which the caller keeps open for as long as the ElfFile lives;
    /// nullptr when it is not ELF.
    static std::unique_ptr<ElfFile> borrow(int fd);
    /// The file mapping `m` of process `pid` maps: /proc/PID/map_files/<lo>-<hi> (the very file,
    /// also when deleted or replaced; needs CAP_SYS_ADMIN), else /proc/PID/root/<path> unless
    /// the mapped file was deleted (the path names another file then). nullptr when neither opens.
    static std::unique_ptr<ElfFile> open_mapped(pid_t pid, const MemoryMap& m);
    ~ElfFile();
    ElfFile(const ElfFile&) = delete;
    ElfFile& operator=(const ElfFile&) = delete;

    bool is_64bit() const;
    /// e_type: ET_EXEC, ET_DYN, ...
    uint16_t type() const;
    /// The program headers; empty when there are none or they cannot be read.
    std::vector<Elf64_Phdr> program_headers() const;
    /// The lowest PT_LOAD p_vaddr, rounded down to a 4 KiB page (0 without PT_LOAD): with the
    /// lowest mapping's start, the bias of a library mapped without holes.
    uint64_t first_load_vaddr() const;

    std::vector<ElfSection> sections() const;
    bool has_section(uint32_t type) const;
    /// The `n` bytes of section `index`'s contents at link-time address `addr`, as stored in
    /// the file; empty unless it is SHT_PROGBITS and holds all of them.
    std::span<const uint8_t> section_bytes(size_t index, uint64_t addr, size_t n) const;

    /// The symbols of every section of type `table` (SHT_SYMTAB or SHT_DYNSYM), named ones
    /// only, in table order.
    void for_each_symbol(uint32_t table, const std::function<void(const ElfSymbol&)>& fn) const;
    /// How many entries the (first) table of type `table` has, and its entry `i` (nullopt when
    /// unreadable or unnamed): for sampling a table without reading all of it.
    size_t symbol_count(uint32_t table) const;
    std::optional<ElfSymbol> symbol(uint32_t table, size_t i) const;
    /// The first defined symbol named `name` of type `sym_type` in tables of type `table`.
    std::optional<ElfSymbol> find_symbol(uint32_t table, std::string_view name,
                                         uint8_t sym_type) const;

    /// NT_GNU_BUILD_ID in hex, from the note sections, else the PT_NOTE segments; "" if none.
    std::string build_id() const;
    /// The file name .gnu_debuglink names, "" when there is none.
    std::string debuglink() const;

    struct Impl;

  private:
    explicit ElfFile(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// The NT_GNU_BUILD_ID descriptor in a block of ELF notes (a note section or PT_NOTE segment,
/// from a file or a process's memory), hex; "" when absent.
std::string build_id_from_notes(std::span<const uint8_t> notes);

/// Hex string of `len` bytes.
std::string hex_bytes(const unsigned char* bytes, size_t len);

/// Where a separate debug file is found by build id, relative to a root:
/// "/usr/lib/debug/.build-id/ab/cdef....debug"; "" for an id too short to split.
std::string build_id_debug_path(const std::string& build_id);

}  // namespace pmprof
