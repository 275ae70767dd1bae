// What the user sees at the end of `attach`/`record`: by default one line (as perf record and
// py-spy print), with -v the rate, the backend, the target's pauses, the stops avoided, EINTR,
// the tracer's own cpu, then the top table. What happened to the target (EINTR, threads that
// could not be stopped, execve) is said either way.
#include "pmprof/output/summary.h"

#include <fmt/format.h>

#include <string>

#include "pmprof/output/text.h"

namespace pmprof {
namespace {

std::string us(uint64_t ns) { return fmt::format("{:.0f} us", static_cast<double>(ns) / 1e3); }

const char* mode_name(SampleMode m) { return m == SampleMode::Cpu ? "cpu" : "wall"; }

/// Why the effective rate is lower than the requested one, when pmprof lowered it: the pause
/// budget, or ticks whose own work outlasted the interval (thousands of threads; the first
/// tick stops every thread once).
std::string rate_clause(const SamplerStats& s) {
    std::string why;
    if (s.rate_lowered) why = ", lowered by the pause budget";
    // Only when the ticks' own work filled at least half the run: a few late ticks on a loaded
    // machine are not why the rate is low, waking late for each tick is.
    const bool slow = s.ticks_late > 0 && s.effective_rate_hz < 0.9 * s.requested_rate_hz &&
                      2 * s.tick_mean_ns * s.ticks >= s.wall_ns;
    if (slow)
        why += fmt::format("{}slow ticks: {} of {} late, mean {:.1f} ms, longest {:.0f} ms",
                           why.empty() ? ", lowered by " : " and by ", s.ticks_late, s.ticks,
                           static_cast<double>(s.tick_mean_ns) / 1e6,
                           static_cast<double>(s.tick_max_ns) / 1e6);
    return why;
}

/// The lines about what the run did to or saw of the target beyond sampling it, "" when
/// nothing happened.
std::string event_lines(const SamplerStats& s) {
    std::string out;
    // Those calls return EINTR to the program after a stop (docs/facts.md): say how often.
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
    return out;
}

}  // namespace

std::string format_sampler_line(const SamplerResult& r, const std::string& written) {
    const SamplerStats& s = r.stats;
    std::string out = fmt::format(
        "pmprof: {} samples from {} threads in {:.1f} s at {:.1f} Hz ({} mode{}); backend: {}{}, ",
        s.samples, s.threads_seen, static_cast<double>(s.wall_ns) / 1e9, s.effective_rate_hz,
        mode_name(s.mode), rate_clause(s), s.backend,
        s.backend_reason.empty() ? "" : " (" + s.backend_reason + ")");
    // The worst a typical stop cost the target; the perf backend (and a ptrace run that found
    // every thread off cpu or reused) stopped nothing.
    out += s.stops == 0 ? "no thread stopped" : "target pause p99 " + us(s.pause_p99_ns);
    if (s.capture_failures > 0) out += fmt::format(", {} threads not captured", s.capture_failures);
    out += "; " + r.end_message;
    if (!written.empty()) out += "; wrote " + written;
    return out + "\n" + event_lines(s);
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
        s.effective_rate_hz, rate_clause(s));
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
                           "for a cpu meanwhile): median {}, p99 {}; at most {} threads "
                           "interrupted at once\n",
                           us(s.stop_wait_median_ns), us(s.stop_wait_p99_ns), s.max_in_flight);
    if (s.backend != "perf")
        out += fmt::format(
            "pmprof: stops avoided: {} ({} threads had not run, {} unwound from "
            "/proc/PID/task/TID/syscall); {} unwind failures, {} threads not captured\n",
            s.stops_avoided, s.reused, s.fast_path, s.unwind_failures, s.capture_failures);
    out += event_lines(s);
    const double cpu_s = static_cast<double>(s.cpu_user_ns + s.cpu_system_ns) / 1e9;
    out += fmt::format("pmprof: own cpu {:.2f} s ({:.1f}% of one cpu)\n", cpu_s,
                       wall_s > 0 ? cpu_s / wall_s * 100 : 0.0);
    const int index = r.profile.sample_index();
    if (index >= 0 && !r.profile.samples.empty()) out += format_top(r.profile, index, top_n);
    return out;
}

}  // namespace pmprof
