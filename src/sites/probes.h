// Where the allocator's entry points are (src/sites/probes.cpp): the exported malloc family and,
// where an allocator defines them itself, the C++ operators new and delete, found in the ELF
// files the target has mapped, as file offsets for uprobes. Private to the sites module.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pmprof/support/error.h"
#include "pmprof/support/types.h"

namespace pmprof {

/// How a probed function takes and gives memory (x86_64 SysV arguments).
enum class AllocKind : uint8_t {
    Alloc,          // size in argument `size_arg`, pointer returned in rax
    Calloc,         // rdi * rsi
    Realloc,        // old pointer rdi, size rsi, new pointer in rax
    PosixMemalign,  // *rdi = pointer, size rdx, returns 0 on success
    Free,           // pointer rdi
};

struct AllocFunction {
    const char* symbol;
    AllocKind kind;
    int size_arg;  // Alloc: 0 = rdi, 1 = rsi
    bool cxx;      // operator new/delete: probed only where the allocator defines malloc too
};
/// Every function pmprof knows how to probe.
const std::vector<AllocFunction>& alloc_functions();

/// One probe to place.
struct AllocProbe {
    const AllocFunction* fn = nullptr;
    std::string file;        // as in /proc/PID/maps
    std::string probe_path;  // what the kernel opens (the file as the target sees it)
    uint64_t offset = 0;     // file offset of the function's first instruction
};

struct AllocatorPlan {
    std::string allocator;  // "glibc", "jemalloc", "tcmalloc", "mimalloc", or a file name
    std::vector<AllocProbe> probes;
    bool glibc = false;  // malloc comes from libc.so (the heap walker can confirm)
};

/// Finds the probes for `pid` from its maps. The Error is one line: a static or stripped
/// binary, an allocator linked in and not exported, or no malloc at all.
Result<AllocatorPlan> plan_alloc_probes(pid_t pid, const std::vector<MemoryMap>& maps);

}  // namespace pmprof
