// Unwinding from a copy: registers and the top of the stack taken while the thread was stopped,
// unwound after it was resumed. Reads outside the stack copy are served only from read-only
// file-backed mappings (code, .eh_frame), never from the live, changed stack.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "pmprof/error.h"
#include "pmprof/image.h"
#include "pmprof/memory.h"
#include "pmprof/types.h"

namespace pmprof {

enum class UnwinderKind { Dwfl, Libunwind };

/// Parses "dwfl" / "libdw" / "libunwind".
Result<UnwinderKind> parse_unwinder_kind(std::string_view name);

class Unwinder {
  public:
    virtual ~Unwinder() = default;
    /// Unwinds `capture` (which must be ok) up to max_depth frames. Never throws; a stack that
    /// cannot be followed to its root comes back truncated with a stop_reason.
    virtual RawStack unwind(const ThreadCapture& capture, size_t max_depth) = 0;
};

/// `image` and `memory` must outlive the unwinder.
std::unique_ptr<Unwinder> make_unwinder(UnwinderKind kind, ProcessImage& image,
                                        MemoryReader& memory);

}  // namespace pmprof
