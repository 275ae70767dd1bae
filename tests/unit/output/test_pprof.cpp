// profile.proto encoder/decoder: round trips, the wire layout CheckValid relies on, golden
// bytes, and garbage that must give an Error and never a crash.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>
#include <sstream>

#include "output/protobuf_wire.h"
#include "pmprof/output/pprof.h"

using namespace pmprof;

namespace {

// Two sample types, an inline chain, a pc without symbol, a pseudo frame without mapping,
// string and numeric labels, and every scalar field set.
Profile sample_profile() {
    Profile p;
    p.sample_types = {{"samples", "count"}, {"cpu", "nanoseconds"}};
    p.default_sample_type = "cpu";
    p.period_type = {"cpu", "nanoseconds"};
    p.period = 10000000;
    p.time_nanos = 1700000000123456789;
    p.duration_nanos = 2500000000;
    p.comments = {"pmprof test", "second comment"};
    p.mappings = {
        {1, 0x400000, 0x402000, 0, "/usr/bin/app", "abcdef0123", true, true, true, true},
        {2, 0x7f0000000000, 0x7f0000100000, 0x28000, "/lib/libc.so.6", "", false, false, false,
         false},
    };
    p.functions = {
        {1, "inner_inlined", "_Z13inner_inlinedv", "app.cpp", 10},
        {2, "outer(int)", "_Z5outeri", "app.cpp", 20},
        {3, "main", "main", "app.cpp", 30},
        {4, "libc.so.6+0x1234", "libc.so.6+0x1234", "", 0},
        {5, "[truncated]", "[truncated]", "", 0},
    };
    p.locations = {
        {1, 1, 0x401010, {{1, 11}, {2, 25}}},  // inner_inlined inlined into outer
        {2, 1, 0x401100, {{3, 33}}},
        {3, 2, 0x7f0000001234, {{4, 0}}},
        {4, 0, 0, {{5, 0}}},
    };
    p.samples = {
        {{1, 2}, {3, 30000000}, {{"thread_name", "worker", 0, ""}, {"tid", "", 42, ""}}},
        {{3, 1, 2}, {1, 10000000}, {{"bytes", "", -5, "bytes"}}},
        {{2, 4}, {2, 20000000}, {}},
        {{}, {0, 0}, {}},
    };
    return p;
}

std::string golden_path(const std::string& name) {
    std::string here = __FILE__;
    return here.substr(0, here.rfind('/')) + "/../../golden/" + name;
}

std::string to_hex(const std::string& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < bytes.size(); ++i) {
        auto b = static_cast<uint8_t>(bytes[i]);
        out += digits[b >> 4];
        out += digits[b & 15];
        out += (i % 32 == 31) ? '\n' : ' ';
    }
    if (!out.empty() && out.back() == ' ') out.back() = '\n';
    return out;
}

// Every id a decoded profile refers to must resolve; writers rely on it.
void require_consistent(const Profile& p) {
    for (const Sample& s : p.samples) {
        REQUIRE(s.values.size() == p.sample_types.size());
        for (uint64_t id : s.location_ids) REQUIRE(p.location(id) != nullptr);
    }
    for (const Location& l : p.locations) {
        if (l.mapping_id != 0) REQUIRE(p.mapping(l.mapping_id) != nullptr);
        for (const Line& line : l.lines) REQUIRE(p.function(line.function_id) != nullptr);
    }
}

}  // namespace

TEST_CASE("pprof round trip keeps every field", "[unit][pprof]") {
    const Profile p = sample_profile();
    const std::string bytes = encode_pprof(p);
    auto d = decode_pprof(bytes);
    REQUIRE(d.ok());
    CHECK(d->sample_types == p.sample_types);
    CHECK(d->default_sample_type == "cpu");
    CHECK(d->period_type == p.period_type);
    CHECK(d->period == p.period);
    CHECK(d->time_nanos == p.time_nanos);
    CHECK(d->duration_nanos == p.duration_nanos);
    CHECK(d->comments == p.comments);
    REQUIRE(d->mappings.size() == 2);
    CHECK(d->mappings[0].memory_start == 0x400000);
    CHECK(d->mappings[0].memory_limit == 0x402000);
    CHECK(d->mappings[0].build_id == "abcdef0123");
    CHECK(d->mappings[0].has_inline_frames);
    CHECK(d->mappings[1].file_offset == 0x28000);
    CHECK_FALSE(d->mappings[1].has_functions);
    REQUIRE(d->functions.size() == 5);
    CHECK(d->functions[1].name == "outer(int)");
    CHECK(d->functions[1].system_name == "_Z5outeri");
    CHECK(d->functions[1].start_line == 20);
    REQUIRE(d->locations.size() == 4);
    REQUIRE(d->locations[0].lines.size() == 2);
    CHECK(d->locations[0].lines[0].function_id == 1);
    CHECK(d->locations[0].lines[1].line == 25);
    CHECK(d->locations[3].mapping_id == 0);
    REQUIRE(d->samples.size() == 4);
    CHECK(d->samples[1].location_ids == std::vector<uint64_t>{3, 1, 2});
    CHECK(d->samples[0].labels == p.samples[0].labels);
    CHECK(d->samples[1].labels[0].num == -5);
    CHECK(d->samples[1].labels[0].num_unit == "bytes");
    CHECK(d->samples[3].values == std::vector<int64_t>{0, 0});
    // Encoding what was decoded gives the same bytes: nothing was lost or reordered.
    CHECK(encode_pprof(*d) == bytes);
}

