// `pmprof serve` input validation (include/pmprof/http/http.h): every value a client or the command
// line can send that must be refused, and the ones that must be accepted.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "pmprof/http/http.h"

using namespace pmprof;

namespace {

using Params = std::multimap<std::string, std::string>;

std::string profile_error(const Params& p) {
    auto r = parse_profile_request(p, 300);
    return r.ok() ? "" : r.error().message;
}

}  // namespace

TEST_CASE("listen addresses: host and port, IPv6 in brackets, ':PORT' is every interface",
          "[unit][serve]") {
    auto a = parse_listen_address("127.0.0.1:6060");
    REQUIRE(a.ok());
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 6060);
    auto v6 = parse_listen_address("[::1]:0");
    REQUIRE(v6.ok());
    CHECK(v6->host == "::1");
    CHECK(v6->port == 0);
    auto any = parse_listen_address(":7070");
    REQUIRE(any.ok());
    CHECK(any->host == "0.0.0.0");
    for (const char* bad : {"6060", "localhost:", "localhost:65536", "h:-1", "::1:6060", "h:6o"}) {
        INFO(bad);
        CHECK_FALSE(parse_listen_address(bad).ok());
    }
}

TEST_CASE("loopback detection: 127/8, ::1 and localhost only", "[unit][serve]") {
    CHECK(is_loopback_host("127.0.0.1"));
    CHECK(is_loopback_host("127.1.2.3"));
    CHECK(is_loopback_host("::1"));
    CHECK(is_loopback_host("localhost"));
    CHECK_FALSE(is_loopback_host("0.0.0.0"));
    CHECK_FALSE(is_loopback_host("::"));
    CHECK_FALSE(is_loopback_host("10.1.2.3"));
    CHECK_FALSE(is_loopback_host("no such host.invalid"));
}

TEST_CASE("profile parameters: defaults, bounds, and the reason for every refusal",
          "[unit][serve]") {
    auto d = parse_profile_request({}, 300);
    REQUIRE(d.ok());
    CHECK(d->seconds == kServeDefaultSeconds);
    CHECK(d->mode == SampleMode::Cpu);
    CHECK(d->rate_hz == 99);

    auto ok = parse_profile_request(
        {{"seconds", "300"}, {"rate", "250.5"}, {"mode", "wall"}, {"unknown", "ignored"}}, 300);
    REQUIRE(ok.ok());
    CHECK(ok->seconds == 300);
    CHECK(ok->rate_hz == 250.5);
    CHECK(ok->mode == SampleMode::Wall);

    CHECK(profile_error({{"seconds", "301"}}).find("from 1 to 300") != std::string::npos);
    for (const char* s : {"0", "-1", "abc", "1.5", "", "99999999999999", " 5"})
        CHECK(profile_error({{"seconds", s}}).find("bad seconds") == 0);
    for (const char* r : {"0", "0.5", "1001", "nan", "inf", "1e9", "x", ""})
        CHECK(profile_error({{"rate", r}}).find("bad rate") == 0);
    CHECK(profile_error({{"mode", "heap"}}) == "bad mode 'heap': use mode=cpu or mode=wall");
    // Go's FormValue takes the first of repeated parameters.
    auto first = parse_profile_request({{"seconds", "2"}, {"seconds", "9999"}}, 300);
    REQUIRE(first.ok());
    CHECK(first->seconds == 2);
}

TEST_CASE("debug levels: digits only", "[unit][serve]") {
    CHECK(*parse_debug_level({}) == 0);
    CHECK(*parse_debug_level({{"debug", "2"}}) == 2);
    CHECK_FALSE(parse_debug_level({{"debug", "-1"}}).ok());
    CHECK_FALSE(parse_debug_level({{"debug", "one"}}).ok());
}

TEST_CASE("symbol addresses are read like Go's symbol handler", "[unit][serve]") {
    auto pcs = parse_symbol_addresses("0x401000+0X10+4096+0+garbage+010+0b11\n", 100);
    REQUIRE(pcs.ok());
    CHECK(*pcs == std::vector<uint64_t>{0x401000, 0x10, 4096, 8, 3});
    CHECK(parse_symbol_addresses("", 10)->empty());
    CHECK(parse_symbol_addresses("0xffffffffffffffffff", 10)->empty());  // overflow: skipped
    auto many = parse_symbol_addresses("0x1+0x2+0x3", 2);
    REQUIRE_FALSE(many.ok());
    CHECK(many.error().message.find("too many") != std::string::npos);
}

TEST_CASE("bearer tokens: exact match, scheme case-insensitive", "[unit][serve]") {
    CHECK(bearer_token_matches("Bearer s3cret", "s3cret"));
    CHECK(bearer_token_matches("bearer s3cret", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Bearer s3cre", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Bearer s3cretX", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Basic s3cret", "s3cret"));
    CHECK_FALSE(bearer_token_matches("", "s3cret"));
    CHECK(bearer_token_matches("", ""));  // no token configured: nothing required
}
