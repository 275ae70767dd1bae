// The fast paths of symbolization against the libdw calls they replace, on this test binary
// (C++ with inlining) and on libc (C, with libc6-dbg; found through gnu_get_libc_version, which
// sanitizers do not intercept): SymbolTable::addrinfo against dwfl_module_addrinfo,
// scopes_at_pc against dwarf_getscopes + dwarf_getscopes_die, and die_ancestors against
// dwarf_getscopes_die. Any difference would change printed frames.
#include <catch2/catch.hpp>

#include <dwarf.h>
#include <gnu/libc-version.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "../../support/harness.h"
#include "pmprof/elf/image.h"
#include "pmprof/elf/image_impl.h"
#include "pmprof/os/procfs.h"
#include "symbolize/dwarf_scopes.h"
#include "symbolize/symbol_table.h"

// A label without .size inside a sized function, and a sized function after it: libdwfl's
// rules for size-0 symbols (only when no sized symbol holds the address, and not below the end
// of one) are then exercised on both sides.
asm(".pushsection .text\n"
    ".globl pmprof_test_table_fn\n"
    ".type pmprof_test_table_fn, @function\n"
    "pmprof_test_table_fn:\n"
    "  nop\n"
    ".globl pmprof_test_table_label\n"
    "pmprof_test_table_label:\n"
    "  nop\n"
    "  ret\n"
    ".size pmprof_test_table_fn, 3\n"
    ".globl pmprof_test_table_tail\n"
    "pmprof_test_table_tail:\n"
    "  .skip 16, 0xcc\n"
    ".popsection\n");
extern "C" void pmprof_test_table_fn();

namespace {

/// About `count` addresses spread over the executable mappings of the module holding `pc`.
std::vector<uint64_t> spread_over_module(const pmprof::ProcessImage& image, Dwfl_Module* mod,
                                         size_t count) {
    Dwarf_Addr low = 0, high = 0;
    dwfl_module_info(mod, nullptr, &low, &high, nullptr, nullptr, nullptr, nullptr);
    std::vector<const pmprof::MemoryMap*> text;
    uint64_t total = 0;
    for (const pmprof::MemoryMap& m : image.maps())
        if (m.executable() && m.start >= low && m.end <= high) {
            text.push_back(&m);
            total += m.end - m.start;
        }
    std::vector<uint64_t> out;
    const uint64_t step = std::max<uint64_t>(1, total / count) | 1;  // odd: varied alignments
    for (const pmprof::MemoryMap* m : text)
        for (uint64_t pc = m->start; pc < m->end; pc += step) out.push_back(pc);
    return out;
}

void check_same_symbols(Dwfl_Module* mod, const std::vector<uint64_t>& pcs) {
    pmprof::SymbolTable table(mod);
    for (uint64_t pc : pcs) {
        GElf_Off want_off = 0, got_off = 0;
        GElf_Sym want_sym{}, got_sym{};
        const char* want =
            dwfl_module_addrinfo(mod, pc, &want_off, &want_sym, nullptr, nullptr, nullptr);
        const char* got = table.addrinfo(pc, &got_off, &got_sym);
        INFO("pc " << std::hex << pc);
        REQUIRE((want == nullptr) == (got == nullptr));
        if (want == nullptr) continue;
        REQUIRE(std::string(want) == got);
        REQUIRE(want_off == got_off);
        REQUIRE(want_sym.st_value == got_sym.st_value);
        REQUIRE(want_sym.st_size == got_sym.st_size);
        REQUIRE(want_sym.st_info == got_sym.st_info);
    }
}

std::vector<Dwarf_Off> offsets(const Dwarf_Die* dies, int n) {
    std::vector<Dwarf_Off> out;
    for (int i = 0; i < n; ++i) out.push_back(dwarf_dieoffset(const_cast<Dwarf_Die*>(&dies[i])));
    return out;
}

std::vector<Dwarf_Off> offsets(const std::vector<Dwarf_Die>& dies) {
    return offsets(dies.data(), static_cast<int>(dies.size()));
}

/// The scope chain src/symbolize/symbolize.cpp used to build: dwarf_getscopes, then
/// dwarf_getscopes_die of the innermost scope when an inlined one is among them.
std::vector<Dwarf_Off> libdw_chain(Dwarf_Die* cudie, Dwarf_Addr pc) {
    Dwarf_Die* scopes = nullptr;
    int n = dwarf_getscopes(cudie, pc, &scopes);
    if (n <= 0) return {};
    bool inlined = false;
    for (int i = 0; i < n; ++i)
        inlined = inlined || dwarf_tag(&scopes[i]) == DW_TAG_inlined_subroutine;
    std::vector<Dwarf_Off> out;
    if (inlined) {
        Dwarf_Die* chain = nullptr;
        int m = dwarf_getscopes_die(&scopes[0], &chain);
        if (m > 0) out = offsets(chain, m);
        free(chain);
    } else {
        out = offsets(scopes, n);
    }
    free(scopes);
    return out;
}

/// Every pc's chain, and the ancestors of each inlined scope's abstract origin.
size_t check_same_scopes(Dwfl_Module* mod, const std::vector<uint64_t>& pcs) {
    size_t inlined_seen = 0;
    for (uint64_t pc : pcs) {
        Dwarf_Addr bias = 0;
        Dwarf_Die* cudie = dwfl_module_addrdie(mod, pc, &bias);
        if (cudie == nullptr) continue;
        INFO("pc " << std::hex << pc);
        std::vector<Dwarf_Off> want = libdw_chain(cudie, pc - bias);
        std::vector<Dwarf_Die> mine =
            pmprof::scopes_at_pc(cudie, pmprof::ranged_children(cudie), pc - bias);
        if (want.empty()) {
            // dwarf_getscopes found nothing, or gave up on the innermost inlined scope's
            // abstract origin, which src/symbolize/symbolize.cpp detects with die_ancestors.
            bool gave_up = false;
            for (Dwarf_Die& scope : mine) {
                if (dwarf_tag(&scope) != DW_TAG_inlined_subroutine) continue;
                Dwarf_Attribute attr;
                Dwarf_Die origin;
                gave_up = dwarf_formref_die(dwarf_attr(&scope, DW_AT_abstract_origin, &attr),
                                            &origin) == nullptr ||
                          pmprof::die_ancestors(&origin).empty();
                break;
            }
            REQUIRE((mine.empty() || gave_up));
            continue;
        }
        REQUIRE(offsets(mine) == want);
        for (Dwarf_Die& scope : mine) {
            if (dwarf_tag(&scope) != DW_TAG_inlined_subroutine) continue;
            ++inlined_seen;
            Dwarf_Attribute attr;
            Dwarf_Die origin;
            REQUIRE(dwarf_formref_die(dwarf_attr(&scope, DW_AT_abstract_origin, &attr), &origin) !=
                    nullptr);
            Dwarf_Die* chain = nullptr;
            int n = dwarf_getscopes_die(&origin, &chain);
            std::vector<Dwarf_Off> origin_want =
                n > 0 ? offsets(chain, n) : std::vector<Dwarf_Off>{};
            free(chain);
            REQUIRE(offsets(pmprof::die_ancestors(&origin)) == origin_want);
        }
    }
    return inlined_seen;
}

Dwfl_Module* module_of(pmprof::ProcessImage& image, const void* fn) {
    Dwfl_Module* mod = dwfl_addrmodule(image.impl().dwfl, reinterpret_cast<uint64_t>(fn));
    REQUIRE(mod != nullptr);
    return mod;
}

}  // namespace

