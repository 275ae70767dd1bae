// ProcessImage internals shared by src/elf/image.cpp, src/unwind/dwfl.cpp, src/unwind/libunwind.cpp
// and src/symbolize/symbolize.cpp. libdwfl types stay inside these adapter files (docs/design.md
// §2).
#pragma once

#include <elf.h>
#include <elfutils/libdwfl.h>

#include <cstdint>
#include <optional>

#include <string>
#include <unordered_map>
#include <vector>

#include "pmprof/elf/elf_file.h"
#include "pmprof/elf/image.h"
#include "pmprof/os/file.h"
#include "pmprof/support/fd.h"

namespace pmprof {

struct ProcessImage::Impl {
    pid_t pid = 0;
    std::vector<MemoryMap> maps;  // sorted by start
    // libdwfl keeps pointers to both: they must live as long as `dwfl`.
    std::string debuginfo_path;
    char* debuginfo_path_ptr = nullptr;
    Dwfl_Callbacks callbacks{};
    Dwfl* dwfl = nullptr;
    // O_PATH fd of /proc/PID/root when the target lives in another mount namespace, so its
    // /usr/lib/debug stays reachable (as /proc/self/fd/N/...) after the target exits.
    UniqueFd root_fd;
    // Identity of the file each module was reported from (fstat of the fd given to libdwfl):
    // the persistent symbol cache checks it when a module's DWARF is in that file.
    std::unordered_map<Dwfl_Module*, FileIdentity> main_files;

    // dwfl_attach_state may be called only once per Dwfl, so the dwfl unwinder attaches its
    // thread callbacks once and points them at the capture being unwound through this member
    // (set for the duration of one unwind; unwinding is single-threaded per image).
    bool state_attached = false;
    void* unwind_context = nullptr;

    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl() {
        if (dwfl != nullptr) dwfl_end(dwfl);
    }
};

/// Load bias of the ELF file (type `e_type`, program headers `phdrs`) that mapping `m` maps:
/// the address of vaddr 0. `file_maps` are the process's mappings (those of the same file vote
/// between segments that share a page); nullopt when no PT_LOAD holds m's file offset.
std::optional<uint64_t> load_bias(uint16_t e_type, const std::vector<Elf64_Phdr>& phdrs,
                                  const MemoryMap& m, const std::vector<MemoryMap>& file_maps,
                                  uint64_t page_size);

}  // namespace pmprof