TEST_CASE("pprof wire layout: string table starts with empty string, packed fields",
          "[unit][pprof]") {
    const std::string bytes = encode_pprof(sample_profile());
    wire::Reader r(bytes);
    std::vector<std::string> strings;
    int samples = 0;
    while (!r.done()) {
        auto f = r.next();
        REQUIRE(f.ok());
        if (f->number == 6) strings.emplace_back(f->bytes);
        if (f->number == 2) {
            ++samples;
            wire::Reader s(f->bytes);
            auto first = s.next();
            if (samples == 1) {
                REQUIRE(first.ok());
                CHECK(first->number == 1);
                CHECK(first->type == wire::kLengthDelimited);  // packed location ids
            }
        }
    }
    REQUIRE_FALSE(strings.empty());
    CHECK(strings[0].empty());
    CHECK(samples == 4);
    // Each string appears once.
    std::vector<std::string> sorted = strings;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
}

TEST_CASE("pprof gzip round trip and gzip detection", "[unit][pprof]") {
    const Profile p = sample_profile();
    auto gz = encode_pprof_gzip(p);
    REQUIRE(gz.ok());
    REQUIRE(gz->size() > 10);
    CHECK(static_cast<uint8_t>((*gz)[0]) == 0x1f);
    CHECK(static_cast<uint8_t>((*gz)[1]) == 0x8b);
    auto raw = gzip_decompress(*gz);
    REQUIRE(raw.ok());
    CHECK(*raw == encode_pprof(p));
    auto d = decode_pprof(*gz);
    REQUIRE(d.ok());
    CHECK(encode_pprof(*d) == *raw);
    // Two concatenated gzip members read as one stream (RFC 1952 2.2).
    auto a = gzip_compress("hello ");
    auto b = gzip_compress("world");
    REQUIRE((a.ok() && b.ok()));
    auto joined = gzip_decompress(*a + *b);
    REQUIRE(joined.ok());
    CHECK(*joined == "hello world");
}

TEST_CASE("pprof gunzip limits its output", "[unit][pprof]") {
    auto gz = gzip_compress(std::string(1 << 20, 'x'));
    REQUIRE(gz.ok());
    auto out = gzip_decompress(*gz, 1000);
    REQUIRE_FALSE(out.ok());
    CHECK(out.error().message.find("exceeds 1000 bytes") != std::string::npos);
    auto truncated = gzip_decompress(gz->substr(0, gz->size() / 2));
    REQUIRE_FALSE(truncated.ok());
    CHECK(truncated.error().message.find("gunzip") != std::string::npos);
}

TEST_CASE("pprof golden bytes for a small profile", "[unit][pprof]") {
    const std::string hex = to_hex(encode_pprof(sample_profile()));
    const std::string path = golden_path("sample_profile.pb.hex");
    if (getenv("PMPROF_UPDATE_GOLDEN") != nullptr) std::ofstream(path) << hex;
    std::ifstream in(path);
    INFO("golden file " << path << " (regenerate with PMPROF_UPDATE_GOLDEN=1)");
    REQUIRE(in.good());
    std::stringstream want;
    want << in.rdbuf();
    CHECK(hex == want.str());
}

