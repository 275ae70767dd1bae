// What the user sees at the end of `attach`/`record`, and the same statistics as
// profile comments so they travel with the file.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "pmprof/output_text.h"
#include "pmprof/sampler.h"

namespace pmprof {
namespace {

std::string us(uint64_t ns) { return fmt::format("{:.0f} us", static_cast<double>(ns) / 1e3); }

const char* mode_name(SampleMode m) { return m == SampleMode::Cpu ? "cpu" : "wall"; }

/// Which backend ran and why; what it dropped.
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
                            "a syscall return): no cpu weight; run-queue wait {:.1f}% "
                            "of runnable time (bounds the share of samples at a wake-up point)",
                            s.not_on_cpu,
                            runnable ? 100.0 * static_cast<double>(s.threads_wait_ns) /
                                           static_cast<double>(runnable)
                                     : 0.0);
    }
    return line;
}

}  // namespace

void finish_sampler_profile(SamplerResult& r, const std::vector<Profile>& before_exec,
                            const std::string& sample_type, int64_t start_realtime_ns,
                            const std::string& command_line) {
    if (!before_exec.empty()) {
        const std::string main_file =
            r.profile.mappings.empty() ? std::string() : r.profile.mappings.front().filename;
        std::vector<std::pair<const Profile*, int>> parts;
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
    out.push_back(fmt::format(
        "pmprof sampler: mode {}, rate {:.0f} Hz requested, {:.1f} Hz effective{}, {} ticks, "
        "{} samples, {} threads, {} stops, {} stops avoided ({} reused, {} fast path), "
        "{} capture failures, {} unwind failures, {} module reloads, pause median {} p99 {} "
        "max {}, stop latency median {} p99 {}, pmprof cpu {:.3f} s; {}",
        mode_name(s.mode), s.requested_rate_hz, s.effective_rate_hz,
        s.rate_lowered ? " (lowered by the pause budget)" : "", s.ticks, s.samples, s.threads_seen,
        s.stops, s.stops_avoided, s.reused, s.fast_path, s.capture_failures, s.unwind_failures,
        s.image_reloads, us(s.pause_median_ns), us(s.pause_p99_ns), us(s.pause_max_ns),
        us(s.stop_wait_median_ns), us(s.stop_wait_p99_ns),
        static_cast<double>(s.cpu_user_ns + s.cpu_system_ns) / 1e9, r.end_message));
    out.push_back(backend_line(s));
    if (s.execs > 0)
        out.push_back(fmt::format("pmprof: {} execve followed: the samples of each program carry "
                                  "its own symbols",
                                  s.execs));
    if (s.unwinds > 0)
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
    std::string stops = "pmprof stops per thread (tid:stops):";
    for (const auto& [tid, n] : s.stops_per_thread) stops += fmt::format(" {}:{}", tid, n);
    if (s.stops_per_thread_omitted)
        stops += fmt::format(" (and {} more threads)", s.stops_per_thread_omitted);
    out.push_back(std::move(stops));
    return out;
}

std::string format_sampler_summary(const SamplerResult& r, size_t top_n) {
    const SamplerStats& s = r.stats;
    const double wall_s = static_cast<double>(s.wall_ns) / 1e9;
    std::string out;
    out += fmt::format("pmprof: {}\n", r.end_message);
    out += fmt::format(
        "pmprof: {} samples from {} threads in {:.1f} s ({} mode, {:.0f} Hz requested, {:.1f} Hz "
        "effective{})\n",
        s.samples, s.threads_seen, wall_s, mode_name(s.mode), s.requested_rate_hz,
        s.effective_rate_hz, s.rate_lowered ? ", lowered by the pause budget" : "");
    out += "pmprof: " + backend_line(s).substr(std::string("pmprof ").size()) + "\n";
    if (s.backend == "perf") {
        if (s.samples > 0)
            out += fmt::format("pmprof: tracer cpu per sample (reading and unwinding, after the "
                               "events were opened): {:.1f} us\n",
                               static_cast<double>(s.perf_loop_cpu_ns) / 1e3 /
                                   static_cast<double>(s.samples));
    } else {
        out += fmt::format(
            "pmprof: target pause per thread-sample: median {}, p99 {}, max {} ({} stops; the "
            "most-stopped thread was stopped {:.2f}% of the time)\n",
            us(s.pause_median_ns), us(s.pause_p99_ns), us(s.pause_max_ns), s.stops,
            s.max_thread_pause_fraction * 100);
    }
    if (s.stops > 0)
        out += fmt::format("pmprof: stop latency (interrupt to stop, the thread running or waiting "
                           "for a cpu meanwhile): median {}, p99 {}\n",
                           us(s.stop_wait_median_ns), us(s.stop_wait_p99_ns));
    if (s.backend != "perf")
        out += fmt::format(
            "pmprof: stops avoided: {} ({} threads had not run, {} unwound from "
            "/proc/PID/task/TID/syscall); {} unwind failures, {} threads not captured\n",
            s.stops_avoided, s.reused, s.fast_path, s.unwind_failures, s.capture_failures);
    // Those calls return EINTR to the program after a stop (FACTS.md): say how often it happened.
    if (s.eintr_stops > 0)
        out +=
            fmt::format("pmprof: {} threads were stopped while blocked in a call that fails with "
                        "EINTR when stopped (epoll_wait, sigtimedwait, semop, recv with a "
                        "timeout...): {} EINTR in all\n",
                        s.eintr_per_thread.size(), s.eintr_stops);
    for (const std::string& u : s.unstoppable) out += "pmprof: " + u + "\n";
    if (s.execs > 0)
        out += fmt::format("pmprof: the target called execve {} time(s): sampling followed it, "
                           "each program symbolized with its own files\n",
                           s.execs);
    const double cpu_s = static_cast<double>(s.cpu_user_ns + s.cpu_system_ns) / 1e9;
    out += fmt::format("pmprof: own cpu {:.2f} s ({:.1f}% of one cpu)\n", cpu_s,
                       wall_s > 0 ? cpu_s / wall_s * 100 : 0.0);
    const int index = r.profile.sample_index();
    if (index >= 0 && !r.profile.samples.empty()) out += format_top(r.profile, index, top_n);
    return out;
}

}  // namespace pmprof
