// Plain-text reports of a Profile, with the numbers `go tool pprof -top` prints.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "pmprof/profile.h"

namespace pmprof {

struct TopRow {
    std::string function;
    int64_t flat = 0, cum = 0;
};

/// Per function: flat (leaf line) and cum (anywhere on the stack, counted once per sample),
/// sorted by flat then name, for sample type `sample_index`.
std::vector<TopRow> compute_top(const Profile& profile, int sample_index);
/// The flat/flat%/sum%/cum/cum% table for the first `n` rows, with a header line.
std::string format_top(const Profile& profile, int sample_index, size_t n);

}  // namespace pmprof
