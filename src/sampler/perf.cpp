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
#include "pmprof/os/process_tree.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/profile/labels.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/sampler/perf.h"
#include "pmprof/support/log.h"
#include "pmprof/symbolize/kernel.h"

namespace pmprof {
namespace {

constexpr int64_t kMs = 1000000;
constexpr int64_t kPollSlice = 10 * kMs;        // longest wait between checks of the end
constexpr int64_t kReloadBackoff = 1000 * kMs;  // maps re-read at most this often
constexpr int64_t kChildRetry = 20 * kMs;       // a child not readable yet: tried this often
constexpr size_t kRingBytes = 4u << 20;         // per cpu; halved when the mlock limit says so
// Stack bytes per sample: half the ptrace path's copy (64 KiB from sp - 128). The kernel copies
// them at every sample into the ring, so this is what the target pays per sample (perf's own
// default is 8 KiB); deeper stacks come out truncated. Under 64 KiB in any case: a record's size
// is a u16.
constexpr uint32_t kMaxStack = 32 * 1024;

std::vector<ValueType> cpu_types() { return {{"samples", "count"}, {"cpu", "nanoseconds"}}; }

/// One process's half of the sampler: its memory, image and unwinder (each process is unwound
/// and symbolized from its own maps, also a child that exec'd another program), its samples.
struct PerfProcess {
    PerfProcess(pid_t p, int64_t nominal_ns)
        : pid(p), memory(p), builder(cpu_types(), {"cpu", "nanoseconds"}, nominal_ns) {}
    const pid_t pid;
    ProcessMemory memory;
    std::unique_ptr<ProcessImage> image;
    std::unique_ptr<Unwinder> unwinder;
    ProfileBuilder builder;
    std::vector<Profile> before_exec;  // one profile per program it ran before this one
    std::string comm;                  // the program's name, for the comm label
    bool exec_pending = false;
    bool unreadable = false;  // its image could not be opened (exited before its first sample)
    int64_t next_reload_ns = 0;
    UnwindStats unwind_before;  // counters of unwinders replaced by a reload or an exec
};

class PerfSampler {
  public:
    PerfSampler(std::vector<pid_t> pids, const SamplerOptions& opt, const BackendChoice& choice)
        : roots_(std::move(pids)), opt_(opt), nominal_ns_(static_cast<int64_t>(1e9 / opt.rate_hz)) {
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

    /// Opens the events and the images: sampling starts here.
    Result<void> open();
    /// Reads the rings until the run ends.
    Result<SamplerResult> run();

  private:
    Result<void> open_events();
    Result<void> open_image(PerfProcess& p);
    Result<void> open_thread(pid_t tid);
    /// The process a sample of `pid` belongs to: a root, or with --subprocesses a descendant
    /// (opened at its first sample); null when it is not sampled.
    PerfProcess* process_of(pid_t pid);
    void on_sample(const perf::Sample& s, const ThreadCapture& cap);
    void on_comm(pid_t pid, pid_t tid, const std::string& comm, bool exec);
    bool maybe_reload_image(PerfProcess& p);
    void follow_exec(PerfProcess& p);
    void drain();
    bool roots_exited();
    const std::string& thread_name(pid_t pid, pid_t tid);
    bool wanted(pid_t pid, pid_t tid);
    SamplerResult finish(SamplerEnd end, std::string message);

    const std::vector<pid_t> roots_;
    const SamplerOptions& opt_;
    const int64_t nominal_ns_;
    perf::EventConfig cfg_;
    std::vector<int> cpus_;
    std::vector<perf::Ring> rings_;       // one per cpu, index as cpus_
    std::vector<UniqueFd> events_;        // the other events, writing into rings_
    std::set<pid_t> opened_;              // threads with events of their own
    std::map<pid_t, std::string> names_;  // tid -> thread name (comm records, /proc)
    std::map<pid_t, bool> wanted_;        // --threads verdict per tid
    std::set<pid_t> seen_;
    std::map<pid_t, std::unique_ptr<PerfProcess>> procs_;
    std::map<pid_t, int64_t> retry_ns_;  // children not readable yet: when to try again
    std::vector<UniqueFd> pidfds_;       // one per root, readable once it has exited
    bool any_exec_pending_ = false;
    SamplerStats stats_;
    int64_t start_ns_ = 0, start_realtime_ns_ = 0;
    rusage usage_start_{}, usage_loop_{};
};

Result<void> PerfSampler::open_image(PerfProcess& p) {
    auto maps = read_maps(p.pid);
    if (!maps.ok()) return maps.error();
    auto image = ProcessImage::open(p.pid, std::move(*maps));
    if (!image.ok()) return image.error();
    if (p.unwinder) {
        const UnwindStats u = p.unwinder->stats();
        p.unwind_before.stacks += u.stacks;
        p.unwind_before.cached_walks += u.cached_walks;
    }
    p.unwinder.reset();
    p.image = std::move(*image);
    p.unwinder = make_unwinder(opt_.unwinder, *p.image, p.memory);
    auto stat = read_task_stat(p.pid, p.pid);
    if (stat.ok()) p.comm = stat->comm;
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

/// Every thread of every process present gets its events (their later threads and children
/// inherit them).
Result<void> PerfSampler::open_events() {
    cpus_ = perf::online_cpus();
    const int max_rate = perf::read_max_sample_rate();
    if (max_rate > 0 && opt_.rate_hz > max_rate)
        return Error{fmt::format("--rate {:.0f} is above kernel.perf_event_max_sample_rate ({})",
                                 opt_.rate_hz, max_rate)};
    for (const auto& [pid, p] : procs_) {
        const bool root = std::find(roots_.begin(), roots_.end(), pid) != roots_.end();
        const size_t before = opened_.size();
        auto r = perf::open_for_every_thread(pid, opened_,
                                             [this](pid_t tid) { return open_thread(tid); });
        if (root && !r.ok()) return r.error();
        if (root && opened_.size() == before)
            return Error{fmt::format("pid {} has no threads to sample", pid)};
        if (!root && (!r.ok() || opened_.size() == before)) p->unreadable = true;  // gone
        if (!root) continue;
        const long pidfd = syscall(SYS_pidfd_open, pid, 0);
        if (pidfd >= 0) pidfds_.emplace_back(static_cast<int>(pidfd));
    }
    return {};
}

PerfProcess* PerfSampler::process_of(pid_t pid) {
    auto it = procs_.find(pid);
    if (it != procs_.end()) return it->second->unreadable ? nullptr : it->second.get();
    // Not a root: a child that inherited the events (a fork, or a thread's clone of a process).
    if (!opt_.subprocesses) return nullptr;
    // A child caught between its fork and its exec may not be readable yet: tried again a
    // little later while it lives, given up once it is gone.
    const int64_t now = monotonic_ns();
    auto retry = retry_ns_.find(pid);
    if (retry != retry_ns_.end() && now < retry->second) return nullptr;
    auto p = std::make_unique<PerfProcess>(pid, nominal_ns_);
    if (auto r = open_image(*p); !r.ok()) {
        log_debug("child process {}: {}", pid, r.error().message);
        if (process_running(pid, 0)) {
            retry_ns_[pid] = now + kChildRetry;
            return nullptr;
        }
        p->unreadable = true;
        ++stats_.processes_missed;
        procs_.emplace(pid, std::move(p));
        return nullptr;
    }
    retry_ns_.erase(pid);
    return procs_.emplace(pid, std::move(p)).first->second.get();
}

const std::string& PerfSampler::thread_name(pid_t pid, pid_t tid) {
    auto it = names_.find(tid);
    if (it != names_.end()) return it->second;
    auto stat = read_task_stat(pid, tid);
    return names_[tid] = stat.ok() ? stat->comm : std::string();
}

bool PerfSampler::wanted(pid_t pid, pid_t tid) {
    if (opt_.thread_filter.empty()) return true;
    auto it = wanted_.find(tid);
    if (it != wanted_.end()) return it->second;
    const bool w = thread_selected(opt_.thread_filter, tid, thread_name(pid, tid));
    return wanted_[tid] = w;
}

bool PerfSampler::maybe_reload_image(PerfProcess& p) {
    const int64_t now = monotonic_ns();
    if (now < p.next_reload_ns) return false;
    p.next_reload_ns = now + kReloadBackoff;
    if (auto r = open_image(p); !r.ok()) return false;
    ++stats_.image_reloads;
    return true;
}

void PerfSampler::on_sample(const perf::Sample& s, const ThreadCapture& cap) {
    PerfProcess* p = process_of(s.pid);
    if (p == nullptr || p->exec_pending) return;
    if (!wanted(s.pid, s.tid)) return;
    if (!s.user_regs) {
        ++stats_.perf_no_user;
        return;
    }
    seen_.insert(s.tid);
    RawStack stack = p->unwinder->unwind(cap, opt_.max_depth);
    const bool unknown_pc =
        std::any_of(stack.frames.begin(), stack.frames.end(),
                    [&](const RawFrame& f) { return p->image->find_map(f.pc) == nullptr; });
    if ((unknown_pc || stack.frames.empty()) && maybe_reload_image(*p))
        stack = p->unwinder->unwind(cap, opt_.max_depth);
    if (stack.truncated) ++stats_.unwind_failures;
    if (!s.kernel_ips.empty()) {
        std::vector<RawFrame> frames;
        frames.reserve(s.kernel_ips.size() + stack.frames.size());
        for (size_t i = 0; i < s.kernel_ips.size(); ++i)
            frames.push_back(RawFrame{s.kernel_ips[i], i == 0});
        frames.insert(frames.end(), stack.frames.begin(), stack.frames.end());
        stack.frames = std::move(frames);
    }
    const std::vector<Label> labels{{"thread_name", thread_name(s.pid, s.tid), 0, ""},
                                    {"tid", "", s.tid, ""},
                                    {"state", "running", 0, ""}};
    p->builder.add(stack, {1, static_cast<int64_t>(s.period)}, labels);
    ++stats_.samples;
}

void PerfSampler::on_comm(pid_t pid, pid_t tid, const std::string& comm, bool exec) {
    names_[tid] = comm;
    wanted_.erase(tid);
    auto it = procs_.find(pid);
    if (!exec || it == procs_.end() || it->second->unreadable) return;
    it->second->exec_pending = true;  // the samples after it are the new program's
    any_exec_pending_ = true;
}

/// execve: what came before is symbolized with the old program's files, which its image keeps
/// open; the records after the exec are the new program's.
void PerfSampler::follow_exec(PerfProcess& p) {
    p.exec_pending = false;
    ++stats_.execs;
    auto sym = make_symbolizer(*p.image, opt_.symbolize);
    p.before_exec.push_back(p.builder.build(*sym, p.image->maps()));
    if (opt_.process_labels) add_sample_labels(p.before_exec.back(), process_labels(p.pid, p.comm));
    p.builder = ProfileBuilder(cpu_types(), {"cpu", "nanoseconds"}, nominal_ns_);
    if (auto o = open_image(p); !o.ok()) log_debug("after execve: {}", o.error().message);
}

void PerfSampler::drain() {
    perf::RecordSink sink;
    sink.sample = [this](const perf::Sample& s, const ThreadCapture& c) { on_sample(s, c); };
    sink.comm = [this](pid_t p, pid_t t, const std::string& c, bool e) { on_comm(p, t, c, e); };
    sink.lost = [this](uint64_t n) { stats_.perf_lost += n; };
    sink.throttle = [this] { ++stats_.perf_throttled; };
    for (perf::Ring& r : rings_) {
        r.drain(cfg_, sink);
        if (!any_exec_pending_) continue;
        any_exec_pending_ = false;
        for (auto& [pid, p] : procs_)
            if (p->exec_pending) follow_exec(*p);
        r.drain(cfg_, sink);
    }
}

/// Every root has exited: its pidfd is readable (the kernel says so once the process is a
/// zombie), or without pidfds, no thread of it is left that is not a zombie (`record`'s
/// command stays a zombie until pmprof reaps it, so kill(pid, 0) would still succeed).
bool PerfSampler::roots_exited() {
    if (pidfds_.size() == roots_.size()) {
        std::vector<pollfd> fds;
        for (const UniqueFd& fd : pidfds_) fds.push_back({fd.get(), POLLIN, 0});
        poll(fds.data(), fds.size(), 0);
        return std::all_of(fds.begin(), fds.end(),
                           [](const pollfd& p) { return (p.revents & POLLIN) != 0; });
    }
    return std::none_of(roots_.begin(), roots_.end(),
                        [](pid_t pid) { return process_running(pid, 0); });
}

Result<void> PerfSampler::open() {
    start_ns_ = monotonic_ns();
    start_realtime_ns_ = realtime_ns();
    getrusage(RUSAGE_SELF, &usage_start_);
    // The children that exist already did not inherit events opened after their fork: with
    // --subprocesses each gets its own, as the roots do; later ones inherit them. The events
    // first, the images after: a process forked meanwhile would carry none.
    const std::vector<pid_t> present = opt_.subprocesses ? list_process_tree(roots_) : roots_;
    for (pid_t pid : present) procs_.emplace(pid, std::make_unique<PerfProcess>(pid, nominal_ns_));
    cfg_.watermark = kRingBytes / 4;  // and every kPollSlice, for a ring the limit made smaller
    if (auto r = open_events(); !r.ok()) return r.error();
    for (auto it = procs_.begin(); it != procs_.end();) {
        const bool root = std::find(roots_.begin(), roots_.end(), it->first) != roots_.end();
        if (it->second->unreadable) {
            ++it;
            continue;
        }
        if (auto r = open_image(*it->second); !r.ok()) {
            if (root) return r.error();
            it = procs_.erase(it);  // tried again at its first sample
            continue;
        }
        ++it;
    }
    getrusage(RUSAGE_SELF, &usage_loop_);
    return {};
}

Result<SamplerResult> PerfSampler::run() {
    const int64_t deadline = opt_.duration_ns > 0 ? start_ns_ + opt_.duration_ns : INT64_MAX;
    std::vector<pollfd> fds;
    for (const perf::Ring& r : rings_) fds.push_back({r.fd(), POLLIN, 0});
    while (true) {
        if (stop_requested() || (opt_.stop && opt_.stop())) {
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
        if (roots_exited()) {
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
    KernelSymbols ksyms;
    if (cfg_.kernel_callchain) ksyms = KernelSymbols::load();
    // Each process's programs with their own symbols, oldest first; the first root's last
    // program keeps its binary as the first mapping (finish_sampler_profile).
    std::vector<Profile> parts;
    Profile last;
    std::vector<PerfProcess*> order;
    for (pid_t pid : roots_) order.push_back(procs_.at(pid).get());
    for (auto& [pid, p] : procs_)
        if (!p->unreadable && std::find(roots_.begin(), roots_.end(), pid) == roots_.end())
            order.push_back(p.get());
    for (size_t i = order.size(); i-- > 0;) {
        PerfProcess& p = *order[i];
        const UnwindStats u = p.unwinder->stats();
        stats_.unwinds += p.unwind_before.stacks + u.stacks;
        stats_.unwinds_cached += p.unwind_before.cached_walks + u.cached_walks;
        auto user_sym = make_symbolizer(*p.image, opt_.symbolize);
        auto sym = make_kernel_aware_symbolizer(*user_sym, ksyms);
        Profile prof = p.builder.build(*sym, p.image->maps());
        if (opt_.process_labels) add_sample_labels(prof, process_labels(p.pid, p.comm));
        for (Profile& b : p.before_exec) parts.push_back(std::move(b));
        if (i == 0)
            last = std::move(prof);
        else
            parts.push_back(std::move(prof));
    }
    stats_.processes = order.size();
    r.profile = std::move(last);
    r.stats = stats_;
    finish_sampler_profile(r, parts, "cpu", start_realtime_ns_, opt_.command_line);
    return r;
}

}  // namespace

struct PerfRun {
    PerfRun(std::vector<pid_t> pids, const SamplerOptions& opt, const BackendChoice& choice)
        : sampler(std::move(pids), opt, choice) {}
    PerfSampler sampler;
};

void PerfRunDeleter::operator()(PerfRun* r) const { delete r; }

Result<PerfRunPtr> open_perf_sampler(const std::vector<pid_t>& pids, const SamplerOptions& opt,
                                     const BackendChoice& choice) {
    PerfRunPtr run(new PerfRun(pids, opt, choice));
    if (auto r = run->sampler.open(); !r.ok()) return r.error();
    return run;
}

Result<SamplerResult> run_perf_sampler(PerfRunPtr run) { return run->sampler.run(); }

Result<SamplerResult> run_perf_sampler(const std::vector<pid_t>& pids, const SamplerOptions& opt,
                                       const BackendChoice& choice) {
    auto run = open_perf_sampler(pids, opt, choice);
    if (!run.ok()) return run.error();
    return run_perf_sampler(std::move(*run));
}

Result<SamplerResult> run_perf_sampler(pid_t pid, const SamplerOptions& opt,
                                       const BackendChoice& choice) {
    return run_perf_sampler(std::vector<pid_t>{pid}, opt, choice);
}

}  // namespace pmprof
