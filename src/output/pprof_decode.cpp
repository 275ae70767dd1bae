// profile.proto decoder: gzipped or raw bytes -> Profile. Every varint and length is
// bounds-checked (src/output/protobuf_wire.h), string indices are range-checked, and the references
// CheckValid() checks (ids non-zero and unique, every referenced id present, one value per
// sample type) are enforced, so writers can trust a decoded Profile. Garbage gives a one-line
// Error, never a crash. Unknown fields are skipped, as protobuf requires.
#include <unordered_set>

#include "output/pprof_proto.h"
#include "output/protobuf_wire.h"
#include "pmprof/output/pprof.h"

namespace pmprof {

using namespace profile_proto;

namespace {

std::string wire_mismatch(const char* message, const wire::Field& f) {
    return std::string(message) + " field " + std::to_string(f.number) + ": unexpected wire type " +
           std::to_string(f.type);
}

// Reads profile.proto messages. The string table is collected in a first pass because the
// other messages may precede it.
class Decoder {
  public:
    Result<Profile> run(std::string_view bytes);

  private:
    Result<void> collect_strings(std::string_view bytes);
    Result<void> top_field(const wire::Field& f, Profile& p);
    Result<std::string> str(uint64_t index, const char* what) const;
    Result<ValueType> value_type(std::string_view bytes) const;
    Result<Sample> sample(std::string_view bytes) const;
    Result<Label> label(std::string_view bytes) const;
    Result<Mapping> mapping(std::string_view bytes) const;
    Result<Location> location(std::string_view bytes) const;
    Result<Function> function(std::string_view bytes) const;

