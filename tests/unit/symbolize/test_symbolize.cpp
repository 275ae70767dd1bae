// Symbolization of pcs in this very test binary and in libc: function, file:line, inline chain,
// build id, no symbol for an address past a symbol's end; demangling.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstdlib>
#include <string>

#include "../../support/harness.h"
#include "pmprof/elf/image.h"
#include "pmprof/os/procfs.h"
#include "pmprof/symbolize/symbolize.h"

// A function whose symbol (.size 1) is shorter than its code: the bytes after it belong to no
// symbol, so a pc there must get no frames, not "pmprof_test_sized_fn+0x10".
asm(".pushsection .text\n"
    ".globl pmprof_test_sized_fn\n"
    ".type pmprof_test_sized_fn, @function\n"
    "pmprof_test_sized_fn:\n"
    "  ret\n"
    "  .skip 64, 0xcc\n"
    ".size pmprof_test_sized_fn, 1\n"
    ".popsection\n");
extern "C" void pmprof_test_sized_fn();

namespace symtest {

constexpr int kNoinlineLine = __LINE__ + 1;
[[gnu::noinline]] int noinline_function(int x) {
    asm volatile("" : "+r"(x));
    return x * 3 + 1;
}

constexpr int kInnerLine = __LINE__ + 3;
[[gnu::always_inline]] inline uint64_t inlined_pc() {
    uint64_t pc;
    asm volatile("1: lea 1b(%%rip), %0" : "=r"(pc));  // the pc of this very instruction
    return pc;
}

constexpr int kCallLine = __LINE__ + 2;
[[gnu::noinline]] uint64_t outer_function() {
    uint64_t pc = inlined_pc();
    asm volatile("" : "+r"(pc));
    return pc;
}

}  // namespace symtest

namespace {

using pmprof::RawFrame;
using pmprof::SymbolizedPc;

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

uint64_t address_of(const void* p) { return reinterpret_cast<uint64_t>(p); }

}  // namespace

TEST_CASE("a noinline function gives its demangled name, file and line", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    auto sym = pmprof::make_symbolizer(*image, {});
    const uint64_t pc = address_of(reinterpret_cast<const void*>(&symtest::noinline_function));
    const SymbolizedPc& s = sym->symbolize(RawFrame{pc, true});
    REQUIRE(s.frames.size() == 1);
    const auto& f = s.frames[0];
    CHECK(f.function == "symtest::noinline_function(int)");
    CHECK(f.mangled == "_ZN7symtest17noinline_functionEi");
    CHECK(ends_with(f.file, "tests/unit/symbolize/test_symbolize.cpp"));
    CHECK(f.line >= symtest::kNoinlineLine);
    CHECK(f.line <= symtest::kNoinlineLine + 3);
    CHECK(f.start_line == symtest::kNoinlineLine);
    CHECK_FALSE(f.inlined);
    CHECK(s.pc == pc);
    CHECK(ends_with(s.module, "pmprof-tests"));
    CHECK(s.build_id.size() == 40);
    // Cached: the same object comes back.
    CHECK(&sym->symbolize(RawFrame{pc, true}) == &s);
}

TEST_CASE("module_offset is the ELF address addr2line understands", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    auto sym = pmprof::make_symbolizer(*image, {});
    const uint64_t pc = address_of(reinterpret_cast<const void*>(&symtest::noinline_function));
    const SymbolizedPc& s = sym->symbolize(RawFrame{pc, true});
    auto r = pmprof::test::run(
        {"addr2line", "-f", "-e", s.module, fmt::format("{:#x}", s.module_offset)});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.rfind("_ZN7symtest17noinline_functionEi\n", 0) == 0);
    CHECK(pmprof::module_offset_label(s) == fmt::format("pmprof-tests+{:#x}", s.module_offset));
}

