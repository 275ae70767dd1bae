// profile.proto encoder and decoder. Field numbers are those of
// github.com/google/pprof/proto/profile.proto; the invariants CheckValid() relies on (string
// table starting with "", ids never 0, every referenced id present) are kept on write and
// enforced on read, so writers can trust a decoded Profile.
#include "pmprof/output_pprof.h"

#include <zlib.h>

#include <unordered_map>
#include <unordered_set>

#include "protobuf_wire.h"

namespace pmprof {
namespace {

// profile.proto field numbers.
namespace pf {
enum : int {
    kSampleType = 1, kSample = 2, kMapping = 3, kLocation = 4, kFunction = 5, kStringTable = 6,
    kDropFrames = 7, kKeepFrames = 8, kTimeNanos = 9, kDurationNanos = 10, kPeriodType = 11,
    kPeriod = 12, kComment = 13, kDefaultSampleType = 14,
};
}  // namespace pf
namespace vt { enum : int { kType = 1, kUnit = 2 }; }
namespace sm { enum : int { kLocationId = 1, kValue = 2, kLabel = 3 }; }
namespace lb { enum : int { kKey = 1, kStr = 2, kNum = 3, kNumUnit = 4 }; }
namespace mp {
enum : int {
    kId = 1, kMemoryStart = 2, kMemoryLimit = 3, kFileOffset = 4, kFilename = 5, kBuildId = 6,
    kHasFunctions = 7, kHasFilenames = 8, kHasLineNumbers = 9, kHasInlineFrames = 10,
};
}
namespace lc { enum : int { kId = 1, kMappingId = 2, kAddress = 3, kLine = 4, kIsFolded = 5 }; }
namespace ln { enum : int { kFunctionId = 1, kLine = 2 }; }
namespace fn { enum : int { kId = 1, kName = 2, kSystemName = 3, kFilename = 4, kStartLine = 5 }; }

// ---- encoding -------------------------------------------------------------------------------

class StringTable {
  public:
    StringTable() { index(""); }  // profile.proto: string_table[0] must be ""
    int64_t index(const std::string& s) {
        auto [it, inserted] = ids_.try_emplace(s, static_cast<int64_t>(strings_.size()));
        if (inserted) strings_.push_back(s);
        return it->second;
    }
    const std::vector<std::string>& strings() const { return strings_; }

