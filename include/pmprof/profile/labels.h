// The labels that say which process a sample came from, for profiles that hold several
// (--subprocesses, -p 1,2,3: docs/design.md §4.7).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "pmprof/profile/profile.h"

namespace pmprof {

/// `pid` (numeric) and `comm` (the program's name, /proc/PID/comm): what names the process of a
/// sample when a profile holds several.
std::vector<Label> process_labels(pid_t pid, const std::string& comm);
/// Appends `labels` to every sample of `profile`.
void add_sample_labels(Profile& profile, const std::vector<Label>& labels);

}  // namespace pmprof
