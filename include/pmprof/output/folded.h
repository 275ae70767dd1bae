// Brendan Gregg's collapsed ("folded") stacks: root first, ';'-joined, then a value.
#pragma once

#include <string>

#include "pmprof/profile/profile.h"

namespace pmprof {

struct FoldedOptions {
    int sample_index = -1;    // -1: the profile's default sample type
    bool per_thread = false;  // thread_name label as the root frame
};

/// One line per unique stack (inline frames expanded), sorted.
std::string write_folded(const Profile& profile, const FoldedOptions& opt);

}  // namespace pmprof
