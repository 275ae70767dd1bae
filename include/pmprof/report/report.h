// Reading profiles back and turning them into every output format: the shared --format switch of
// the verbs that write profiles, and the operations of `pmprof report` (top, list, diff,
// tagfocus) over a Profile. No Go toolchain needed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "pmprof/profile/profile.h"
#include "pmprof/support/error.h"

namespace pmprof {

/// The names accepted by render_profile, for CLI11 IsMember checks and help texts.
inline const std::vector<std::string> kProfileFormats = {"pprof", "callgrind", "folded", "svg",
                                                         "text"};

struct RenderOptions {
    std::string sample_type;  // name or decimal index; "" = the profile's default
    size_t top = 0;           // text: rows to print, 0 = all
    bool per_thread = false;  // folded: thread_name label as the root frame
    std::string title;        // svg: title line ("" = "Flame Graph")
    std::string command;      // callgrind: "cmd:" header ("" = none)
};

/// Serializes `profile` as `format` (one of kProfileFormats; pprof is gzipped). Errors: unknown
/// format or sample type, negative values for callgrind, compression failure.
Result<std::string> render_profile(const Profile& profile, const std::string& format,
                                   const RenderOptions& opt = {});
/// True for formats that are not text (pprof), which must not go to a terminal.
bool format_is_binary(const std::string& format);
/// The format a file name implies: callgrind.out.* / *.callgrind -> callgrind, *.svg -> svg,
/// *.folded / *.txt -> folded, *.pb.gz / *.pb / *.pprof -> pprof; "" when it implies none.
std::string format_from_filename(const std::string& path);

/// Reads and decodes a pprof file (gzipped or not). Errors name the file and say why it is not
/// a profile (missing, empty, truncated, garbage).
Result<Profile> read_profile_file(const std::string& path);

/// The sample type index `name` selects (a type name or a decimal index; "" = default), or an
/// Error listing the profile's types.
Result<int> resolve_sample_type(const Profile& profile, const std::string& name);

/// `current` minus `base`, as `pprof -base`: base's samples are negated and merged with the
/// current ones by symbolic identity (functions by name and file, mappings by file and size,
/// addresses relocated), samples netting to zero are dropped. Error when sample types differ.
Result<Profile> subtract_profile(const Profile& current, const Profile& base);

/// Only the samples with a label KEY whose string value matches the regex VALUE, or whose
/// number equals VALUE or lies in "LO:HI" (either bound may be empty). `filter` is "KEY=VALUE".
Result<Profile> tag_focus(const Profile& profile, const std::string& filter);

struct ListOptions {
    std::string regex;                      // matched against function names
    std::string sample_type;                // as in RenderOptions
    std::vector<std::string> source_paths;  // searched when a recorded path does not exist
};

/// `pprof -list`: for every function matching the regex, its source lines with per-line flat and
/// cum values. Errors: bad regex, no matching function, unknown sample type.
Result<std::string> format_list(const Profile& profile, const ListOptions& opt);

/// A value with its unit scaled as pprof prints it ("2.49s", "10ms", "1.50MB", "42").
std::string format_scaled_value(int64_t value, const std::string& unit);

}  // namespace pmprof
