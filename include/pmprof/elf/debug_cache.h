// A persistent cache of *decompressed* separate debug files, keyed by build id.
//
// libelf inflates every SHF_COMPRESSED .debug_* section it touches on each run (41 % of a
// `pmprof stacks` run on libc6-dbg's files). The cache keeps an uncompressed copy at
// <cache dir>/debug/<build-id>.debug so later runs mmap it and skip zlib entirely. Every failure
// (no HOME, read-only dir, disk full, no eu-elfcompress) falls back to the original file.
#pragma once

#include <string>

#include "pmprof/support/fd.h"

namespace pmprof {

/// $PMPROF_CACHE_DIR, else $XDG_CACHE_HOME/pmprof, else $HOME/.cache/pmprof; "" when disabled
/// (PMPROF_CACHE_DIR=off) or when none is set.
std::string debug_cache_dir();

/// mkdir -p, mode 0700 for each directory it creates (cache entries may copy files readable only
/// by their owner); true when `path` is a directory at the end.
bool make_cache_dirs(const std::string& path);

/// True for a hex build id of a sane length (it names cache entries).
bool valid_build_id(const std::string& id);

/// The uncompressed copy of the debug file with build id `build_id` (hex) from `cache_dir`, if
/// present and its build id matches; else an invalid fd. `*cached_path` gets its path.
UniqueFd open_cached_debug(const std::string& build_id, const std::string& cache_dir,
                           std::string* cached_path);

/// Adds an uncompressed copy of the separate debug file `debug_fd` (opened from `debug_path`) to
/// `cache_dir` (temp file + rename). False, with a log_debug line, when the file has no
/// compressed section, is over the size bound, or anything fails: callers just go on without.
bool add_cached_debug(int debug_fd, const std::string& debug_path, const std::string& cache_dir);

}  // namespace pmprof
