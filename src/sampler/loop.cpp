// The sampling loop (docs/design.md §1.2-§1.4). One tracer thread: per tick it looks at
// the threads that are due (schedstat through /proc fds kept open; the state only for a thread
// that ran), reuses the stack of a thread that has not run since its previous sample, unwinds a
// blocked thread from /proc/.../syscall without stopping it when it can, and interrupts the rest
// together (src/sampler/tick.cpp: each is copied and resumed the moment its stop is
// reported, and unwound after). Raw stacks are interned as they arrive; symbolization runs once,
// at the end, on a ProcessImage opened at the start (it keeps working after the target exits).
#include "pmprof/sampler/sampler.h"

#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <unistd.h>

#include "pmprof/elf/image.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/os/tracer_priority.h"
#include "pmprof/profile/labels.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/log.h"
#include "sampler/loop.h"
#include "sampler/policy.h"

namespace pmprof {
namespace sampling {
namespace {

/// Executable, file-backed mappings: what ProcessImage reports, and what dlopen changes.
std::vector<std::tuple<uint64_t, uint64_t, uint64_t, std::string>>
code_maps(const std::vector<MemoryMap>& maps) {
    std::vector<std::tuple<uint64_t, uint64_t, uint64_t, std::string>> out;
    for (const MemoryMap& m : maps)
        if (m.executable()) out.emplace_back(m.start, m.end, m.file_offset, m.path);
    return out;
}

std::string signal_text(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::vector<ValueType> sample_types(SampleMode mode) {
    return {{"samples", "count"}, {mode == SampleMode::Cpu ? "cpu" : "wall", "nanoseconds"}};
}

int64_t nominal_interval(double rate_hz) {
    return static_cast<int64_t>(1e9 / std::clamp(rate_hz, 0.01, 100000.0));
}

}  // namespace

Sampler::Sampler(TraceSession& session, const SamplerOptions& opt)
    : session_(session), opt_(opt), pid_(session.pid()), nominal_ns_(nominal_interval(opt.rate_hz)),
      memory_(session.pid()),
      builder_(sample_types(opt.mode),
               {opt.mode == SampleMode::Cpu ? "cpu" : "wall", "nanoseconds"}, nominal_ns_),
      budget_(nominal_ns_, opt.max_pause_fraction) {
    stats_.requested_rate_hz = opt.rate_hz;
    stats_.mode = opt.mode;
    capture_opt_ = opt.capture;
    if (opt.mode == SampleMode::Cpu) {
        // A stop at a system call's return is where the thread ran only if it was on a cpu in
        // that call when the interrupt came: schedstat just before the interrupt and inside the
        // stop tell whether it arrived on a cpu in between (waited_at_syscall_return), and
        // sched's se.exec_start just before the interrupt whether it left its cpu for the tracer
        // (displaced_by_tracer). Inside the stop only at a system call's return, the one place
        // the reading is used.
        capture_opt_.before_interrupt = [this](pid_t tid) {
            auto it = threads_.find(tid);
            if (it == threads_.end()) return;
            ThreadSlot& t = it->second;
            auto s = read_schedstat(t.schedstat_fd);
            t.have_at_interrupt = s.ok();
            if (s.ok()) t.at_interrupt = *s;
            t.left_cpu_at_interrupt = -1;
            // Only a thread that has not run since the tick read it can have left its cpu for
            // the tracer before the tick began: the others skip the 7.5 us read, which delays
            // the later interrupts of the window (and the copy of those already stopped).
            if (tracer_on_cpu_since_ < 0 || !s.ok() || !has_not_run(*s, t.sched)) return;
            if (!t.sched_fd.valid() && !t.sched_unavailable) {
                // Opened at the first need: idle threads, never interrupted, keep no fd for it.
                auto f = open_readonly("/proc/" + std::to_string(pid_) + "/task/" +
                                       std::to_string(tid) + "/sched");
                if (f.ok())
                    t.sched_fd = std::move(*f);
                else
                    t.sched_unavailable = f.error().errno_value == ENOENT;
            }
            if (!t.sched_fd.valid()) return;
            auto e = read_sched_exec_start(t.sched_fd);
            if (e.ok()) t.left_cpu_at_interrupt = *e;
        };
        capture_opt_.at_stop = [this](const ThreadCapture& cap) {
            auto it = threads_.find(cap.tid);
            // orig_rax, from the registers in hand: no read of the target inside the stop.
            if (it == threads_.end() || cap.in_syscall < 0) return;
            auto s = read_schedstat(it->second.schedstat_fd);
            it->second.have_at_stop = s.ok();
            if (s.ok()) it->second.at_stop = *s;
        };
    }
}

Result<void> Sampler::open_image() {
    auto maps = read_maps(pid_);
    if (!maps.ok()) return maps.error();
    auto image = ProcessImage::open(pid_, std::move(*maps));
    if (!image.ok()) return image.error();
    install_image(std::move(*image));
    auto stat = read_task_stat(pid_, pid_);
    if (stat.ok()) comm_ = stat->comm;
    return {};
}

/// Samples from now on are unwound with `image`; the old unwinder's counters are kept.
void Sampler::install_image(std::unique_ptr<ProcessImage> image) {
    note_unwinder_stats();
    unwinder_.reset();  // they refer to the old image: gone before it is
    root_symbols_.reset();
    image_ = std::move(image);
    syscall_sites_.clear();  // the code they described may be gone
    unwinder_ = make_unwinder(opt_.unwinder, *image_, memory_);
    root_symbols_ = make_symbolizer(*image_, SymbolizeOptions{false, false});
}

/// Re-reads the maps when a stack holds a pc no known mapping covers (dlopen, or `record`
/// starting before the libraries are loaded), rate-limited: a process with JIT code would
/// otherwise re-read its maps every tick.
bool Sampler::maybe_reload_image() {
    const int64_t now = monotonic_ns();
    if (now < next_reload_ns_) return false;
    next_reload_ns_ = now + kReloadBackoff;
    auto maps = read_maps(pid_);
    if (!maps.ok() || code_maps(*maps) == code_maps(image_->maps())) return false;
    auto image = ProcessImage::open(pid_, std::move(*maps));
    if (!image.ok()) {
        log_debug("re-reading the modules of pid {}: {}", pid_, image.error().message);
        return false;
    }
    install_image(std::move(*image));
    next_reload_ns_ = now + kReloadMin;
    ++stats_.image_reloads;
    return true;
}

void Sampler::sync_threads(int64_t now) {
    const std::vector<pid_t> tids = session_.threads();
    for (auto it = threads_.begin(); it != threads_.end();) {
        if (!it->second.alive || !std::binary_search(tids.begin(), tids.end(), it->first)) {
            retire(it->second, now);
            it = threads_.erase(it);
        } else {
            ++it;
        }
    }
    // A tid not in threads_ is a new thread (or a reused tid: also a new thread).
    for (pid_t tid : tids) {
        if (threads_.contains(tid)) continue;
        ThreadSlot t;
        t.tid = tid;
        t.first_seen_ns = now;
        const std::string dir =
            "/proc/" + std::to_string(pid_) + "/task/" + std::to_string(tid) + "/";
        auto stat = open_readonly(dir + "stat");
        auto sched = open_readonly(dir + "schedstat");
        auto sys = open_readonly(dir + "syscall");
        if (!stat.ok() || !sched.ok()) continue;  // exited already
        t.stat_fd = std::move(*stat);
        t.schedstat_fd = std::move(*sched);
        if (sys.ok()) t.syscall_fd = std::move(*sys);
        // A thread born while we trace ran only under our watch: its whole cpu time counts.
        t.have_baseline = !first_sync_;
        threads_.emplace(tid, std::move(t));
        ++stats_.threads_seen;
    }
    first_sync_ = false;
}

/// Reads schedstat, and stat only when the thread ran since the last look (or was never looked
/// at): a thread that has not run has the same state, name and stack, and stat costs the kernel
/// far more than schedstat (do_task_stat formats ~50 fields). A thread that ran is first asked
/// /proc/.../syscall: "running" (state R, the common case of a busy thread) costs the kernel a
/// quarter of a stat read (0.7 against 2.6 us here); otherwise stat gives the exact state and
/// the fast path reuses the text.
void Sampler::observe(ThreadSlot& t, bool for_tick) {
    t.observed = false;
    t.observed_syscall.clear();
    auto sched = read_schedstat(t.schedstat_fd);
    if (!sched.ok()) {
        t.alive = false;  // ESRCH: the thread exited; retired at the next sync
        return;
    }
    const bool ran = !t.have_seen || !has_not_run(*sched, t.last_seen);
    const int64_t now = monotonic_ns();
    // Not due in cpu mode (CpuQuantum), sample_without_stop skips the thread whatever its state:
    // the state read (0.7-2.6 us) is saved, and t.state stays as last read until the tick that
    // samples it.
    const bool skip_state = for_tick && opt_.mode == SampleMode::Cpu && t.have_baseline &&
                            t.state != ThreadState::Unknown &&
                            !t.quantum.due(cpu_since(*sched, t.baseline), nominal_ns_);
    bool running = false;
    if (!skip_state && ran && t.state != ThreadState::Unknown && t.syscall_fd.valid() &&
        now - t.stat_read_ns < kStatRefresh) {
        // The kernel answers "running" for a task in TASK_RUNNING (task_current_syscall), which
        // is exactly what stat shows as R; anything else is blocked and gets its stat read.
        auto text = pread_all(t.syscall_fd);
        if (text.ok() && text->starts_with("running"))
            running = true;
        else if (text.ok())
            t.observed_syscall = std::move(*text);
    }
    if (running) {
        t.state = ThreadState::Running;
    } else if (!skip_state && (ran || t.state == ThreadState::Unknown)) {
        auto stat_text = pread_all(t.stat_fd);
        auto stat = stat_text.ok() ? parse_stat(*stat_text) : Result<TaskStat>(stat_text.error());
        if (!stat.ok()) {
            t.alive = false;
            return;
        }
        t.name = stat->comm;
        t.state = stat->state;
        t.stat_read_ns = now;
    }
    t.sched = *sched;
    if (!t.have_seen) t.first_seen = *sched;
    t.last_seen = *sched;
    t.have_seen = true;
    if (ran) t.ran_tick = tick_no_;
    t.next_check_tick = tick_no_ + check_interval_ticks(tick_no_ - t.ran_tick, nominal_ns_,
                                                        static_cast<uint64_t>(t.tid));
    t.observed = true;
}

void Sampler::tick(int64_t now) {
    if (opt_.mode == SampleMode::Cpu) {
        // First, before anything this tick does on this cpu: when the tracer got it. The file is
        // opened here, on the thread that runs the ticks, which /proc/thread-self names.
        if (!tracer_sched_fd_.valid() && !tracer_sched_unavailable_) {
            auto f = open_readonly("/proc/thread-self/sched");
            if (f.ok())
                tracer_sched_fd_ = std::move(*f);
            else  // without CONFIG_SCHED_DEBUG: the displacement test is never met
                tracer_sched_unavailable_ = f.error().errno_value == ENOENT;
        }
        tracer_on_cpu_since_ = -1;
        if (tracer_sched_fd_.valid()) {
            auto e = read_sched_exec_start(tracer_sched_fd_);
            if (e.ok()) tracer_on_cpu_since_ = *e;
        }
    }
    ++stats_.ticks;
    ++tick_no_;
    // The thread list changes only with clone and exit events: with 1000 threads, rebuilding it
    // every tick cost more than sampling them. Every 16th tick anyway, for a thread that left
    // without an event (an exec de-thread).
    const SessionCounters& c = session_.counters();
    if (first_sync_ || c.threads_added != synced_added_ || c.threads_exited != synced_exited_ ||
        tick_no_ % 16 == 0) {
        synced_added_ = c.threads_added;
        synced_exited_ = c.threads_exited;
        sync_threads(now);
    }
    // All states first, so one tick describes one moment rather than a moment per stop. A thread
    // idle for a while is looked at only on some ticks; in between it is known not to have run
    // as of its last look, and wall mode keeps counting its unchanged stack.
    collect_captures(now);  // late stops, copied while we waited for this tick
    note_unstoppable(now);
    size_t looked_at = 0;
    for (auto& [tid, t] : threads_) {
        // Reading thousands of threads takes milliseconds: the captures still in flight from
        // the previous tick are served meanwhile, not held stopped until the loop ends.
        if (++looked_at % 64 == 0) session_.service_captures();
        t.observed = false;
        // wall mode samples every thread every tick, so it needs a stack for each first.
        const bool due =
            tick_no_ >= t.next_check_tick || (opt_.mode == SampleMode::Wall && !t.have_stack);
        if (due && !t.capture_outstanding) observe(t, true);
    }
    std::vector<ThreadSlot*> to_stop;
    for (auto& [tid, t] : threads_) {
        if (++looked_at % 64 == 0) session_.service_captures();
        if (!thread_selected(opt_.thread_filter, t.tid, t.name) || t.capture_outstanding) continue;
        if (!t.observed) {
            if (t.alive && t.have_seen && t.have_stack && opt_.mode == SampleMode::Wall) {
                ++stats_.reused;
                ++stats_.stops_avoided;
                add_reuse(t, t.last_sample_ns ? now - t.last_sample_ns : nominal_ns_, now);
            }
            continue;
        }
        if (!sample_without_stop(t, now)) to_stop.push_back(&t);
        if (stop_requested()) return;
    }
    if (!to_stop.empty()) capture_group(to_stop, now);
}

bool Sampler::sample_without_stop(ThreadSlot& t, int64_t now) {
    ThreadObservation obs{t.state, t.sched, t.have_baseline, t.baseline, t.have_stack};
    const SampleAction action = choose_action(opt_.mode, obs);
    const int64_t weight = sample_weight(t, now);
    // cpu mode: one sample per 1/rate of a thread's cpu time, as perf -F counts its rate
    // (CpuQuantum). The cpu time of a tick that is not sampled stays in the baseline and weighs
    // the next sample, so nothing is lost but the tail after a thread's last sample.
    if (opt_.mode == SampleMode::Cpu && action != SampleAction::Skip) {
        if (!t.quantum.due(weight, nominal_ns_)) return true;
        if (action == SampleAction::OffCpu) {
            charge_off_cpu(t, weight);
            return true;
        }
        t.quantum.sampled(weight, nominal_ns_);
    }
    RawStack stack;
    std::string& syscall = t.tick_syscall;
    syscall.clear();
    switch (action) {
    case SampleAction::OffCpu:  // handled above
    case SampleAction::Skip:
        if (!t.have_baseline) {
            t.baseline = t.sched;
            t.have_baseline = true;
        }
        return true;
    case SampleAction::Reuse:
        ++stats_.reused;
        ++stats_.stops_avoided;
        add_reuse(t, weight, now);
        return true;
    case SampleAction::TryFastPath:
        if (try_fast_path(t, &syscall, &stack)) {
            ++stats_.fast_path;
            ++stats_.stops_avoided;
            t.baseline = t.sched;
            t.have_baseline = true;
            add_sample(t, stack, syscall, weight, now);
            return true;
        }
        return false;
    case SampleAction::Stop:
        return false;
    }
    return false;
}

/// cpu mode: the cpu time since the previous sample (the last look, so a late capture counts
/// what ran up to its request; the rest goes to the next sample). wall: the time since then.
int64_t Sampler::sample_weight(const ThreadSlot& t, int64_t now) const {
    if (opt_.mode == SampleMode::Cpu) return cpu_since(t.sched, t.baseline);
    return t.last_sample_ns ? now - t.last_sample_ns : nominal_ns_;
}

/// The target called execve: the samples so far are the old program's. They are symbolized now
/// with its image (its files stay open, the mappings are gone from the process), and sampling
/// goes on with the new program's image; finish() merges the profiles.
void Sampler::follow_exec() {
    const int64_t now = monotonic_ns();
    for (auto& [tid, t] : threads_) retire(t, now);
    threads_.clear();
    auto symbolizer = make_symbolizer(*image_, opt_.symbolize);
    before_exec_.push_back(builder_.build(*symbolizer, image_->maps()));
    if (opt_.process_labels) add_sample_labels(before_exec_.back(), process_labels(pid_, comm_));
    builder_ =
        ProfileBuilder(sample_types(opt_.mode),
                       {opt_.mode == SampleMode::Cpu ? "cpu" : "wall", "nanoseconds"}, nominal_ns_);
    session_.acknowledge_exec();
    ++stats_.execs;
    first_sync_ = true;  // the new program's cpu time starts now, not at the process's start
    show_progress(now, true);
    log_info("target called execve: what was sampled so far keeps the old program's symbols; "
             "now sampling the new program");
    // If the new image cannot be read (the process is exiting), the loop's next check ends the
    // run; a pc outside the old image's mappings retries (maybe_reload_image).
    if (auto r = open_image(); !r.ok()) log_debug("after execve: {}", r.error().message);
}

void Sampler::retire(ThreadSlot& t, int64_t now) {
    flush_reuse(t);
    if (thread_selected(opt_.thread_filter, t.tid, t.name)) add_sched_totals(t);
    // Bounded: a churning target would otherwise grow this list for the whole run.
    if (t.stops && retired_stops_.size() < kMaxStopsListed)
        retired_stops_.emplace_back(t.tid, t.stops);
    else if (t.stops)
        ++stats_.stops_per_thread_omitted;
    if (t.eintr_stops && retired_eintr_.size() < kMaxStopsListed)
        retired_eintr_.emplace_back(t.tid, t.eintr_stops);
    const int64_t lived = now - t.first_seen_ns;
    if (lived >= 10 * nominal_ns_ && lived > 0)
        stats_.max_thread_pause_fraction =
            std::max(stats_.max_thread_pause_fraction,
                     static_cast<double>(t.pause_ns) / static_cast<double>(lived));
}

/// Sleeps until `deadline`, handling tracee events as they come (signals are re-injected
/// promptly); returns early when the target exits or execs or a stop is requested.
void Sampler::wait_until(int64_t deadline) {
    while (true) {
        session_.poll_events();
        if (session_.process_exited() || session_.counters().exec_seen || stop_requested() ||
            (opt_.stop && opt_.stop()))
            return;
        if (opt_.between_ticks) opt_.between_ticks(session_);
        const int64_t now = monotonic_ns();
        show_progress(now, false);
        if (now >= deadline) return;
        waiter_.wait(std::min(deadline - now, kSlice));
    }
}

void Sampler::show_progress(int64_t now, bool last) {
    if (!opt_.progress || (!last && now < next_progress_ns_)) return;
    next_progress_ns_ = now + 250 * kMs;
    if (last) {
        std::fputs("\r\033[K", stderr);
        return;
    }
    const double elapsed = static_cast<double>(now - start_ns_) / 1e9;
    std::string line =
        opt_.duration_ns > 0
            ? fmt::format("{:.1f}s / {:.1f}s", elapsed, static_cast<double>(opt_.duration_ns) / 1e9)
            : fmt::format("{:.1f}s", elapsed);
    std::fprintf(stderr, "\r\033[Kpmprof: %s  %llu samples  %zu threads", line.c_str(),
                 static_cast<unsigned long long>(stats_.samples), threads_.size());
    std::fflush(stderr);
}

Result<SamplerResult> Sampler::run() {
    // nice -10 while sampling, when allowed. Not realtime: the loop runs for as long as the user
    // asks, and its cpu use grows with the rate and the thread count.
    TracerPriorityBoost boost(TracerPriorityBoost::Kind::Nice);
    start_ns_ = monotonic_ns();
    start_realtime_ns_ = realtime_ns();
    getrusage(RUSAGE_SELF, &usage_start_);
    if (auto r = open_image(); !r.ok()) return r.error();
    next_reload_ns_ = start_ns_;
    const int64_t deadline = opt_.duration_ns > 0 ? start_ns_ + opt_.duration_ns : INT64_MAX;
    int64_t next_tick = start_ns_;
    while (true) {
        session_.poll_events();
        if (session_.process_exited()) {
            const ExitInfo& e = session_.exit_info();
            return finish(SamplerEnd::TargetExited,
                          e.signaled ? "target killed by " + signal_text(e.status)
                                     : "target exited with status " + std::to_string(e.status));
        }
        if (session_.counters().exec_seen) {
            follow_exec();
            continue;
        }
        if (stop_requested() || (opt_.stop && opt_.stop()))
            return finish(SamplerEnd::StopRequested,
                          "stopped by " + signal_text(stop_signal() ? stop_signal() : SIGINT));
        int64_t now = monotonic_ns();
        if (now >= deadline) return finish(SamplerEnd::Duration, "duration reached");
        tick(now);
        const int64_t tick_ns = monotonic_ns() - now;
        budget_.observe_worst_fraction(worst_pause_fraction(monotonic_ns()));
        const int64_t interval = budget_.next_interval_ns();
        note_tick_cost(tick_ns, interval);
        if (budget_.lowered() && !announced_lowering_) {
            announced_lowering_ = true;
            show_progress(monotonic_ns(), true);  // the warning gets a line of its own
            log_warn("pause budget: lowering the rate below {:.0f} Hz to keep each thread stopped "
                     "under {:.1f}% of the time (--max-pause)",
                     opt_.rate_hz, opt_.max_pause_fraction * 100);
        }
        next_tick = std::max(next_tick + interval, monotonic_ns());
        wait_until(std::min(next_tick, deadline));
    }
}

void Sampler::note_tick_cost(int64_t tick_ns, int64_t interval_ns) {
    const auto ns = static_cast<uint64_t>(std::max<int64_t>(0, tick_ns));
    tick_total_ns_ += ns;
    stats_.tick_max_ns = std::max(stats_.tick_max_ns, ns);
    if (tick_ns <= interval_ns) return;
    ++stats_.ticks_late;
    // Said once, after a few: one slow tick (a module reload) is no lowered rate.
    if (announced_slow_ticks_ || stats_.ticks_late < 5) return;
    announced_slow_ticks_ = true;
    show_progress(monotonic_ns(), true);
    log_warn("rate: one tick over {} threads takes {:.1f} ms, longer than the {:.1f} ms interval: "
             "sampling at about {:.0f} Hz instead of {:.0f} (fewer threads with -t, or a lower "
             "-r, keeps the ticks on time)",
             threads_.size(), static_cast<double>(tick_ns) / 1e6,
             static_cast<double>(interval_ns) / 1e6, 1e9 / static_cast<double>(tick_ns),
             opt_.rate_hz);
}

SamplerResult Sampler::finish(SamplerEnd end, std::string message) {
    collect_captures(monotonic_ns());  // what was copied since the last tick still counts
    const int64_t end_ns = monotonic_ns();
    show_progress(end_ns, true);
    SamplerResult r;
    r.end = end;
    r.end_message = std::move(message);
    r.exit = session_.exit_info();
    for (auto& [tid, t] : threads_) retire(t, end_ns);
    stats_.wall_ns = static_cast<uint64_t>(end_ns - start_ns_);
    stats_.effective_rate_hz = stats_.wall_ns ? static_cast<double>(stats_.ticks) * 1e9 /
                                                    static_cast<double>(stats_.wall_ns)
                                              : 0;
    stats_.rate_lowered = budget_.lowered();
    stats_.tick_mean_ns = stats_.ticks ? tick_total_ns_ / stats_.ticks : 0;
    stats_.pause_median_ns = pauses_.quantile(0.5);
    stats_.pause_p99_ns = pauses_.quantile(0.99);
    stats_.pause_max_ns = pauses_.max();
    stats_.stop_wait_median_ns = stop_waits_.quantile(0.5);
    stats_.stop_wait_p99_ns = stop_waits_.quantile(0.99);
    stats_.max_in_flight = session_.counters().captures_peak_in_flight;
    rusage usage_end{};
    getrusage(RUSAGE_SELF, &usage_end);
    stats_.cpu_user_ns = timeval_ns(usage_end.ru_utime) - timeval_ns(usage_start_.ru_utime);
    stats_.cpu_system_ns = timeval_ns(usage_end.ru_stime) - timeval_ns(usage_start_.ru_stime);
    stats_.stops_per_thread = retired_stops_;
    stats_.eintr_per_thread = retired_eintr_;
    note_unwinder_stats();
    std::sort(stats_.stops_per_thread.begin(), stats_.stops_per_thread.end());
    std::sort(stats_.eintr_per_thread.begin(), stats_.eintr_per_thread.end());

    // Symbolization happens here, once per unique pc, from files opened while the target lived;
    // meanwhile the session detaches, and a late stop (a thread leaving D state) is detached
    // at once instead of waiting for the symbols.
    session_.detach_during([&] {
        auto symbolizer = make_symbolizer(*image_, opt_.symbolize);
        r.profile = builder_.build(*symbolizer, image_->maps());
    });
    if (opt_.mode == SampleMode::Cpu) share_out_pools(r.profile);
    if (opt_.process_labels) add_sample_labels(r.profile, process_labels(pid_, comm_));
    stats_.processes = 1;
    r.stats = stats_;
    finish_sampler_profile(r, before_exec_, opt_.mode == SampleMode::Cpu ? "cpu" : "wall",
                           start_realtime_ns_, opt_.command_line);
    return r;
}

}  // namespace sampling

Result<SamplerResult> run_sampler(TraceSession& session, const SamplerOptions& opt) {
    sampling::Sampler sampler(session, opt);
    return sampler.run();
}

}  // namespace pmprof