TEST_CASE("an inlined call site shows the whole inline chain", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    const uint64_t pc = symtest::outer_function();
    auto sym = pmprof::make_symbolizer(*image, {});
    const SymbolizedPc& s = sym->symbolize(RawFrame{pc, true});
    REQUIRE(s.frames.size() == 2);
    CHECK(s.frames[0].function == "symtest::inlined_pc()");
    CHECK(s.frames[0].inlined);
    CHECK(ends_with(s.frames[0].file, "test_symbolize.cpp"));
    CHECK(s.frames[0].line == symtest::kInnerLine);
    CHECK(s.frames[0].start_line == symtest::kInnerLine - 2);
    CHECK(s.frames[1].function == "symtest::outer_function()");
    CHECK_FALSE(s.frames[1].inlined);
    CHECK(ends_with(s.frames[1].file, "test_symbolize.cpp"));
    CHECK(s.frames[1].line == symtest::kCallLine);

    SECTION("without inlines: only the real function, at the innermost line") {
        auto plain = pmprof::make_symbolizer(*image, {.source_lines = true, .inlines = false});
        const SymbolizedPc& p = plain->symbolize(RawFrame{pc, true});
        REQUIRE(p.frames.size() == 1);
        CHECK(p.frames[0].function == "symtest::outer_function()");
        CHECK(p.frames[0].line == symtest::kInnerLine);
    }
    SECTION("without source lines: names only") {
        auto names = pmprof::make_symbolizer(*image, {.source_lines = false, .inlines = true});
        const SymbolizedPc& n = names->symbolize(RawFrame{pc, true});
        REQUIRE(n.frames.size() == 2);
        CHECK(n.frames[0].function == "symtest::inlined_pc()");
        CHECK(n.frames[0].file.empty());
        CHECK(n.frames[1].line == 0);
    }
}

TEST_CASE("a libc function is named, with libc's build id and debug lines", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    auto sym = pmprof::make_symbolizer(*image, {});
    // libc's own qsort: under ASan, &::qsort is the sanitizer runtime's interceptor.
    void* libc = ::dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    REQUIRE(libc != nullptr);
    const uint64_t pc = address_of(::dlsym(libc, "qsort"));
    ::dlclose(libc);
    const SymbolizedPc& s = sym->symbolize(RawFrame{pc + 4, true});
    REQUIRE_FALSE(s.frames.empty());
    CHECK(s.frames.back().function == "qsort");
    CHECK(ends_with(s.module, "/libc.so.6"));
    CHECK(s.build_id.size() == 40);
    // libc6-dbg, found through /usr/lib/debug/.build-id.
    CHECK(ends_with(s.frames.back().file, "msort.c"));
    CHECK(s.frames.back().line > 0);
}

TEST_CASE("a pc past the end of a symbol gets no frames", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    auto sym = pmprof::make_symbolizer(*image, {});
    const uint64_t start = address_of(reinterpret_cast<const void*>(&pmprof_test_sized_fn));
    const SymbolizedPc& at = sym->symbolize(RawFrame{start, true});
    REQUIRE(at.frames.size() == 1);
    CHECK(at.frames[0].function == "pmprof_test_sized_fn");

    const SymbolizedPc& gap = sym->symbolize(RawFrame{start + 16, true});
    CHECK(gap.frames.empty());
    CHECK(ends_with(gap.module, "pmprof-tests"));
    CHECK(gap.module_offset == at.module_offset + 16);
    CHECK(pmprof::module_offset_label(gap) == fmt::format("pmprof-tests+{:#x}", gap.module_offset));
}

TEST_CASE("return addresses are looked up at pc - 1, exact pcs at pc", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    auto sym = pmprof::make_symbolizer(*image, {});
    const uint64_t start = address_of(reinterpret_cast<const void*>(&pmprof_test_sized_fn));
    // As a return address, start + 1 belongs to the instruction at `start`.
    CHECK(sym->symbolize(RawFrame{start + 1, false}).frames.size() == 1);
    CHECK(sym->symbolize(RawFrame{start + 1, true}).frames.empty());
}

TEST_CASE("a pc outside every mapping gets neither module nor frames", "[unit][symbolize]") {
    auto image = pmprof::test::open_self_image();
    auto sym = pmprof::make_symbolizer(*image, {});
    const SymbolizedPc& s = sym->symbolize(RawFrame{0x10, true});
    CHECK(s.module.empty());
    CHECK(s.frames.empty());
    CHECK(pmprof::module_offset_label(s) == "0x10");
}

