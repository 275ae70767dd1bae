// `pmprof serve`: validation of what a client or the command line can send (listen address,
// query parameters, symbol requests, the bearer token). Pure functions, so every bad input has a
// unit test; nothing here touches the target.
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "pmprof/http/http.h"

namespace pmprof {
namespace {

using Params = std::multimap<std::string, std::string>;

/// The first value of `name` (Go's Request.FormValue takes the first), or nullptr.
const std::string* first_value(const Params& params, const std::string& name) {
    auto it = params.find(name);
    return it == params.end() ? nullptr : &it->second;
}

bool all_digits(std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

/// A bounded non-negative integer made of digits only; nullopt-like -1 when invalid.
long parse_small_int(std::string_view s, long max) {
    if (!all_digits(s) || s.size() > 9) return -1;
    long v = std::strtol(std::string(s).c_str(), nullptr, 10);
    return v <= max ? v : -1;
}

Result<std::vector<uint64_t>> too_many(size_t max) {
    return Error{fmt::format("too many addresses (at most {} per request)", max)};
}

/// strconv.ParseUint(s, 0, 64): "0x"/"0X" hex, "0o"/"0" octal, "0b" binary, else decimal; '_'
/// separators are not accepted here (pprof never sends them). 0 when invalid.
uint64_t parse_go_uint(std::string_view s) {
    int base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s.remove_prefix(2);
    } else if (s.size() > 2 && s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) {
        base = 2;
        s.remove_prefix(2);
    } else if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
        base = 8;
        s.remove_prefix(2);
    } else if (s.size() > 1 && s[0] == '0') {
        base = 8;
        s.remove_prefix(1);
    }
    if (s.empty() || s.size() > 64) return 0;
    std::string text(s);
    errno = 0;
    char* end = nullptr;
    unsigned long long v = std::strtoull(text.c_str(), &end, base);
    if (errno != 0 || end != text.c_str() + text.size() || text[0] == '-' || text[0] == '+')
        return 0;
    return v;
}

}  // namespace

Result<ListenAddress> parse_listen_address(std::string_view text) {
    const std::string shown(text);
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
        return Error{"'" + shown + "' is not HOST:PORT (examples: 127.0.0.1:6060, [::1]:6060)"};
    std::string_view host = text.substr(0, colon);
    const std::string_view port_text = text.substr(colon + 1);
    const long port = parse_small_int(port_text, 65535);
    if (port < 0) return Error{"'" + shown + "': the port must be a number from 0 to 65535"};
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string_view::npos) {
        return Error{"'" + shown + "': write an IPv6 address in brackets, as in [::1]:6060"};
    }
    ListenAddress out;
    // ":6060" means every interface, as in Go's http.ListenAndServe.
    out.host = host.empty() ? "0.0.0.0" : std::string(host);
    out.port = static_cast<int>(port);
    return out;
}

bool is_loopback_host(const std::string& host) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* list = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &list) != 0 || list == nullptr) return false;
    bool all_loopback = true;
    for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            sockaddr_in sin{};
            std::memcpy(&sin, ai->ai_addr, sizeof sin);
            all_loopback = all_loopback && (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
        } else if (ai->ai_family == AF_INET6) {
            sockaddr_in6 sin6{};
            std::memcpy(&sin6, ai->ai_addr, sizeof sin6);
            all_loopback = all_loopback && IN6_IS_ADDR_LOOPBACK(&sin6.sin6_addr);
        } else {
            all_loopback = false;
        }
    }
    ::freeaddrinfo(list);
    return all_loopback;
}

Result<ProfileRequest> parse_profile_request(const Params& params, int max_seconds) {
    ProfileRequest req;
    if (const std::string* s = first_value(params, "seconds")) {
        const long v = parse_small_int(*s, max_seconds);
        if (v < 1)
            return Error{fmt::format("bad seconds '{}': an integer from 1 to {} is required", *s,
                                     max_seconds)};
        req.seconds = static_cast<int>(v);
    }
    if (const std::string* r = first_value(params, "rate")) {
        errno = 0;
        char* end = nullptr;
        const double v = std::strtod(r->c_str(), &end);
        if (r->empty() || end != r->c_str() + r->size() || errno != 0 || !std::isfinite(v) ||
            v < kServeMinRate || v > kServeMaxRate)
            return Error{fmt::format("bad rate '{}': samples per second from {} to {} are allowed",
                                     *r, kServeMinRate, kServeMaxRate)};
        req.rate_hz = v;
    }
    if (const std::string* o = first_value(params, "max_overhead")) {
        errno = 0;
        char* end = nullptr;
        const double v = std::strtod(o->c_str(), &end);
        if (o->empty() || end != o->c_str() + o->size() || errno != 0 || !std::isfinite(v) ||
            v < 0.1 || v > 100)
            return Error{fmt::format("bad max_overhead '{}': a percentage from 0.1 to 100 (no "
                                     "limit) of the target's cpu time is required",
                                     *o)};
        req.max_overhead_pct = v;
    }
    if (const std::string* m = first_value(params, "mode")) {
        auto mode = parse_sample_mode(*m);
        if (!mode.ok()) return Error{fmt::format("bad mode '{}': use mode=cpu or mode=wall", *m)};
        req.mode = *mode;
    }
    return req;
}

Result<int> parse_debug_level(const Params& params) {
    const std::string* d = first_value(params, "debug");
    if (d == nullptr) return 0;
    const long v = parse_small_int(*d, 1000);
    if (v < 0) return Error{fmt::format("bad debug '{}': use debug=0, 1 or 2", *d)};
    return static_cast<int>(v);
}

Result<std::vector<uint64_t>> parse_symbol_addresses(std::string_view text, size_t max) {
    std::vector<uint64_t> out;
    while (!text.empty()) {
        const size_t plus = text.find('+');
        std::string_view word = text.substr(0, plus);
        // Go reads the POST body with ReadSlice('+'): a trailing newline belongs to the last word.
        while (!word.empty() && (word.back() == '\n' || word.back() == '\r')) word.remove_suffix(1);
        if (const uint64_t pc = parse_go_uint(word); pc != 0) {
            if (out.size() == max) return too_many(max);
            out.push_back(pc);
        }
        if (plus == std::string_view::npos) break;
        text.remove_prefix(plus + 1);
    }
    return out;
}

bool bearer_token_matches(std::string_view header, std::string_view token) {
    constexpr std::string_view kScheme = "Bearer ";
    if (token.empty()) return true;
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    if (header.size() < kScheme.size() ||
        ::strncasecmp(header.data(), kScheme.data(), kScheme.size()) != 0)
        return false;
    header.remove_prefix(kScheme.size());
    // Compare every byte whatever differs first, so the time taken does not reveal a prefix.
    unsigned diff = header.size() == token.size() ? 0u : 1u;
    for (size_t i = 0; i < token.size(); ++i) {
        const char c = i < header.size() ? header[i] : '\0';
        diff |= static_cast<unsigned>(static_cast<unsigned char>(c) ^
                                      static_cast<unsigned char>(token[i]));
    }
    return diff == 0;
}

}  // namespace pmprof
