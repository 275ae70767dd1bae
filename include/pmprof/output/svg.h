// A self-contained interactive flame graph as one SVG file (inline CSS and JavaScript, no
// network): hover shows name, value and share; click zooms; Ctrl-F / "Search" highlights by
// regular expression; frames are colored by module (binary or shared library).
#pragma once

#include <string>

#include "pmprof/profile/profile.h"

namespace pmprof {

struct SvgOptions {
    int sample_index = -1;  // -1: the profile's default sample type
    std::string title = "Flame Graph";
    int width = 1200;  // pixels, clamped to [200, 20000]
};

/// The SVG document. Samples with a value <= 0 are left out (a flame graph shows positive
/// weight only); frames narrower than 0.1 px are merged into their parent's width.
std::string write_flamegraph_svg(const Profile& profile, const SvgOptions& opt = {});

}  // namespace pmprof