    std::vector<std::string_view> strings_;
    std::vector<uint64_t> comments_;
    uint64_t default_sample_type_ = 0;
};

Result<std::string> Decoder::str(uint64_t index, const char* what) const {
    if (index >= strings_.size()) {
        return Error{std::string("pprof: ") + what + " string index " + std::to_string(index) +
                     " out of range (table has " + std::to_string(strings_.size()) + ")"};
    }
    return std::string(strings_[index]);
}

Result<void> Decoder::collect_strings(std::string_view bytes) {
    wire::Reader r(bytes);
    while (!r.done()) {
        auto f = r.next();
        if (!f) return Error{"pprof: " + f.error().message};
        if (f->number != pf::kStringTable) continue;
        if (f->type != wire::kLengthDelimited) return Error{wire_mismatch("pprof: Profile", *f)};
        strings_.push_back(f->bytes);
    }
    if (!strings_.empty() && !strings_[0].empty()) {
        return Error{"pprof: string table does not start with \"\""};
    }
    return {};
}

// Runs `on_field` for every field of the message in `bytes`; an Error names `message`.
template <typename F>
Result<void> for_fields(std::string_view bytes, const char* message, F&& on_field) {
    wire::Reader r(bytes);
    while (!r.done()) {
        auto f = r.next();
        if (!f) return Error{std::string("pprof: ") + message + ": " + f.error().message};
        if (auto ok = on_field(*f); !ok) return ok;
    }
    return {};
}

Result<void> expect_varint(const wire::Field& f, const char* message) {
    if (f.type == wire::kVarint) return {};
    return Error{"pprof: " + wire_mismatch(message, f)};
}

Result<ValueType> Decoder::value_type(std::string_view bytes) const {
    uint64_t type = 0, unit = 0;
    auto ok = for_fields(bytes, "ValueType", [&](const wire::Field& f) -> Result<void> {
        if (f.number == vt::kType || f.number == vt::kUnit) {
            if (auto v = expect_varint(f, "ValueType"); !v) return v;
            (f.number == vt::kType ? type : unit) = f.varint;
        }
        return {};
    });
    if (!ok) return ok.error();
    auto t = str(type, "ValueType.type");
    if (!t) return t.error();
    auto u = str(unit, "ValueType.unit");
    if (!u) return u.error();
    return ValueType{*t, *u};
}

Result<Label> Decoder::label(std::string_view bytes) const {
    uint64_t key = 0, s = 0, unit = 0;
    Label l;
    auto ok = for_fields(bytes, "Label", [&](const wire::Field& f) -> Result<void> {
        if (f.number < lb::kKey || f.number > lb::kNumUnit) return {};
        if (auto v = expect_varint(f, "Label"); !v) return v;
        if (f.number == lb::kKey) key = f.varint;
        if (f.number == lb::kStr) s = f.varint;
        if (f.number == lb::kNum) l.num = static_cast<int64_t>(f.varint);
        if (f.number == lb::kNumUnit) unit = f.varint;
        return {};
    });
    if (!ok) return ok.error();
    auto k = str(key, "Label.key");
    auto v = str(s, "Label.str");
    auto u = str(unit, "Label.num_unit");
    if (!k || !v || !u) return (!k ? k : !v ? v : u).error();
    l.key = *k;
    l.str = *v;
    l.num_unit = *u;
    return l;
}

Result<Sample> Decoder::sample(std::string_view bytes) const {
    Sample s;
    std::vector<uint64_t> values;
    auto ok = for_fields(bytes, "Sample", [&](const wire::Field& f) -> Result<void> {
        if (f.number == sm::kLocationId) return wire::append_repeated(f, s.location_ids);
        if (f.number == sm::kValue) return wire::append_repeated(f, values);
        if (f.number == sm::kLabel) {
            if (f.type != wire::kLengthDelimited) return Error{wire_mismatch("pprof: Sample", f)};
            auto l = label(f.bytes);
            if (!l) return l.error();
            s.labels.push_back(std::move(*l));
        }
        return {};
    });
    if (!ok) return ok.error();
    for (uint64_t v : values) s.values.push_back(static_cast<int64_t>(v));
    return s;
}

Result<Mapping> Decoder::mapping(std::string_view bytes) const {
    Mapping m;
    uint64_t filename = 0, build_id = 0;
    auto ok = for_fields(bytes, "Mapping", [&](const wire::Field& f) -> Result<void> {
        if (f.number < mp::kId || f.number > mp::kHasInlineFrames) return {};
        if (auto v = expect_varint(f, "Mapping"); !v) return v;
        switch (f.number) {
        case mp::kId:
            m.id = f.varint;
            break;
        case mp::kMemoryStart:
            m.memory_start = f.varint;
            break;
        case mp::kMemoryLimit:
            m.memory_limit = f.varint;
            break;
        case mp::kFileOffset:
            m.file_offset = f.varint;
            break;
        case mp::kFilename:
            filename = f.varint;
            break;
        case mp::kBuildId:
            build_id = f.varint;
            break;
        case mp::kHasFunctions:
            m.has_functions = f.varint != 0;
            break;
        case mp::kHasFilenames:
            m.has_filenames = f.varint != 0;
            break;
        case mp::kHasLineNumbers:
            m.has_line_numbers = f.varint != 0;
            break;
        default:
            m.has_inline_frames = f.varint != 0;
            break;
        }
        return {};
    });
    if (!ok) return ok.error();
    auto file = str(filename, "Mapping.filename");
    if (!file) return file.error();
    auto bid = str(build_id, "Mapping.build_id");
    if (!bid) return bid.error();
    m.filename = *file;
    m.build_id = *bid;
    return m;
}

Result<Line> parse_line(std::string_view bytes) {
    Line line;
    auto ok = for_fields(bytes, "Line", [&](const wire::Field& f) -> Result<void> {
        if (f.number != ln::kFunctionId && f.number != ln::kLine) return {};
        if (auto v = expect_varint(f, "Line"); !v) return v;
        if (f.number == ln::kFunctionId) line.function_id = f.varint;
        if (f.number == ln::kLine) line.line = static_cast<int64_t>(f.varint);
        return {};
    });
    if (!ok) return ok.error();
    return line;
}

Result<Location> Decoder::location(std::string_view bytes) const {
    Location l;
    auto ok = for_fields(bytes, "Location", [&](const wire::Field& f) -> Result<void> {
        if (f.number == lc::kLine) {
            if (f.type != wire::kLengthDelimited) return Error{wire_mismatch("pprof: Location", f)};
            auto line = parse_line(f.bytes);
            if (!line) return line.error();
            l.lines.push_back(*line);
            return {};
        }
        if (f.number < lc::kId || f.number > lc::kIsFolded) return {};
        if (auto v = expect_varint(f, "Location"); !v) return v;
        if (f.number == lc::kId) l.id = f.varint;
        if (f.number == lc::kMappingId) l.mapping_id = f.varint;
        if (f.number == lc::kAddress) l.address = f.varint;
        return {};
    });
    if (!ok) return ok.error();
    return l;
}

Result<Function> Decoder::function(std::string_view bytes) const {
    Function fun;
    uint64_t idx[3] = {0, 0, 0};  // name, system_name, filename
    auto ok = for_fields(bytes, "Function", [&](const wire::Field& f) -> Result<void> {
        if (f.number < fn::kId || f.number > fn::kStartLine) return {};
        if (auto v = expect_varint(f, "Function"); !v) return v;
        if (f.number == fn::kId) fun.id = f.varint;
        if (f.number >= fn::kName && f.number <= fn::kFilename)
            idx[f.number - fn::kName] = f.varint;
        if (f.number == fn::kStartLine) fun.start_line = static_cast<int64_t>(f.varint);
        return {};
    });
    if (!ok) return ok.error();
    std::string* dst[3] = {&fun.name, &fun.system_name, &fun.filename};
    for (int i = 0; i < 3; ++i) {
        auto s = str(idx[i], "Function name/filename");
        if (!s) return s.error();
        *dst[i] = std::move(*s);
    }
    return fun;
}

// Appends the parsed message in `f` to `out`.
template <typename T, typename Parse>
Result<void> append_message(const wire::Field& f, std::vector<T>& out, Parse&& parse) {
    if (f.type != wire::kLengthDelimited) return Error{wire_mismatch("pprof: Profile", f)};
    Result<T> v = parse(f.bytes);
    if (!v) return v.error();
    out.push_back(std::move(*v));
    return {};
}

Result<void> Decoder::top_field(const wire::Field& f, Profile& p) {
    switch (f.number) {
    case pf::kSampleType:
        return append_message(f, p.sample_types, [&](auto b) { return value_type(b); });
    case pf::kSample:
        return append_message(f, p.samples, [&](auto b) { return sample(b); });
    case pf::kMapping:
        return append_message(f, p.mappings, [&](auto b) { return mapping(b); });
    case pf::kLocation:
        return append_message(f, p.locations, [&](auto b) { return location(b); });
    case pf::kFunction:
        return append_message(f, p.functions, [&](auto b) { return function(b); });
    case pf::kPeriodType: {
        std::vector<ValueType> one;
        if (auto ok = append_message(f, one, [&](auto b) { return value_type(b); }); !ok) return ok;
        p.period_type = one[0];
        return {};
    }
    case pf::kComment:
        return wire::append_repeated(f, comments_);
    case pf::kTimeNanos:
    case pf::kDurationNanos:
    case pf::kPeriod:
    case pf::kDefaultSampleType:
    case pf::kDropFrames:
    case pf::kKeepFrames: {
        if (auto ok = expect_varint(f, "Profile"); !ok) return ok;
        auto v = static_cast<int64_t>(f.varint);
        if (f.number == pf::kTimeNanos) p.time_nanos = v;
        if (f.number == pf::kDurationNanos) p.duration_nanos = v;
        if (f.number == pf::kPeriod) p.period = v;
        if (f.number == pf::kDefaultSampleType) default_sample_type_ = f.varint;
        return {};
    }
    default:
        return {};  // string_table (read in the first pass) and unknown fields
    }
}

// Ids must be non-zero and unique (profile.proto: "ID 0 is reserved").
template <typename T>
Result<void> check_ids(const std::vector<T>& items, const char* what,
                       std::unordered_set<uint64_t>& ids) {
    for (const T& item : items) {
        if (item.id == 0) return Error{std::string("pprof: ") + what + " with reserved id 0"};
        if (!ids.insert(item.id).second) {
            return Error{std::string("pprof: duplicate ") + what + " id " +
                         std::to_string(item.id)};
        }
    }
    return {};
}

// The references CheckValid() checks, so writers can rely on every id resolving.
Result<void> check_references(const Profile& p) {
    std::unordered_set<uint64_t> mappings, locations, functions;
    if (auto ok = check_ids(p.mappings, "mapping", mappings); !ok) return ok;
    if (auto ok = check_ids(p.locations, "location", locations); !ok) return ok;
    if (auto ok = check_ids(p.functions, "function", functions); !ok) return ok;
    for (const Location& l : p.locations) {
        if (l.mapping_id != 0 && !mappings.contains(l.mapping_id)) {
            return Error{"pprof: location " + std::to_string(l.id) + " refers to missing mapping " +
                         std::to_string(l.mapping_id)};
        }
        for (const Line& line : l.lines) {
            if (!functions.contains(line.function_id)) {
                return Error{"pprof: location " + std::to_string(l.id) +
                             " refers to missing function " + std::to_string(line.function_id)};
            }
        }
    }
    for (size_t i = 0; i < p.samples.size(); ++i) {
        const Sample& s = p.samples[i];
        if (s.values.size() != p.sample_types.size()) {
            return Error{"pprof: sample " + std::to_string(i) + " has " +
                         std::to_string(s.values.size()) + " values for " +
                         std::to_string(p.sample_types.size()) + " sample types"};
        }
        for (uint64_t id : s.location_ids) {
            if (!locations.contains(id)) {
                return Error{"pprof: sample " + std::to_string(i) + " refers to missing location " +
                             std::to_string(id)};
            }
        }
    }
    return {};
}

Result<Profile> Decoder::run(std::string_view bytes) {
    if (auto ok = collect_strings(bytes); !ok) return ok.error();
    Profile p;
    wire::Reader r(bytes);
    while (!r.done()) {
        auto f = r.next();
        if (!f) return Error{"pprof: " + f.error().message};
        if (auto ok = top_field(*f, p); !ok) return ok.error();
    }
    for (uint64_t c : comments_) {
        auto s = str(c, "comment");
        if (!s) return s.error();
        p.comments.push_back(std::move(*s));
    }
    auto dst = str(default_sample_type_, "default_sample_type");
    if (!dst) return dst.error();
    p.default_sample_type = std::move(*dst);
    if (auto ok = check_references(p); !ok) return ok.error();
    return p;
}

}  // namespace

Result<Profile> decode_pprof(std::string_view bytes) {
    if (bytes.empty()) return Error{"pprof: empty input"};
    // gzip magic (RFC 1952 2.3.1); anything else is taken as raw profile.proto bytes.
    if (bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
        static_cast<uint8_t>(bytes[1]) == 0x8b) {
        auto raw = gzip_decompress(bytes);
        if (!raw) return raw.error();
        return Decoder().run(*raw);
    }
    return Decoder().run(bytes);
}

}  // namespace pmprof