  private:
    std::unordered_map<std::string, int64_t> ids_;
    std::vector<std::string> strings_;
};

wire::Writer encode_value_type(const ValueType& v, StringTable& st) {
    wire::Writer w;
    w.int_field(vt::kType, st.index(v.type));
    w.int_field(vt::kUnit, st.index(v.unit));
    return w;
}

wire::Writer encode_sample(const Sample& s, StringTable& st) {
    wire::Writer w;
    w.packed_uint(sm::kLocationId, s.location_ids);
    w.packed_int(sm::kValue, s.values);
    for (const Label& l : s.labels) {
        wire::Writer lw;
        lw.int_field(lb::kKey, st.index(l.key));
        if (!l.str.empty()) {
            lw.int_field(lb::kStr, st.index(l.str));
        } else {
            lw.int_field(lb::kNum, l.num);
            if (!l.num_unit.empty()) lw.int_field(lb::kNumUnit, st.index(l.num_unit));
        }
        w.message(sm::kLabel, lw);
    }
    return w;
}

wire::Writer encode_mapping(const Mapping& m, StringTable& st) {
    wire::Writer w;
    w.uint_field(mp::kId, m.id);
    w.uint_field(mp::kMemoryStart, m.memory_start);
    w.uint_field(mp::kMemoryLimit, m.memory_limit);
    w.uint_field(mp::kFileOffset, m.file_offset);
    w.int_field(mp::kFilename, st.index(m.filename));
    w.int_field(mp::kBuildId, st.index(m.build_id));
    w.uint_field(mp::kHasFunctions, m.has_functions);
    w.uint_field(mp::kHasFilenames, m.has_filenames);
    w.uint_field(mp::kHasLineNumbers, m.has_line_numbers);
    w.uint_field(mp::kHasInlineFrames, m.has_inline_frames);
    return w;
}

wire::Writer encode_location(const Location& l) {
    wire::Writer w;
    w.uint_field(lc::kId, l.id);
    w.uint_field(lc::kMappingId, l.mapping_id);
    w.uint_field(lc::kAddress, l.address);
    for (const Line& line : l.lines) {
        wire::Writer lw;
        lw.uint_field(ln::kFunctionId, line.function_id);
        lw.int_field(ln::kLine, line.line);
        w.message(lc::kLine, lw);
    }
    return w;
}

wire::Writer encode_function(const Function& f, StringTable& st) {
    wire::Writer w;
    w.uint_field(fn::kId, f.id);
    w.int_field(fn::kName, st.index(f.name));
    w.int_field(fn::kSystemName, st.index(f.system_name));
    w.int_field(fn::kFilename, st.index(f.filename));
    w.int_field(fn::kStartLine, f.start_line);
    return w;
}

}  // namespace

std::string encode_pprof(const Profile& p) {
    // Strings are interned while the tables are encoded, so the fields that follow the string
    // table in field order (period_type, comments, ...) go to `tail` and are appended after it.
    StringTable st;
    wire::Writer head, tail;
    for (const ValueType& v : p.sample_types) head.message(pf::kSampleType, encode_value_type(v, st));
    for (const Sample& s : p.samples) head.message(pf::kSample, encode_sample(s, st));
    for (const Mapping& m : p.mappings) head.message(pf::kMapping, encode_mapping(m, st));
    for (const Location& l : p.locations) head.message(pf::kLocation, encode_location(l));
    for (const Function& f : p.functions) head.message(pf::kFunction, encode_function(f, st));

    tail.int_field(pf::kTimeNanos, p.time_nanos);
    tail.int_field(pf::kDurationNanos, p.duration_nanos);
    if (!p.period_type.type.empty() || !p.period_type.unit.empty()) {
        tail.message(pf::kPeriodType, encode_value_type(p.period_type, st));
    }
    tail.int_field(pf::kPeriod, p.period);
    std::vector<int64_t> comments;
    for (const std::string& c : p.comments) comments.push_back(st.index(c));
    tail.packed_int(pf::kComment, comments);
    if (!p.default_sample_type.empty()) {
        tail.int_field(pf::kDefaultSampleType, st.index(p.default_sample_type));
    }

    wire::Writer out = std::move(head);
    for (const std::string& s : st.strings()) out.bytes_field(pf::kStringTable, s);
    std::string bytes = out.take();
    bytes += tail.bytes();
    return bytes;
}

Result<std::string> encode_pprof_gzip(const Profile& profile) {
    return gzip_compress(encode_pprof(profile));
}

// ---- decoding -------------------------------------------------------------------------------

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
template <typename F> Result<void> for_fields(std::string_view bytes, const char* message,
                                              F&& on_field) {
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
        case mp::kId: m.id = f.varint; break;
        case mp::kMemoryStart: m.memory_start = f.varint; break;
        case mp::kMemoryLimit: m.memory_limit = f.varint; break;
        case mp::kFileOffset: m.file_offset = f.varint; break;
        case mp::kFilename: filename = f.varint; break;
        case mp::kBuildId: build_id = f.varint; break;
        case mp::kHasFunctions: m.has_functions = f.varint != 0; break;
        case mp::kHasFilenames: m.has_filenames = f.varint != 0; break;
        case mp::kHasLineNumbers: m.has_line_numbers = f.varint != 0; break;
        default: m.has_inline_frames = f.varint != 0; break;
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
        if (f.number >= fn::kName && f.number <= fn::kFilename) idx[f.number - fn::kName] = f.varint;
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
    case pf::kSample: return append_message(f, p.samples, [&](auto b) { return sample(b); });
    case pf::kMapping: return append_message(f, p.mappings, [&](auto b) { return mapping(b); });
    case pf::kLocation: return append_message(f, p.locations, [&](auto b) { return location(b); });
    case pf::kFunction: return append_message(f, p.functions, [&](auto b) { return function(b); });
    case pf::kPeriodType: {
        std::vector<ValueType> one;
        if (auto ok = append_message(f, one, [&](auto b) { return value_type(b); }); !ok) return ok;
        p.period_type = one[0];
        return {};
    }
    case pf::kComment: return wire::append_repeated(f, comments_);
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
    default: return {};  // string_table (read in the first pass) and unknown fields
    }
}

