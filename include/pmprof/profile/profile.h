// The one profile model every writer reads: profile.proto's shape (google/pprof), symbolized,
// with ids starting at 1. Hand-built in tests; built from raw stacks by ProfileBuilder.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "pmprof/support/types.h"
#include "pmprof/symbolize/symbolize.h"

namespace pmprof {

struct ValueType {
    std::string type;  // "samples", "cpu", "inuse_space"
    std::string unit;  // "count", "nanoseconds", "bytes"
    bool operator==(const ValueType&) const = default;
};

struct Mapping {
    uint64_t id = 0;
    uint64_t memory_start = 0, memory_limit = 0, file_offset = 0;
    std::string filename, build_id;
    bool has_functions = false, has_filenames = false, has_line_numbers = false,
         has_inline_frames = false;
};

struct Function {
    uint64_t id = 0;
    std::string name;         // demangled
    std::string system_name;  // mangled
    std::string filename;
    int64_t start_line = 0;
};

struct Line {
    uint64_t function_id = 0;
    int64_t line = 0;
};

struct Location {
    uint64_t id = 0;
    uint64_t mapping_id = 0;  // 0: no mapping (pseudo-frames)
    uint64_t address = 0;
    std::vector<Line> lines;  // innermost (inlined) first, the real function last
};

struct Label {
    std::string key;
    std::string str;  // string label when not empty
    int64_t num = 0;  // numeric label otherwise
    std::string num_unit;
    bool operator==(const Label&) const = default;
};

struct Sample {
    std::vector<uint64_t> location_ids;  // leaf first
    std::vector<int64_t> values;         // one per sample type
    std::vector<Label> labels;
};

struct Profile {
    std::vector<ValueType> sample_types;
    std::vector<Sample> samples;
    std::vector<Mapping> mappings;
    std::vector<Location> locations;
    std::vector<Function> functions;
    std::vector<std::string> comments;
    ValueType period_type;
    int64_t period = 0;
    int64_t time_nanos = 0;
    int64_t duration_nanos = 0;
    std::string default_sample_type;

    /// Index of the sample type named `type` (default_sample_type when empty, else the last).
    /// -1 when there is no such type.
    int sample_index(const std::string& type = {}) const;
    const Location* location(uint64_t id) const;  // nullptr when absent
    const Function* function(uint64_t id) const;
    const Mapping* mapping(uint64_t id) const;
};

/// a + b clamped to the int64 range: values come from untrusted files, and a sum that overflows
/// must not be undefined behavior.
inline int64_t saturating_add(int64_t a, int64_t b) {
    int64_t r = 0;
    if (!__builtin_add_overflow(a, b, &r)) return r;
    return b > 0 ? INT64_MAX : INT64_MIN;
}

/// Several profiles of the same sample types as one, as pprof merges them: functions, mappings
/// (by size, file offset and build id, else file name, so ASLR does not split a binary) and
/// locations are re-interned, samples with the same locations and labels add up, each part's
/// values multiplied by its sign (+1, or -1 to subtract a base). Samples that sum to zero are
/// dropped. The first part gives the header (types, period, time, comments).
Profile merge_profiles(const std::vector<std::pair<const Profile*, int>>& parts);

/// Interns stacks and labels as samples arrive, then symbolizes once per unique pc.
class ProfileBuilder {
  public:
    ProfileBuilder(std::vector<ValueType> sample_types, ValueType period_type, int64_t period);

    /// Adds `values` to the sample for (stack, labels), creating it on first sight.
    void add(const RawStack& stack, const std::vector<int64_t>& values,
             const std::vector<Label>& labels);
    /// Adds a sample whose frames are pseudo-functions (no mapping), root last, e.g. {"int[]",
    /// "[arena 2]", "[heap]"}.
    void add_synthetic(const std::vector<std::string>& frames_leaf_first,
                       const std::vector<int64_t>& values, const std::vector<Label>& labels);

    size_t unique_stacks() const;
    size_t sample_count() const;

    /// Symbolizes every unique pc with `sym` and returns the profile; mappings come from `maps`.
    /// time/duration/comments are left for the caller to set.
    Profile build(Symbolizer& sym, const std::vector<MemoryMap>& maps) const;

  private:
    struct StackKey;
    std::vector<ValueType> sample_types_;
    ValueType period_type_;
    int64_t period_;
    std::vector<std::vector<RawFrame>> stacks_;            // interned, id = index
    std::unordered_map<std::string, uint32_t> stack_ids_;  // key: frame bytes
    std::vector<std::vector<std::string>> synthetic_;      // interned pseudo stacks
    struct Entry {
        uint32_t stack = 0;
        bool synthetic = false;
        bool truncated = false;
        std::vector<Label> labels;
        std::vector<int64_t> values;
    };
    std::vector<Entry> entries_;
    std::unordered_map<std::string, size_t> entry_ids_;  // key: stack id + labels
};

}  // namespace pmprof
