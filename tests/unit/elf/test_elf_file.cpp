// ElfFile read against the running test binary itself: what the file says (symbols, program
// headers, code bytes, build id) must match what this process has in memory.
#include <catch2/catch.hpp>
#include <elf.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "pmprof/elf/elf_file.h"
#include "pmprof/os/procfs.h"

extern "C" __attribute__((noinline, used)) int pmprof_elf_file_probe(int x) { return x * 7 + 3; }

namespace {

/// The lowest mapping of this executable (its load address).
const pmprof::MemoryMap* lowest_exe_mapping(const std::vector<pmprof::MemoryMap>& maps,
                                            std::string* path) {
    char buf[4096] = {};
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return nullptr;
    *path = std::string(buf, static_cast<size_t>(n));
    const pmprof::MemoryMap* low = nullptr;
    for (const pmprof::MemoryMap& m : maps)
        if (m.path == *path && (low == nullptr || m.start < low->start)) low = &m;
    return low;
}

}  // namespace

TEST_CASE("ElfFile: symbols, bias, code and build id of this binary", "[unit][elf]") {
    auto maps = pmprof::read_maps(::getpid());
    REQUIRE(maps.ok());
    std::string exe;
    const pmprof::MemoryMap* low = lowest_exe_mapping(*maps, &exe);
    REQUIRE(low != nullptr);
    auto elf = pmprof::ElfFile::open_mapped(::getpid(), *low);
    REQUIRE(elf != nullptr);
    CHECK(elf->is_64bit());
    CHECK((elf->type() == ET_DYN || elf->type() == ET_EXEC));

    auto probe = elf->find_symbol(SHT_SYMTAB, "pmprof_elf_file_probe", STT_FUNC);
    REQUIRE(probe.has_value());
    CHECK(probe->defined());
    CHECK(probe->size > 0);
    CHECK_FALSE(elf->find_symbol(SHT_SYMTAB, "pmprof_elf_file_probe", STT_OBJECT).has_value());
    CHECK_FALSE(elf->find_symbol(SHT_SYMTAB, "pmprof_no_such_symbol", STT_FUNC).has_value());
    const uint64_t bias = elf->type() == ET_EXEC ? 0 : low->start - elf->first_load_vaddr();
    const auto runtime = reinterpret_cast<uintptr_t>(&pmprof_elf_file_probe);
    CHECK(bias + probe->value == runtime);

    // The same symbol found by index, as doctor samples a table.
    bool by_index = false;
    for (size_t i = 0; i < elf->symbol_count(SHT_SYMTAB) && !by_index; ++i)
        if (auto s = elf->symbol(SHT_SYMTAB, i)) by_index = s->name == "pmprof_elf_file_probe";
    CHECK(by_index);

    // The function's first bytes in the file are the ones this process runs.
    std::span<const uint8_t> code = elf->section_bytes(probe->shndx, probe->value, 8);
    REQUIRE(code.size() == 8);
    CHECK(std::memcmp(code.data(), reinterpret_cast<const void*>(runtime), 8) == 0);
    CHECK(elf->section_bytes(probe->shndx, probe->value, size_t{1} << 40).empty());

    // The file's build id is the one in the PT_NOTE this process has mapped.
    const std::string id = elf->build_id();
    REQUIRE(id.size() >= 16);
    std::string in_memory;
    for (const Elf64_Phdr& ph : elf->program_headers())
        if (ph.p_type == PT_NOTE && in_memory.empty())
            in_memory = pmprof::build_id_from_notes(
                {reinterpret_cast<const uint8_t*>(bias + ph.p_vaddr), ph.p_filesz});
    CHECK(id == in_memory);
    CHECK(pmprof::build_id_debug_path(id) ==
          "/usr/lib/debug/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug");

    bool text = false;
    for (const pmprof::ElfSection& s : elf->sections())
        text = text || (s.name == ".text" && s.type == SHT_PROGBITS && s.has_bits());
    CHECK(text);
    CHECK(elf->has_section(SHT_SYMTAB));
}

TEST_CASE("ElfFile: what is not an ELF file", "[unit][elf]") {
    CHECK(pmprof::ElfFile::open("/proc/self/status") == nullptr);
    CHECK(pmprof::ElfFile::open("/nonexistent/pmprof") == nullptr);
    CHECK(pmprof::build_id_debug_path("ab").empty());
    const uint8_t truncated[] = {4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, 'G', 'N', 'U', 0};
    CHECK(pmprof::build_id_from_notes(truncated).empty());
    const uint8_t note[] = {4, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 'G', 'N', 'U', 0, 0xab, 0xcd, 0, 0};
    CHECK(pmprof::build_id_from_notes(note) == "abcd");
}
