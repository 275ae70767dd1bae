// A read-only index over a Profile for the writers and reports of layer 4: id lookups that
// tolerate dangling ids (decoded files are untrusted), and a sample's stack expanded into one
// frame per Line (inline frames included), the shape callgrind, flame graphs and `list` need.
// Private to the output/report code; not a public header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pmprof/profile/profile.h"

namespace pmprof {

/// One frame of an expanded stack. Views point into the Profile or the ProfileIndex, which must
/// outlive it.
struct FrameView {
    std::string_view name;    // function name, or "module+0xOFFSET" / "0xADDR" when unsymbolized
    std::string_view file;    // source file, "" when unknown
    std::string_view module;  // mapping filename, "" when unknown
    int64_t line = 0;         // 0 when unknown
    int64_t start_line = 0;   // the function's first line, 0 when unknown
};

class ProfileIndex {
  public:
    /// `profile` must outlive the index.
    explicit ProfileIndex(const Profile& profile);

    const Location* location(uint64_t id) const;
    const Function* function(uint64_t id) const;
    const Mapping* mapping(uint64_t id) const;

    /// Appends the frames of `sample` to `out`, leaf first: each Location contributes its Lines
    /// innermost first (profile.proto's order), or one address frame when it has none. Ids that
    /// name nothing become a "[unknown location N]" frame rather than an error.
    void expand(const Sample& sample, std::vector<FrameView>& out) const;

    /// The sample type index for `name` ("" = default, or a decimal index); -1 when none.
    int resolve_sample_index(const std::string& name) const;

    const Profile& profile() const { return profile_; }

  private:
    void expand_location(uint64_t id, std::vector<FrameView>& out) const;

    const Profile& profile_;
    std::unordered_map<uint64_t, size_t> locations_, functions_, mappings_;
    std::unordered_map<uint64_t, std::string> synthetic_names_;  // per location id
};

/// The value of sample type `index` in `s`, 0 when the sample has fewer values.
int64_t sample_value(const Sample& s, int index);

}  // namespace pmprof
