// Plain-text reports of a Profile, with the numbers `go tool pprof -top` prints.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "pmprof/profile/profile.h"

namespace pmprof {

struct TopRow {
    std::string function;
    int64_t flat = 0, cum = 0;
};

/// Per function: flat (leaf line) and cum (anywhere on the stack, counted once per sample),
/// sorted by flat then name, for sample type `sample_index`.
std::vector<TopRow> compute_top(const Profile& profile, int sample_index);
/// What a filter changed, as pprof reports it after -tagfocus/-focus.
struct TopContext {
    /// Percentages are of this total (the profile before filtering, as pprof's are), when set.
    std::optional<int64_t> total;
    std::vector<std::string> active_filters;  // "tagfocus=thread_name=busy-0", listed first
};

/// The flat/flat%/sum%/cum/cum% table for the first `n` rows, with a header line.
std::string format_top(const Profile& profile, int sample_index, size_t n,
                       const TopContext& context = {});
/// pprof's total of sample type `sample_index`: the sum of |value| over the samples.
int64_t profile_total(const Profile& profile, int sample_index);

}  // namespace pmprof
