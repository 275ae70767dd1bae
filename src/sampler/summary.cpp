// The end of a sampler run shared by both backends: the profile's last touches and the run's
// statistics as profile comments, so they travel with the file: short by default, every figure
// with -v (the text the user sees is src/output/summary.cpp).
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "pmprof/sampler/sampler.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

std::string us(uint64_t ns) { return fmt::format("{:.0f} us", static_cast<double>(ns) / 1e3); }

const char* mode_name(SampleMode m) { return m == SampleMode::Cpu ? "cpu" : "wall"; }

}  // namespace

std::string backend_line(const SamplerStats& s) {
    std::string line = fmt::format("pmprof backend: {}", s.backend);
    if (!s.backend_reason.empty()) line += " (" + s.backend_reason + ")";
    if (s.backend == "perf") {
        line += fmt::format("; no thread stopped; {} samples lost, {} throttled, {} without user "
                            "registers",
                            s.perf_lost, s.perf_throttled, s.perf_no_user);
    } else if (s.mode == SampleMode::Cpu) {
        const uint64_t runnable = s.threads_run_ns + s.threads_wait_ns;
        line += fmt::format("; {} looks found a thread off cpu (blocked, or waiting for a cpu at "
                            "a syscall return): no cpu weight; {} found it where pmprof had "
                            "taken its cpu: sampled; run-queue wait {:.1f}% "
                            "of runnable time (bounds the share of samples at a wake-up point)",
                            s.not_on_cpu, s.displaced_by_tracer,
                            runnable ? 100.0 * static_cast<double>(s.threads_wait_ns) /
                                           static_cast<double>(runnable)
                                     : 0.0);
    }
    return line;
}

void finish_sampler_profile(SamplerResult& r, const std::vector<Profile>& before_exec,
                            const std::string& sample_type, int64_t start_realtime_ns,
                            const std::string& command_line) {
    if (!before_exec.empty()) {
        const std::string main_file =
            r.profile.mappings.empty() ? std::string() : r.profile.mappings.front().filename;
        std::vector<std::pair<const Profile*, int>> parts;
        parts.reserve(before_exec.size() + 1);
        for (const Profile& p : before_exec) parts.emplace_back(&p, 1);
        parts.emplace_back(&r.profile, 1);
        r.profile = merge_profiles(parts);
        auto& maps = r.profile.mappings;
        auto main = std::find_if(maps.begin(), maps.end(),
                                 [&](const Mapping& m) { return m.filename == main_file; });
        if (main != maps.end()) std::rotate(maps.begin(), main, main + 1);
    }
    r.profile.default_sample_type = sample_type;
    r.profile.time_nanos = start_realtime_ns;
    r.profile.duration_nanos = static_cast<int64_t>(r.stats.wall_ns);
    if (!command_line.empty()) r.profile.comments.push_back(command_line);
    for (std::string& c : format_sampler_comments(r)) r.profile.comments.push_back(std::move(c));
}

std::vector<std::string> format_sampler_comments(const SamplerResult& r) {
    const SamplerStats& s = r.stats;
    std::vector<std::string> out;
    // `go tool pprof` prints every comment in every report's header: by default one short line
    // of statistics and one naming the backend; the full figures with -v.
    const bool detailed = log_level() >= LogLevel::Info;
    if (!detailed) {
        out.push_back(fmt::format(
            "pmprof sampler: {} mode, {:.1f} Hz ({:.0f} requested{}), {} samples, {} threads, {}; "
            "{}",
            mode_name(s.mode), s.effective_rate_hz, s.requested_rate_hz,
            s.rate_lowered ? ", lowered by the pause budget" : "", s.samples, s.threads_seen,
            s.stops == 0 ? std::string("no thread stopped")
                         : fmt::format("{} stops, pause p99 {}", s.stops, us(s.pause_p99_ns)),
            r.end_message));
        out.push_back(fmt::format("pmprof backend: {}{}", s.backend,
                                  s.backend_reason.empty() ? "" : " (" + s.backend_reason + ")"));
    } else {
        out.push_back(fmt::format(
            "pmprof sampler: mode {}, rate {:.0f} Hz requested, {:.1f} Hz effective{}, {} ticks, "
            "{} samples, {} threads, {} stops, {} stops avoided ({} reused, {} fast path), "
            "{} capture failures, {} unwind failures, {} module reloads, pause median {} p99 {} "
            "max {}, stop latency median {} p99 {}, pmprof cpu {:.3f} s; {}",
            mode_name(s.mode), s.requested_rate_hz, s.effective_rate_hz,
            s.rate_lowered ? " (lowered by the pause budget)" : "", s.ticks, s.samples,
            s.threads_seen, s.stops, s.stops_avoided, s.reused, s.fast_path, s.capture_failures,
            s.unwind_failures, s.image_reloads, us(s.pause_median_ns), us(s.pause_p99_ns),
            us(s.pause_max_ns), us(s.stop_wait_median_ns), us(s.stop_wait_p99_ns),
            static_cast<double>(s.cpu_user_ns + s.cpu_system_ns) / 1e9, r.end_message));
        out.push_back(backend_line(s));
    }
    if (s.ticks_late > 0)
        out.push_back(fmt::format("pmprof sampler: {} of {} ticks took longer than the interval "
                                  "(a tick's work: mean {}, max {})",
                                  s.ticks_late, s.ticks, us(s.tick_mean_ns), us(s.tick_max_ns)));
    if (s.processes > 1 || s.processes_missed > 0)
        out.push_back(fmt::format("pmprof: {} processes sampled, each sample labelled with its pid "
                                  "and comm{}",
                                  s.processes,
                                  s.processes_missed ? fmt::format("; {} child processes could "
                                                                   "not be sampled (gone first, "
                                                                   "or not allowed)",
                                                                   s.processes_missed)
                                                     : std::string()));
    if (s.execs > 0)
        out.push_back(fmt::format("pmprof: {} execve followed: the samples of each program carry "
                                  "its own symbols",
                                  s.execs));
    if (detailed && s.unwinds > 0)
        out.push_back(
            fmt::format("pmprof unwinder: {} stacks unwound, {} with cached CFI rules, {} "
                        "by libdwfl's walk",
                        s.unwinds, s.unwinds_cached, s.unwinds - s.unwinds_cached));
    if (s.eintr_stops > 0) {
        std::string eintr = fmt::format(
            "pmprof: {} stops made a blocked call fail with EINTR, in {} threads (tid:stops):",
            s.eintr_stops, s.eintr_per_thread.size());
        for (const auto& [tid, n] : s.eintr_per_thread) eintr += fmt::format(" {}:{}", tid, n);
        out.push_back(std::move(eintr));
    }
    for (const std::string& u : s.unstoppable) out.push_back("pmprof: " + u);
    if (!detailed) return out;
    std::string stops = "pmprof stops per thread (tid:stops):";
    for (const auto& [tid, n] : s.stops_per_thread) stops += fmt::format(" {}:{}", tid, n);
    if (s.stops_per_thread_omitted)
        stops += fmt::format(" (and {} more threads)", s.stops_per_thread_omitted);
    out.push_back(std::move(stops));
    return out;
}

}  // namespace pmprof