TEST_CASE("SymbolTable answers as dwfl_module_addrinfo", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    SECTION("this binary, with sized and size-0 symbols side by side") {
        Dwfl_Module* mod = module_of(*image, reinterpret_cast<const void*>(&pmprof_test_table_fn));
        std::vector<uint64_t> pcs = spread_over_module(*image, mod, 1500);
        const uint64_t fn = reinterpret_cast<uint64_t>(&pmprof_test_table_fn);
        for (uint64_t pc = fn - 2; pc < fn + 24; ++pc) pcs.push_back(pc);
        check_same_symbols(mod, pcs);
        GElf_Off off = 0;
        GElf_Sym sym{};
        pmprof::SymbolTable table(mod);
        CHECK(std::string(table.addrinfo(fn + 1, &off, &sym)) == "pmprof_test_table_fn");
        CHECK(std::string(table.addrinfo(fn + 3, &off, &sym)) == "pmprof_test_table_tail");
        CHECK(sym.st_size == 0);
    }
    SECTION("libc, whose debug file lists locals, weak aliases and versioned names") {
        Dwfl_Module* mod =
            module_of(*image, reinterpret_cast<const void*>(&::gnu_get_libc_version));
        check_same_symbols(mod, spread_over_module(*image, mod, 1500));
    }
}

TEST_CASE("scope chains match dwarf_getscopes and dwarf_getscopes_die", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    Dwfl_Module* self = module_of(*image, reinterpret_cast<const void*>(&pmprof_test_table_fn));
    // Inlined frames are everywhere in this -O2 C++ binary: the walks must agree on them.
    CHECK(check_same_scopes(self, spread_over_module(*image, self, 3000)) > 100);
    Dwfl_Module* libc = module_of(*image, reinterpret_cast<const void*>(&::gnu_get_libc_version));
    check_same_scopes(libc, spread_over_module(*image, libc, 1500));
}
