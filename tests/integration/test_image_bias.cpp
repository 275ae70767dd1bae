// ProcessImage's load biases against libdwfl's own on the same pid: dwfl_linux_proc_report reads
// /proc/PID/maps and places each module by its lowest mapping, a different rule from
// load_bias()'s per-segment choice (src/elf/image.cpp). On every linker layout the test targets
// have (GNU ld, lld, mold, and rustc's output through GNU ld and lld), every module both report
// must sit at the same bias, so every symbol lookup agrees.
#include <catch2/catch.hpp>
#include <elfutils/libdwfl.h>
#include <unistd.h>

#include <map>
#include <string>

#include "../support/harness.h"
#include "pmprof/elf/image.h"
#include "pmprof/elf/image_impl.h"
#include "pmprof/os/procfs.h"

using namespace pmprof;
namespace t = pmprof::test;

namespace {

/// Module name -> bias, for every module of `dwfl` that has an ELF.
std::map<std::string, Dwarf_Addr> biases_of(Dwfl* dwfl) {
    std::map<std::string, Dwarf_Addr> out;
    auto each = [](Dwfl_Module* mod, void**, const char* name, Dwarf_Addr, void* arg) -> int {
        Dwarf_Addr bias = 0;
        if (dwfl_module_getelf(mod, &bias) != nullptr)
            (*static_cast<std::map<std::string, Dwarf_Addr>*>(arg))[name] = bias;
        return DWARF_CB_OK;
    };
    dwfl_getmodules(dwfl, each, &out, 0);
    return out;
}

/// libdwfl's view of the process, as eu-stack builds it.
std::map<std::string, Dwarf_Addr> libdwfl_biases(pid_t pid) {
    static char* debuginfo_path = nullptr;
    static const Dwfl_Callbacks callbacks = {dwfl_linux_proc_find_elf, dwfl_standard_find_debuginfo,
                                             nullptr, &debuginfo_path};
    Dwfl* dwfl = dwfl_begin(&callbacks);
    REQUIRE(dwfl != nullptr);
    dwfl_report_begin(dwfl);
    REQUIRE(dwfl_linux_proc_report(dwfl, pid) == 0);
    REQUIRE(dwfl_report_end(dwfl, nullptr, nullptr) == 0);
    auto out = biases_of(dwfl);
    dwfl_end(dwfl);
    return out;
}

}  // namespace

TEST_CASE("image: load biases agree with libdwfl's on every linker layout",
          "[integration][image][toolchains]") {
    const char* targets[] = {"toolchain_target-fp",
                             "toolchain_target-clang-lld-fp",
                             "toolchain_target-gcc-mold-nofp",
                             "toolchain_target-clang-nofp",
                             "rust_target-legacy-fp",
                             "rust_target-lld-nofp"};
    for (const char* name : targets) {
        INFO(name);
        const std::string bin = t::build_dir() + "/targets/" + name;
        REQUIRE(::access(bin.c_str(), X_OK) == 0);
        auto target = t::Target::start({bin});
        REQUIRE(target != nullptr);
        auto maps = read_maps(target->pid());
        REQUIRE(maps.ok());
        auto image = ProcessImage::open(target->pid(), *maps);
        REQUIRE(image.ok());
        const auto ours = biases_of((*image)->impl().dwfl);
        const auto theirs = libdwfl_biases(target->pid());
        // The program itself must be in both, at the same place; so must every library.
        REQUIRE(ours.count(bin) == 1);
        size_t compared = 0;
        for (const auto& [module, bias] : theirs) {
            auto it = ours.find(module);
            if (it == ours.end()) continue;  // e.g. the vDSO, named differently
            INFO(module);
            CHECK(it->second == bias);
            ++compared;
        }
        CHECK(compared >= 3);  // the program, libc, ld.so at least
        REQUIRE(t::left_running(target->pid()) == "");
    }
}