// Ids must be non-zero and unique (profile.proto: "ID 0 is reserved").
template <typename T> Result<void> check_ids(const std::vector<T>& items, const char* what,
                                             std::unordered_set<uint64_t>& ids) {
    for (const T& item : items) {
        if (item.id == 0) return Error{std::string("pprof: ") + what + " with reserved id 0"};
        if (!ids.insert(item.id).second) {
            return Error{std::string("pprof: duplicate ") + what + " id " + std::to_string(item.id)};
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
        if (l.mapping_id != 0 && !mappings.count(l.mapping_id)) {
            return Error{"pprof: location " + std::to_string(l.id) + " refers to missing mapping " +
                         std::to_string(l.mapping_id)};
        }
        for (const Line& line : l.lines) {
            if (!functions.count(line.function_id)) {
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
            if (!locations.count(id)) {
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

// ---- gzip ------------------------------------------------------------------------------------

Result<std::string> gzip_compress(std::string_view raw) {
    z_stream zs{};
    // windowBits 15 + 16: a gzip (RFC 1952) wrapper instead of zlib's, as `go tool pprof` expects.
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        return Error{"deflateInit2: " + std::string(zs.msg ? zs.msg : "failed")};
    }
    std::string out(deflateBound(&zs, raw.size()) + 32, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
    zs.avail_in = static_cast<uInt>(raw.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    int rc = deflate(&zs, Z_FINISH);
    size_t produced = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END || raw.size() > UINT32_MAX) {
        return Error{"deflate of " + std::to_string(raw.size()) + " bytes: error " +
                     std::to_string(rc)};
    }
    out.resize(produced);
    return out;
}

Result<std::string> gzip_decompress(std::string_view gz, size_t max_out) {
    z_stream zs{};
    // windowBits 15 + 32: accept gzip or zlib headers.
    if (inflateInit2(&zs, 15 + 32) != Z_OK) return Error{"inflateInit2 failed"};
    std::string out;
    char chunk[64 * 1024];
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
    zs.avail_in = static_cast<uInt>(std::min<size_t>(gz.size(), UINT32_MAX));
    for (;;) {
        zs.next_out = reinterpret_cast<Bytef*>(chunk);
        zs.avail_out = sizeof chunk;
        int rc = inflate(&zs, Z_NO_FLUSH);
        out.append(chunk, sizeof chunk - zs.avail_out);
        if (out.size() > max_out) {
            inflateEnd(&zs);
            return Error{"gunzip: output exceeds " + std::to_string(max_out) + " bytes"};
        }
        if (rc == Z_STREAM_END) {
            // Concatenated gzip members (RFC 1952 2.2) continue after the first one.
            if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b &&
                inflateReset(&zs) == Z_OK) {
                continue;
            }
            break;
        }
        // Each round offers fresh output space, so Z_BUF_ERROR means the input ran out.
        if (rc != Z_OK) {
            std::string msg = rc == Z_BUF_ERROR ? "truncated input"
                              : zs.msg          ? zs.msg
                                                : "error " + std::to_string(rc);
            inflateEnd(&zs);
            return Error{"gunzip: " + msg};
        }
    }
    inflateEnd(&zs);
    return out;
}

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
