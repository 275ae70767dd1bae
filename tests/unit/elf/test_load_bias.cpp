// load_bias from literal program headers: the layouts of GNU ld, gold, lld and mold, PIE and
// non-PIE, as readelf -lW printed them for the same program built with each linker (x86_64,
// 4 KiB pages), and a process's /proc/PID/maps lines for them.
#include <catch2/catch.hpp>
#include <elf.h>

#include <vector>

#include "pmprof/elf/image_impl.h"

using pmprof::MemoryMap;

namespace {

constexpr uint64_t kPage = 0x1000;

Elf64_Phdr load(uint64_t offset, uint64_t vaddr, uint64_t filesz, uint32_t flags) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_offset = offset;
    ph.p_vaddr = vaddr;
    ph.p_paddr = vaddr;
    ph.p_filesz = filesz;
    ph.p_memsz = filesz;
    ph.p_flags = flags;
    ph.p_align = kPage;
    return ph;
}

MemoryMap map(uint64_t start, uint64_t end, const char* perms, uint64_t offset) {
    MemoryMap m;
    m.start = start;
    m.end = end;
    m.perms = perms;
    m.file_offset = offset;
    m.dev = "fd:01";
    m.inode = 4242;
    m.path = "/usr/bin/target";
    return m;
}

/// The mappings the kernel makes for `phdrs` loaded at `bias` (one per PT_LOAD, page-rounded).
std::vector<MemoryMap> maps_for(const std::vector<Elf64_Phdr>& phdrs, uint64_t bias) {
    std::vector<MemoryMap> out;
    for (const Elf64_Phdr& ph : phdrs) {
        const uint64_t start = (bias + ph.p_vaddr) & ~(kPage - 1);
        const uint64_t end = (bias + ph.p_vaddr + ph.p_memsz + kPage - 1) & ~(kPage - 1);
        const char* perms = (ph.p_flags & PF_X) ? "r-xp" : (ph.p_flags & PF_W) ? "rw-p" : "r--p";
        out.push_back(map(start, end, perms, ph.p_offset & ~(kPage - 1)));
    }
    return out;
}

const MemoryMap& executable(const std::vector<MemoryMap>& maps) {
    for (const MemoryMap& m : maps)
        if (m.executable()) return m;
    FAIL("no executable mapping");
    return maps.front();
}

}  // namespace

TEST_CASE("load_bias: every linker layout", "[unit][image]") {
    const uint64_t bias = 0x55d2f92a4000;
    struct Layout {
        const char* linker;
        std::vector<Elf64_Phdr> phdrs;
    };
    const std::vector<Layout> layouts = {
        // GNU ld -z separate-code (Debian's default): every segment starts on its own page.
        {"GNU ld",
         {load(0, 0, 0xc18, PF_R), load(0x1000, 0x1000, 0x865, PF_R | PF_X),
          load(0x2000, 0x2000, 0x4a5, PF_R), load(0x2d50, 0x3d50, 0x320, PF_R | PF_W)}},
        // gold: text and rodata in one R+X segment from offset 0.
        {"gold", {load(0, 0, 0x1a30, PF_R | PF_X), load(0x1dd0, 0x2dd0, 0x290, PF_R | PF_W)}},
        // lld: the R+X segment starts in the page where the R segment ends (offset 0x1020 in
        // page 0x1000, while the R segment covers [0, 0x1014)).
        {"lld",
         {load(0, 0, 0x1014, PF_R), load(0x1020, 0x2020, 0x820, PF_R | PF_X),
          load(0x1840, 0x3840, 0x280, PF_R | PF_W), load(0x1ac0, 0x4ac0, 0x98, PF_R | PF_W)}},
        // mold: the R+X segment starts inside the first page (offset 0xf10), which the kernel
        // maps twice: read-only for the R segment and r-x for the code.
        {"mold",
         {load(0, 0, 0xf06, PF_R), load(0xf10, 0x1f10, 0x86b, PF_R | PF_X),
          load(0x1780, 0x3780, 0x2a0, PF_R | PF_W), load(0x1a20, 0x4a20, 0x88, PF_R | PF_W)}},
    };
    for (const Layout& layout : layouts) {
        INFO(layout.linker);
        const std::vector<MemoryMap> maps = maps_for(layout.phdrs, bias);
        const MemoryMap& text = executable(maps);
        CHECK(pmprof::load_bias(ET_DYN, layout.phdrs, text, maps, kPage) == bias);
        // Without the other mappings to vote, the permissions alone still pick the segment.
        CHECK(pmprof::load_bias(ET_DYN, layout.phdrs, text, {}, kPage) == bias);
        // Non-PIE: addresses are the link-time ones.
        CHECK(pmprof::load_bias(ET_EXEC, layout.phdrs, text, maps, kPage) == 0);
    }
}

TEST_CASE("load_bias: a mapping that starts inside its segment", "[unit][image]") {
    // A large text segment of which only the second part is mapped where we look (split by an
    // mprotect, as a JIT or a hot-patcher does): the offset-to-address distance is kept.
    const std::vector<Elf64_Phdr> phdrs = {load(0, 0, 0x800, PF_R),
                                           load(0x1000, 0x1000, 0x10000, PF_R | PF_X)};
    const uint64_t bias = 0x7f0000000000;
    const MemoryMap tail = map(bias + 0x5000, bias + 0x11000, "r-xp", 0x5000);
    CHECK(pmprof::load_bias(ET_DYN, phdrs, tail, {}, kPage) == bias);
    // No PT_LOAD holds the offset: no bias rather than a guess.
    const MemoryMap beyond = map(bias + 0x20000, bias + 0x21000, "r-xp", 0x20000);
    CHECK_FALSE(pmprof::load_bias(ET_DYN, phdrs, beyond, {}, kPage).has_value());
}
