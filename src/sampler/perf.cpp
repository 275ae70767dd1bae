// cpu mode sampled by the kernel (include/pmprof/sampler/perf.h). For each thread of
// the target and each online cpu, one task-clock event with inherit set (threads created later
// carry it; the kernel sends their records to the parent event's buffer); all events of a cpu
// write into that cpu's one ring buffer (PERF_EVENT_IOC_SET_OUTPUT). Each sample holds the user
// registers and the top of the user stack: the same ThreadCapture the ptrace path hands the
// unwinder, so stacks, symbols, labels and formats are the ptrace path's. Nothing is stopped.
#include <fmt/format.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "pmprof/elf/image.h"
#include "pmprof/os/clock.h"
#include "pmprof/os/perf_events.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/sampler/perf.h"
#include "pmprof/support/log.h"
#include "pmprof/symbolize/kernel.h"

namespace pmprof {
namespace {

constexpr int64_t kMs = 1000000;
constexpr int64_t kPollSlice = 10 * kMs;        // longest wait between checks of the end
constexpr int64_t kReloadBackoff = 1000 * kMs;  // maps re-read at most this often
constexpr size_t kRingBytes = 4u << 20;         // per cpu; halved when the mlock limit says so
// Stack bytes per sample: half the ptrace path's copy (64 KiB from sp - 128). The kernel copies
// them at every sample into the ring, so this is what the target pays per sample (perf's own
// default is 8 KiB); deeper stacks come out truncated. Under 64 KiB in any case: a record's size
// is a u16.
constexpr uint32_t kMaxStack = 32 * 1024;

std::vector<ValueType> cpu_types() { return {{"samples", "count"}, {"cpu", "nanoseconds"}}; }

class PerfSampler {
  public:
    PerfSampler(pid_t pid, const SamplerOptions& opt, const BackendChoice& choice)
        : pid_(pid), opt_(opt), memory_(pid), nominal_ns_(static_cast<int64_t>(1e9 / opt.rate_hz)),
          builder_(cpu_types(), {"cpu", "nanoseconds"}, nominal_ns_) {
        cfg_.rate_hz = opt.rate_hz;
        cfg_.stack_bytes = static_cast<uint32_t>(
            std::min<size_t>(kMaxStack, std::max<size_t>(1024, opt.capture.max_stack_bytes)) &
            ~size_t{7});
        cfg_.kernel_time = choice.kernel_time;
        cfg_.kernel_callchain = opt.kernel_frames && choice.kernel_time;
        stats_.mode = SampleMode::Cpu;
        stats_.backend = "perf";
        stats_.backend_reason = choice.reason;
        stats_.requested_rate_hz = opt.rate_hz;
    }

    Result<void> open_events();
    Result<SamplerResult> run(const std::function<void()>& started);

  private:
    Result<void> open_image();
    Result<void> open_thread(pid_t tid);
    void on_sample(const perf::Sample& s, const ThreadCapture& cap);
    void on_comm(pid_t pid, pid_t tid, const std::string& comm, bool exec);
    bool maybe_reload_image();
    void drain();
    const std::string& thread_name(pid_t tid);
    bool wanted(pid_t tid);
    SamplerResult finish(SamplerEnd end, std::string message);

