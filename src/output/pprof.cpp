// profile.proto encoder and gzip (the decoder is in src/output/pprof_decode.cpp). The invariants
// google/pprof's CheckValid() relies on are kept: string table starting with "", ids never 0,
// sample locations leaf first as the model stores them, inline frames as several Lines.
#include "pmprof/output/pprof.h"

#include <zlib.h>

#include <unordered_map>

#include "output/pprof_proto.h"
#include "output/protobuf_wire.h"

namespace pmprof {
namespace {

using namespace profile_proto;

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
    for (const ValueType& v : p.sample_types)
        head.message(pf::kSampleType, encode_value_type(v, st));
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

}  // namespace pmprof