TEST_CASE("demangle", "[unit][symbolize]") {
    CHECK(pmprof::demangle("_ZN2ns3Cls6methodEi") == "ns::Cls::method(int)");
    CHECK(pmprof::demangle("_Z3fooi.constprop.0") == "foo(int) [clone .constprop.0]");
    // Rust legacy: the "h<hash>" element dropped (as rustfilt and perf do), "$LT$" unescaped.
    CHECK(pmprof::demangle("_ZN4core3fmt5write17h0123456789abcdefE") == "core::fmt::write");
    CHECK(pmprof::demangle("_ZN1r6Crunch4step17hee77440a9406a696E") == "r::Crunch::step");
    CHECK(pmprof::demangle("_ZN4core3ptr30drop_in_place$LT$r..Crunch$GT$17heab5f3ef45136011E") ==
          "core::ptr::drop_in_place<r::Crunch>");
    // ThinLTO's ".llvm.N" suffix is dropped for Rust and C++ alike.
    CHECK(pmprof::demangle("_ZN1r6Crunch4step17hee77440a9406a696E.llvm.1234567890") ==
          "r::Crunch::step");
    CHECK(pmprof::demangle("_ZN2ns3Cls6methodEi.llvm.42") == "ns::Cls::method(int)");
    // Rust v0 (rustc -C symbol-mangling-version=v0), names taken from a real binary.
    // An inherent method reads as in legacy names and gdb: "r::Crunch::step", not
    // "<r::Crunch>::step".
    CHECK(pmprof::demangle("_RNvMCsi7GFBnvyxwE_1rNtB2_6Crunch4step") == "r::Crunch::step");
    CHECK(pmprof::demangle(
              "_RINvNtCs6IL9ONYDOZW_4core3ptr13drop_in_placeNtCsi7GFBnvyxwE_1r6CrunchEBI_") ==
          "core::ptr::drop_in_place::<r::Crunch>");
    // GCC's clone suffixes, as gdb and perf print them.
    CHECK(pmprof::demangle("_Z3fooi.cold") == "foo(int) [clone .cold]");
    CHECK(pmprof::demangle("_Z3fooi.part.0") == "foo(int) [clone .part.0]");
    CHECK(pmprof::demangle("_Z3fooi.isra.0") == "foo(int) [clone .isra.0]");
    // Not mangled: unchanged, and a C name that is also a type encoding stays a name.
    CHECK(pmprof::demangle("i") == "i");
    CHECK(pmprof::demangle("crunch_step.cold") == "crunch_step.cold");
    CHECK(pmprof::demangle("_Rubbish") == "_Rubbish");
    CHECK(pmprof::demangle("main") == "main");
    CHECK(pmprof::demangle("i") == "i");  // a C symbol, not the type "int"
    CHECK(pmprof::demangle("_Z") == "_Z");
    CHECK(pmprof::demangle("_Znotmangled") == "_Znotmangled");
    CHECK(pmprof::demangle("") == "");
}

TEST_CASE("module_offset_label uses the module's base name", "[unit][symbolize]") {
    SymbolizedPc s;
    s.pc = 0x7f0000001234;
    s.module = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    s.module_offset = 0x1234;
    CHECK(pmprof::module_offset_label(s) == "libc.so.6+0x1234");
    s.module = "[vdso]";
    CHECK(pmprof::module_offset_label(s) == "[vdso]+0x1234");
}

TEST_CASE("demangle: v0 inherent impls without brackets, trait impls and generics kept",
          "[unit][symbolize]") {
    // Real v0 names from a rustc 1.63 binary (-C symbol-mangling-version=v0).
    // Turbofish generic arguments keep their brackets; the inherent impl inside loses its own.
    CHECK(pmprof::demangle("_RINvNtCs6IL9ONYDOZW_4core3ptr13drop_in_placeNCINvMNtCsdyIG5SqMl5y_"
                           "3std6threadNtBM_7Builder16spawn_unchecked_NCNvCs35vA2Gx1xbd_2r24main0u"
                           "Es_0EB1M_") ==
          "core::ptr::drop_in_place::<std::thread::Builder::spawn_unchecked_<r2::main::{closure#0},"
          " ()>::{closure#1}>");
    // A trait impl keeps "<T as Trait>::".
    CHECK(pmprof::demangle("_RNSNvYNCINvMNtCsdyIG5SqMl5y_3std6threadNtBa_7Builder16spawn_unchecked_"
                           "NCNvCs35vA2Gx1xbd_2r24main0uEs_0INtNtNtCs6IL9ONYDOZW_4core3ops8function"
                           "6FnOnceuE9call_once6vtableB1a_") ==
          "<std::thread::Builder::spawn_unchecked_<r2::main::{closure#0}, ()>::{closure#1} as "
          "core::ops::function::FnOnce<()>>::call_once::{shim:vtable#0}");
    CHECK(pmprof::demangle("_RNvXNvMs_NtNtCsihNoVIYWwLU_5alloc3ffi5c_strNtB7_7CString3newNtNtBb_"
                           "6string6StringNtB2_11SpecNewImpl13spec_new_implCs35vA2Gx1xbd_2r2") ==
          "<alloc::string::String as alloc::ffi::c_str::CString::new::SpecNewImpl>::spec_new_impl");
}