    const pid_t pid_;
    const SamplerOptions& opt_;
    ProcessMemory memory_;
    const int64_t nominal_ns_;
    perf::EventConfig cfg_;
    std::vector<int> cpus_;
    std::vector<perf::Ring> rings_;       // one per cpu, index as cpus_
    std::vector<UniqueFd> events_;        // the other events, writing into rings_
    std::set<pid_t> opened_;              // threads with events of their own
    std::map<pid_t, std::string> names_;  // tid -> thread name (comm records, /proc)
    std::map<pid_t, bool> wanted_;        // --threads verdict per tid
    std::set<pid_t> seen_;
    std::unique_ptr<ProcessImage> image_;
    std::unique_ptr<Unwinder> unwinder_;
    ProfileBuilder builder_;
    std::vector<Profile> before_exec_;
    bool exec_pending_ = false;
    UniqueFd pidfd_;
    SamplerStats stats_;
    UnwindStats unwind_before_;  // counters of unwinders replaced by a reload or an exec
    int64_t start_ns_ = 0, start_realtime_ns_ = 0, next_reload_ns_ = 0;
    rusage usage_start_{}, usage_loop_{};
};

Result<void> PerfSampler::open_image() {
    auto maps = read_maps(pid_);
    if (!maps.ok()) return maps.error();
    auto image = ProcessImage::open(pid_, std::move(*maps));
    if (!image.ok()) return image.error();
    if (unwinder_) {
        const UnwindStats u = unwinder_->stats();
        unwind_before_.stacks += u.stacks;
        unwind_before_.cached_walks += u.cached_walks;
    }
    unwinder_.reset();
    image_ = std::move(*image);
    unwinder_ = make_unwinder(opt_.unwinder, *image_, memory_);
    return {};
}

/// One event per online cpu on `tid`; the first event of each cpu owns that cpu's ring.
Result<void> PerfSampler::open_thread(pid_t tid) {
    for (size_t i = 0; i < cpus_.size(); ++i) {
        auto fd = perf::open_task_clock(tid, cpus_[i], cfg_);
        if (!fd.ok()) return fd.error();
        if (rings_.size() <= i) {
            auto ring = perf::Ring::map(std::move(*fd), kRingBytes);
            if (!ring.ok()) return ring.error();
            rings_.push_back(std::move(*ring));
            continue;
        }
        if (ioctl(fd->get(), PERF_EVENT_IOC_SET_OUTPUT, rings_[i].fd()) != 0)
            return Error::from_errno("PERF_EVENT_IOC_SET_OUTPUT", errno);
        events_.push_back(std::move(*fd));
    }
    opened_.insert(tid);
    return {};
}

/// Every thread gets its events, re-listing /proc/PID/task until no new thread appears: one
/// created by a thread that had no event yet would not inherit one.
Result<void> PerfSampler::open_events() {
    cpus_ = perf::online_cpus();
    const int max_rate = perf::read_max_sample_rate();
    if (max_rate > 0 && opt_.rate_hz > max_rate)
        return Error{fmt::format("--rate {:.0f} is above kernel.perf_event_max_sample_rate ({})",
                                 opt_.rate_hz, max_rate)};
    for (int pass = 0; pass < 100; ++pass) {
        auto tids = list_tasks(pid_);
        if (!tids.ok()) return tids.error();
        bool any_new = false;
        for (pid_t tid : *tids) {
            if (opened_.contains(tid)) continue;
            any_new = true;
            if (auto r = open_thread(tid); !r.ok()) {
                if (r.error().errno_value == ESRCH) continue;  // exited meanwhile
                return r.error();
            }
        }
        if (!any_new) break;
    }
    if (rings_.empty()) return Error{fmt::format("pid {} has no threads to sample", pid_)};
    const long pidfd = syscall(SYS_pidfd_open, pid_, 0);
    if (pidfd >= 0) pidfd_.reset(static_cast<int>(pidfd));
    return {};
}

const std::string& PerfSampler::thread_name(pid_t tid) {
    auto it = names_.find(tid);
    if (it != names_.end()) return it->second;
    auto stat = read_task_stat(pid_, tid);
    return names_[tid] = stat.ok() ? stat->comm : std::string();
}

bool PerfSampler::wanted(pid_t tid) {
    if (opt_.thread_filter.empty()) return true;
    auto it = wanted_.find(tid);
    if (it != wanted_.end()) return it->second;
    const std::string id = std::to_string(tid);
    const std::string& name = thread_name(tid);
    const bool w = std::any_of(opt_.thread_filter.begin(), opt_.thread_filter.end(),
                               [&](const std::string& f) { return f == name || f == id; });
    return wanted_[tid] = w;
}

bool PerfSampler::maybe_reload_image() {
    const int64_t now = monotonic_ns();
    if (now < next_reload_ns_) return false;
    next_reload_ns_ = now + kReloadBackoff;
    auto maps = read_maps(pid_);
    if (!maps.ok()) return false;
    if (auto r = open_image(); !r.ok()) return false;
    ++stats_.image_reloads;
    return true;
}

void PerfSampler::on_sample(const perf::Sample& s, const ThreadCapture& cap) {
    if (s.pid != pid_ || exec_pending_) return;  // a forked child carries the event too
    if (!wanted(s.tid)) return;
    if (!s.user_regs) {
        ++stats_.perf_no_user;
        return;
    }
    seen_.insert(s.tid);
    RawStack stack = unwinder_->unwind(cap, opt_.max_depth);
    const bool unknown_pc =
        std::any_of(stack.frames.begin(), stack.frames.end(),
                    [&](const RawFrame& f) { return image_->find_map(f.pc) == nullptr; });
    if ((unknown_pc || stack.frames.empty()) && maybe_reload_image())
        stack = unwinder_->unwind(cap, opt_.max_depth);
    if (stack.truncated) ++stats_.unwind_failures;
    if (!s.kernel_ips.empty()) {
        std::vector<RawFrame> frames;
        frames.reserve(s.kernel_ips.size() + stack.frames.size());
        for (size_t i = 0; i < s.kernel_ips.size(); ++i)
            frames.push_back(RawFrame{s.kernel_ips[i], i == 0});
        frames.insert(frames.end(), stack.frames.begin(), stack.frames.end());
        stack.frames = std::move(frames);
    }
    const std::vector<Label> labels{{"thread_name", thread_name(s.tid), 0, ""},
                                    {"tid", "", s.tid, ""},
                                    {"state", "running", 0, ""}};
    builder_.add(stack, {1, static_cast<int64_t>(s.period)}, labels);
    ++stats_.samples;
}

void PerfSampler::on_comm(pid_t pid, pid_t tid, const std::string& comm, bool exec) {
    if (pid != pid_) return;
    names_[tid] = comm;
    wanted_.erase(tid);
    if (exec) exec_pending_ = true;  // the samples after it are the new program's
}

void PerfSampler::drain() {
    perf::RecordSink sink;
    sink.sample = [this](const perf::Sample& s, const ThreadCapture& c) { on_sample(s, c); };
    sink.comm = [this](pid_t p, pid_t t, const std::string& c, bool e) { on_comm(p, t, c, e); };
    sink.lost = [this](uint64_t n) { stats_.perf_lost += n; };
    sink.throttle = [this] { ++stats_.perf_throttled; };
    for (perf::Ring& r : rings_) {
        r.drain(cfg_, sink);
        if (!exec_pending_) continue;
        // execve: what came before is symbolized with the old program's files, which its
        // image keeps open; the records after the exec are the new program's.
        exec_pending_ = false;
        ++stats_.execs;
        auto sym = make_symbolizer(*image_, opt_.symbolize);
        before_exec_.push_back(builder_.build(*sym, image_->maps()));
        builder_ = ProfileBuilder(cpu_types(), {"cpu", "nanoseconds"}, nominal_ns_);
        if (auto o = open_image(); !o.ok()) log_debug("after execve: {}", o.error().message);
        r.drain(cfg_, sink);
    }
}

Result<SamplerResult> PerfSampler::run(const std::function<void()>& started) {
    start_ns_ = monotonic_ns();
    start_realtime_ns_ = realtime_ns();
    getrusage(RUSAGE_SELF, &usage_start_);
    if (auto r = open_image(); !r.ok()) return r.error();
    cfg_.watermark = kRingBytes / 4;  // and every kPollSlice, for a ring the limit made smaller
    if (auto r = open_events(); !r.ok()) return r.error();
    if (started) started();
    getrusage(RUSAGE_SELF, &usage_loop_);
    const int64_t deadline = opt_.duration_ns > 0 ? start_ns_ + opt_.duration_ns : INT64_MAX;
    std::vector<pollfd> fds;
    for (const perf::Ring& r : rings_) fds.push_back({r.fd(), POLLIN, 0});
    if (pidfd_.valid()) fds.push_back({pidfd_.get(), POLLIN, 0});
    while (true) {
        if (stop_requested()) {
            drain();
            return finish(SamplerEnd::StopRequested,
                          fmt::format("stopped by SIG{}",
                                      sigabbrev_np(stop_signal() ? stop_signal() : SIGINT)));
        }
        const int64_t now = monotonic_ns();
        if (now >= deadline) {
            drain();
            return finish(SamplerEnd::Duration, "duration reached");
        }
        const int64_t wait = std::min(deadline - now, kPollSlice);
        poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(1, wait / kMs)));
        drain();
        const bool exited = pidfd_.valid() ? (fds.back().revents & POLLIN) != 0
                                           : kill(pid_, 0) != 0 && errno == ESRCH;
        if (exited) {
            drain();
            return finish(SamplerEnd::TargetExited, "target exited");
        }
        ++stats_.ticks;
    }
}

