// `pmprof serve`: Go's /debug/pprof endpoints (net/http/pprof paths, parameters and replies) for
// one fixed process, on cpp-httplib.
//
// Contract: the pid is fixed at start and pinned (pidfd + start time), so no request can name
// another process or a file. The target is traced only while a request works on it; every ptrace
// call runs on one tracer thread (docs/design.md §2: a tracee belongs to the thread that seized it)
// and HTTP threads hand it jobs. At most one profile runs at a time (409 for a second one); a
// client that disconnects cancels its job. Limits are checked before anything touches the target.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "pmprof/sampler/sampler.h"
#include "pmprof/support/error.h"
#include "pmprof/unwind/unwind.h"

namespace pmprof {

/// Documented bounds of /debug/pprof/profile (pmprof(1), README).
inline constexpr int kServeDefaultSeconds = 30;     // Go's default for /debug/pprof/profile
inline constexpr int kServeMaxSecondsLimit = 3600;  // the largest --max-seconds accepted
inline constexpr double kServeMinRate = 1;
inline constexpr double kServeMaxRate = 1000;
inline constexpr size_t kServeMaxSymbolAddresses = 50000;  // per /debug/pprof/symbol request

/// A parsed --listen value.
struct ListenAddress {
    std::string host;  // without IPv6 brackets: "127.0.0.1", "::1", "0.0.0.0", "localhost"
    int port = 0;      // 0: any free port (the one chosen is reported when listening)
};

/// "HOST:PORT", "[V6]:PORT" or ":PORT" (all interfaces, as in Go); the Error says what is wrong.
Result<ListenAddress> parse_listen_address(std::string_view text);
/// True when every address `host` resolves to is a loopback address (127/8, ::1).
bool is_loopback_host(const std::string& host);

/// What a /debug/pprof/profile request asks for, after validation.
struct ProfileRequest {
    int seconds = kServeDefaultSeconds;
    double rate_hz = 99;
    SampleMode mode = SampleMode::Cpu;  // Go's /profile is a cpu profile
    double max_overhead_pct = 5;        // heap/allocs?seconds=N: heap --sites' --max-overhead
};

/// Validates the query parameters of /debug/pprof/profile (seconds, rate, mode; others are
/// ignored as Go does) and of heap/allocs?seconds=N (max_overhead=PCT, 0.1 to 100). The Error
/// message is the 400 reason sent to the client.
Result<ProfileRequest> parse_profile_request(const std::multimap<std::string, std::string>& params,
                                             int max_seconds);
/// Parses ?debug=N (absent: 0); the Error is the 400 reason.
Result<int> parse_debug_level(const std::multimap<std::string, std::string>& params);
/// Addresses of a symbol request: "0x1+0x2+..." (Go's symbol handler: '+'-separated, base
/// prefix as strconv.ParseUint(s, 0, 64), zeros and garbage skipped). At most `max` addresses.
Result<std::vector<uint64_t>> parse_symbol_addresses(std::string_view text, size_t max);
/// Constant-time comparison of an Authorization header with "Bearer <token>".
bool bearer_token_matches(std::string_view authorization_header, std::string_view token);

struct ServeOptions {
    pid_t pid = 0;
    ListenAddress listen{"127.0.0.1", 6060};
    std::string token;  // empty: no Authorization required
    int max_seconds = 300;
    UnwinderKind unwinder = UnwinderKind::Dwfl;
    double max_pause_fraction = 0.05;
    CpuBackend backend = CpuBackend::Auto;  // cpu-mode profiles: as attach's --backend
    /// Called once the socket is bound, with the URL of the index (the real port when 0 was
    /// asked for); `pmprof serve` prints it.
    std::function<void(const std::string& url)> on_listening;
};

/// Serves until SIGINT, SIGTERM or SIGHUP. Must be called before any other thread of pmprof
/// exists: it blocks those signals in every thread and waits for them on its own thread. A
/// profile running then is cancelled and the target detached before it returns. The Error says
/// why the server could not start (the port is in use, the target cannot be pinned).
Result<void> serve_pprof(const ServeOptions& opt);

}  // namespace pmprof
