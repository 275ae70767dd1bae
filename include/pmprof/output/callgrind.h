// Callgrind format (valgrind.org/docs/manual/cl-format.html, version 1), what KCachegrind and
// callgrind_annotate read: one event per sample type, positions by source line, inline frames as
// functions of their own, inclusive costs on calls= lines, names compressed.
#pragma once

#include <string>

#include "pmprof/profile/profile.h"

namespace pmprof {

struct CallgrindOptions {
    // "cmd:" header line (the profiled command). Empty: the command line of pmprof's first
    // comment "pmprof VERB [PID]: COMMAND LINE", whose PID also gives the "pid:" line.
    std::string command;
};

/// The callgrind text for `profile`. Precondition: no negative sample values (callgrind costs
/// are unsigned; render_profile refuses diffs). Dangling ids become "[unknown ...]" frames.
std::string write_callgrind(const Profile& profile, const CallgrindOptions& opt = {});

}  // namespace pmprof