SamplerResult PerfSampler::finish(SamplerEnd end, std::string message) {
    rings_.clear();  // closes every event before the profile is built
    events_.clear();
    const int64_t end_ns = monotonic_ns();
    SamplerResult r;
    r.end = end;
    r.end_message = std::move(message);
    stats_.wall_ns = static_cast<uint64_t>(end_ns - start_ns_);
    stats_.threads_seen = std::max(seen_.size(), opened_.size());
    stats_.effective_rate_hz = opt_.rate_hz;  // per thread cpu-second, as the kernel counts it
    rusage usage_end{};
    getrusage(RUSAGE_SELF, &usage_end);
    stats_.cpu_user_ns = timeval_ns(usage_end.ru_utime) - timeval_ns(usage_start_.ru_utime);
    stats_.cpu_system_ns = timeval_ns(usage_end.ru_stime) - timeval_ns(usage_start_.ru_stime);
    stats_.perf_loop_cpu_ns = timeval_ns(usage_end.ru_utime) + timeval_ns(usage_end.ru_stime) -
                              timeval_ns(usage_loop_.ru_utime) - timeval_ns(usage_loop_.ru_stime);
    const UnwindStats u = unwinder_->stats();
    stats_.unwinds = unwind_before_.stacks + u.stacks;
    stats_.unwinds_cached = unwind_before_.cached_walks + u.cached_walks;
    auto user_sym = make_symbolizer(*image_, opt_.symbolize);
    KernelSymbols ksyms;
    if (cfg_.kernel_callchain) ksyms = KernelSymbols::load();
    auto sym = make_kernel_aware_symbolizer(*user_sym, ksyms);
    r.profile = builder_.build(*sym, image_->maps());
    r.stats = stats_;
    finish_sampler_profile(r, before_exec_, "cpu", start_realtime_ns_, opt_.command_line);
    return r;
}

}  // namespace

Result<SamplerResult> run_perf_sampler(pid_t pid, const SamplerOptions& opt,
                                       const BackendChoice& choice,
                                       const std::function<void()>& started) {
    PerfSampler sampler(pid, opt, choice);
    return sampler.run(started);
}

}  // namespace pmprof
