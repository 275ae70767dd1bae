// The clocks pmprof reads, in one integer type: signed 64-bit nanoseconds, the type of
// std::chrono's durations and of profile.proto's time_nanos, so differences may be negative and
// need no casts. CLOCK_MONOTONIC (what std::chrono::steady_clock reads on Linux) measures pauses,
// windows and intervals; CLOCK_REALTIME only stamps when a profile, dump or snapshot was taken.
#pragma once

#include <sys/time.h>
#include <time.h>

#include <cstdint>

namespace pmprof {

inline constexpr int64_t kNsPerSec = 1'000'000'000;

inline int64_t timespec_ns(const timespec& ts) {
    return int64_t{ts.tv_sec} * kNsPerSec + int64_t{ts.tv_nsec};
}

/// Nanoseconds on CLOCK_MONOTONIC: the clock of every duration and deadline.
inline int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return timespec_ns(ts);
}

/// Nanoseconds since the epoch on CLOCK_REALTIME: when something was taken, never a duration.
inline int64_t realtime_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return timespec_ns(ts);
}

/// A struct timeval (getrusage's cpu times) in nanoseconds.
inline int64_t timeval_ns(const timeval& tv) {
    return int64_t{tv.tv_sec} * kNsPerSec + int64_t{tv.tv_usec} * 1000;
}

}  // namespace pmprof