TEST_CASE("pprof decoder accepts unpacked repeated fields", "[unit][pprof]") {
    wire::Writer sample;
    sample.uint_field(1, 1);  // location_id, unpacked
    sample.uint_field(2, 7);  // value, unpacked
    wire::Writer loc;
    loc.uint_field(1, 1);
    wire::Writer vt;
    vt.uint_field(1, 1);
    vt.uint_field(2, 2);
    wire::Writer p;
    p.message(1, vt);
    p.message(2, sample);
    p.message(4, loc);
    p.bytes_field(6, "");
    p.bytes_field(6, "samples");
    p.bytes_field(6, "count");
    auto d = decode_pprof(p.bytes());
    REQUIRE(d.ok());
    REQUIRE(d->samples.size() == 1);
    CHECK(d->samples[0].location_ids == std::vector<uint64_t>{1});
    CHECK(d->samples[0].values == std::vector<int64_t>{7});
    CHECK(d->sample_types[0] == ValueType{"samples", "count"});
}

TEST_CASE("pprof decoder rejects broken references and bad string indices", "[unit][pprof]") {
    auto expect_error = [](Profile p, const std::string& what) {
        auto d = decode_pprof(encode_pprof(p));
        REQUIRE_FALSE(d.ok());
        INFO(d.error().message);
        CHECK(d.error().message.find(what) != std::string::npos);
        CHECK(d.error().message.find('\n') == std::string::npos);
    };
    Profile p = sample_profile();
    p.locations[0].lines[0].function_id = 99;
    expect_error(p, "missing function 99");
    p = sample_profile();
    p.samples[0].location_ids.push_back(77);
    expect_error(p, "missing location 77");
    p = sample_profile();
    p.locations[1].mapping_id = 9;
    expect_error(p, "missing mapping 9");
    p = sample_profile();
    p.functions[2].id = 1;
    expect_error(p, "duplicate function id 1");
    p = sample_profile();
    p.mappings[0].id = 0;
    expect_error(p, "reserved id 0");
    p = sample_profile();
    p.samples[0].values.pop_back();
    expect_error(p, "has 1 values for 2 sample types");

    wire::Writer w;  // a function whose name index is past the string table
    wire::Writer f;
    f.uint_field(1, 1);
    f.uint_field(2, 5);
    w.message(5, f);
    w.bytes_field(6, "");
    auto d = decode_pprof(w.bytes());
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().message.find("string index 5 out of range") != std::string::npos);

    wire::Writer nonempty;
    nonempty.bytes_field(6, "x");
    CHECK_FALSE(decode_pprof(nonempty.bytes()).ok());
}

TEST_CASE("pprof decoder survives garbage, truncation and bit flips", "[unit][pprof]") {
    CHECK_FALSE(decode_pprof("").ok());
    CHECK(decode_pprof("").error().message == "pprof: empty input");
    CHECK_FALSE(decode_pprof("\x1f\x8b garbage that is no gzip").ok());
    CHECK_FALSE(decode_pprof(std::string("\x0a\xff\xff\xff\xff\x0f", 6)).ok());  // huge length
    CHECK_FALSE(decode_pprof(std::string(11, '\xff')).ok());                     // endless varint
    CHECK_FALSE(decode_pprof(std::string("\x0b", 1)).ok());                      // group start
    CHECK_FALSE(decode_pprof(std::string("\x00\x00", 2)).ok());                  // field 0

    const std::string good = encode_pprof(sample_profile());
    size_t truncated_errors = 0;
    for (size_t n = 1; n < good.size(); ++n) {
        auto d = decode_pprof(good.substr(0, n));
        if (!d.ok()) {
            ++truncated_errors;
            CHECK_FALSE(d.error().message.empty());
        } else {
            require_consistent(*d);
        }
    }
    CHECK(truncated_errors > good.size() / 2);

    std::mt19937 rng(12345);
    for (int i = 0; i < 3000; ++i) {
        std::string bytes = good;
        for (int flips = 1 + static_cast<int>(rng() % 4); flips > 0; --flips) {
            bytes[rng() % bytes.size()] ^= static_cast<char>(1 << (rng() % 8));
        }
        auto d = decode_pprof(bytes);
        if (d.ok()) require_consistent(*d);
    }
    for (int i = 0; i < 2000; ++i) {
        std::string bytes(1 + rng() % 64, '\0');
        for (char& c : bytes) c = static_cast<char>(rng());
        auto d = decode_pprof(bytes);
        if (d.ok()) require_consistent(*d);
    }
    auto gz = encode_pprof_gzip(sample_profile());
    REQUIRE(gz.ok());
    for (size_t n = 2; n < gz->size(); n += 7) CHECK_FALSE(decode_pprof(gz->substr(0, n)).ok());
}
