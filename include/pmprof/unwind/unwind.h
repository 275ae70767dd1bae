// Unwinding from a copy: registers and the top of the stack taken while the thread was stopped,
// unwound after it was resumed. Reads outside the stack copy are served only from read-only
// file-backed mappings (code, .eh_frame), never from the live, changed stack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "pmprof/elf/image.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/error.h"
#include "pmprof/support/types.h"

namespace pmprof {

enum class UnwinderKind { Dwfl, Libunwind };

/// What an unwinder did, for debug logs and tests. The default unwinder (UnwinderKind::Dwfl)
/// walks most stacks with unwind rules cached per pc and hands the rest to libdwfl's own walk;
/// the libunwind one reports zeros.
struct UnwindStats {
    uint64_t stacks = 0;            // unwind() calls
    uint64_t cached_walks = 0;      // stacks walked with cached rules only
    uint64_t fallbacks = 0;         // stacks given to libdwfl's walk (the sum of the next two)
    uint64_t fallback_rule = 0;     // ... a pc had no simple rule (signal frame, no CFI, ...)
    uint64_t fallback_walk = 0;     // ... a read failed, rbp was unknown, or a return address 0
    uint64_t rule_hits = 0;         // frames whose rule came from the cache
    uint64_t rule_misses = 0;       // frames whose rule was derived from the CFI, then cached
    uint64_t rules_not_simple = 0;  // of the misses: rules that send a stack to libdwfl
    uint64_t cache_clears = 0;      // the cache was full and started over
    uint64_t cached_rules = 0;      // rules in the cache now
};

/// Parses "dwfl" / "libdw" / "libunwind".
Result<UnwinderKind> parse_unwinder_kind(std::string_view name);

class Unwinder {
  public:
    virtual ~Unwinder() = default;
    /// Unwinds `capture` (which must be ok) up to max_depth frames. Never throws; a stack that
    /// cannot be followed to its root comes back truncated with a stop_reason.
    virtual RawStack unwind(const ThreadCapture& capture, size_t max_depth) = 0;
    /// Counters since construction (zeros when the unwinder keeps none).
    virtual UnwindStats stats() const { return {}; }
};

/// `image` and `memory` must outlive the unwinder.
std::unique_ptr<Unwinder> make_unwinder(UnwinderKind kind, ProcessImage& image,
                                        MemoryReader& memory);

}  // namespace pmprof
