// Private to the heap module: what the walker needs from the target's ELF files (libelf):
// the allocator in use, glibc's version, main_arena/mp_, and the C++ vtable symbols.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "pmprof/heap/heap.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/error.h"
#include "pmprof/support/types.h"

namespace pmprof::heap_detail {

/// The mapping of glibc's libc.so.6 with file offset 0, or nullptr.
const MemoryMap* find_libc(const std::vector<MemoryMap>& maps);

/// Error naming the allocator when the target does not use glibc's malloc: jemalloc, tcmalloc,
/// mimalloc (preloaded or linked), musl, a static binary, or an executable defining malloc.
Result<void> check_glibc_malloc(pid_t pid, const std::vector<MemoryMap>& maps);

/// The version in libc's "... release version 2.36." string ("2.36").
Result<std::string> read_glibc_version(pid_t pid, const MemoryMap& libc);

/// main_arena and mp_ from libc's .symtab (libc6-dbg's separate debug file found by build id).
std::optional<MallocRoots> roots_from_symbols(pid_t pid, const std::vector<MemoryMap>& maps);

/// Without symbols: the main heap's top chunk address is stored once in libc's data (main_arena
/// + top offset); mp_ is found by sbrk_base == start of [heap] (docs/facts.md).
Result<MallocRoots> roots_by_scan(MemoryReader& mem, const std::vector<MemoryMap>& maps,
                                  const GlibcMallocLayout& layout);

/// Every `_ZTV` symbol of every mapped ELF file (.symtab, its debug file's, or .dynsym) as
/// runtime address ranges named by the demangled type.
std::vector<VtableRange> load_vtables(pid_t pid, const std::vector<MemoryMap>& maps);

}  // namespace pmprof::heap_detail
