// A persistent cache of symbolization results: for one module build id and one set of
// SymbolizeOptions, the frames of each lookup address. A warm `pmprof stacks` then needs no
// DWARF at all for the pcs it has seen before (libc's idle waits, a server's event loop).
//
// An entry is valid for every file with that build id as long as the file its DWARF came from
// is unchanged: the file records that source (the module's own ELF file, or the separate debug
// file, by device, inode, size and mtime) and is ignored when it no longer matches, or when
// another pmprof build wrote it. Results from modules without DWARF are never stored
// (installing a -dbg package later must show its lines at once). Files are never evicted: one
// per module build id, bounded in size. See src/symbolize/cache.cpp for the format.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "pmprof/os/file.h"
#include "pmprof/support/types.h"

namespace pmprof {

/// Where a module's DWARF came from.
struct DwarfSource {
    bool in_main_file = false;  // the module's own ELF file (its identity is checked)
    std::string debug_path;     // else the separate debug file, checked by path
    FileIdentity identity;
};

/// Frames by lookup address relative to the module's load bias (its ELF virtual address).
using CachedFrames = std::unordered_map<uint64_t, std::vector<SourceFrame>>;

/// <cache_dir>/symbols/<build_id>.<variant>, or "" when cache_dir is empty or build_id does
/// not look like one.
std::string symbol_cache_path(const std::string& cache_dir, const std::string& build_id,
                              const std::string& variant);

/// The entries of the cache file at `path` if it is well formed and its DWARF source is
/// unchanged (`main_file`: the identity of the module's ELF file in this process, when known).
std::optional<CachedFrames> load_symbol_cache(const std::string& path,
                                              const std::optional<FileIdentity>& main_file);

/// Writes `entries` with `source` to `path` (temp file + rename; directories made 0700).
/// Entries with a tab or newline in a string are left out. False, logged at debug level, on
/// any failure.
bool save_symbol_cache(const std::string& path, const DwarfSource& source,
                       const CachedFrames& entries);

}  // namespace pmprof
