// The allocation-site recorder (include/pmprof/alloc_sites.h, issue 18). For every thread and
// online cpu, one uprobe event per allocator entry point and one uretprobe per allocating
// function, with inherit (threads created later carry them), all of a cpu writing into that
// cpu's ring (PERF_EVENT_IOC_SET_OUTPUT), as the cpu mode's perf backend does. Each record says
// which probe fired (PERF_SAMPLE_ID) and holds the user registers; allocation entries also the
// top of the user stack. Records are read in two steps: as they are drained, an allocation entry
// is sampled by bytes (per thread, Go's exponential spacing) and only a sampled one's stack is
// copied and unwound; then the batch is put in time order across the rings and replayed:
// entries matched to their returns per thread, frees to the sampled pointers.
#include <fmt/format.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "alloc_probes.h"
#include "alloc_sites_internal.h"
#include "perf_events.h"
#include "pmprof/fd.h"
#include "pmprof/log.h"
#include "pmprof/memory.h"
#include "pmprof/procfs.h"
#include "pmprof/signals.h"

namespace pmprof {
namespace {

using sites::Sampled;

constexpr int64_t kMs = 1000000;
constexpr size_t kRingBytes = 64u << 20;  // per cpu; halved when the mlock limit says so
constexpr int64_t kSettle = 2 * kMs;      // records newer than drain start - this wait a round
constexpr uint64_t kStale = 1000 * kMs;   // no allocator call takes this long: a lost return
constexpr uint32_t kRetStackBytes = 512;  // posix_memalign's return: *memptr is usually there

int64_t mono_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

uint64_t rusage_cpu_ns() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto ns = [](const timeval& tv) {
        return static_cast<uint64_t>(tv.tv_sec) * 1000000000u +
               static_cast<uint64_t>(tv.tv_usec) * 1000u;
    };
    return ns(u.ru_utime) + ns(u.ru_stime);
}

/// utime and stime of the whole process (/proc/PID/stat fields 14 and 15), in ns.
bool process_cpu(pid_t pid, uint64_t* user, uint64_t* sys, uint64_t* start_ticks = nullptr) {
    auto text = read_file(fmt::format("/proc/{}/stat", pid));
    if (!text.ok()) return false;
    const size_t close = text->rfind(')');
    if (close == std::string::npos) return false;
    std::vector<std::string> f;
    size_t i = close + 2;
    while (i < text->size() && f.size() < 22) {
        size_t j = text->find(' ', i);
        if (j == std::string::npos) j = text->size();
        f.push_back(text->substr(i, j - i));
        i = j + 1;
    }
    if (f.size() < 20) return false;
    const double tick = 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
    *user = static_cast<uint64_t>(std::strtod(f[11].c_str(), nullptr) * tick);
    *sys = static_cast<uint64_t>(std::strtod(f[12].c_str(), nullptr) * tick);
    if (start_ticks && f.size() > 19) *start_ticks = std::strtoull(f[19].c_str(), nullptr, 10);
    return true;
}

/// Closing a uprobe event waits for the kernel to unregister it (a grace period, tens of ms on
/// a loaded machine): many are closed at once from several threads, which wait together.
void close_in_parallel(std::vector<UniqueFd> fds) {
    const size_t n = std::min<size_t>(32, (fds.size() + 3) / 4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < n; ++t)
        threads.emplace_back([&fds, t, n] {
            for (size_t i = t; i < fds.size(); i += n) fds[i].reset();
        });
    for (std::thread& th : threads) th.join();
    fds.clear();
}

/// One probe hit, after the first step.
struct Hit {
    uint64_t time = 0;
    pid_t tid = 0;
    const AllocFunction* fn = nullptr;
    bool ret = false;
    uint64_t a0 = 0, a1 = 0;  // entry: size (or rdi*rsi) and the pointer argument; ret: rax
    uint64_t sp = 0;          // entry: sp at the first instruction; ret: that sp + 8
    bool sampled = false;
    bool nested = false;  // entry made inside another allocator call of the thread
    bool tail = false;    // entered by a tail call from a probed function (jemalloc's _Znam)
    uint32_t stack = 0;
    uint64_t memptr_value = 0;  // posix_memalign's return: *memptr from the stack copy
    bool memptr_known = false;
};

/// An entry waiting for its return.
struct Pending {
    const AllocFunction* fn = nullptr;
    uint64_t size = 0, ptr = 0;  // ptr: realloc's old pointer, posix_memalign's memptr
    bool sampled = false, nested = false;
    uint32_t stack = 0;
    uint64_t time = 0, sp = 0;
};

/// Drops from a call stack (entry sp, time; innermost last) the calls that cannot be in
/// progress at a hit with stack pointer `sp` (an entry: sp is its entry sp) at `time`.
/// `time` 0: a return, which a slow call (descheduled, mapping memory) may take long to reach.
template <typename V, typename SpOf, typename TimeOf>
size_t drop_finished(V& calls, uint64_t sp, uint64_t time, SpOf sp_of, TimeOf time_of) {
    size_t dropped = 0;
    while (!calls.empty() &&
           (sp_of(calls.back()) <= sp || (time != 0 && time > time_of(calls.back()) + kStale))) {
        calls.pop_back();
        ++dropped;
    }
    return dropped;
}

struct ThreadState {
    int64_t until_sample = 0;  // bytes left until the next sample
    // Allocator calls in progress (first step's view): (entry sp, time). A return's sp is its
    // entry's + 8; an entry at the same or a higher sp means the calls below have returned.
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    std::vector<uint64_t> memptrs;  // posix_memalign calls in progress
    std::vector<Pending> pending;
};

class SitesRecorder {
  public:
    SitesRecorder(pid_t pid, const AllocSitesOptions& opt) : pid_(pid), opt_(opt), memory_(pid) {
        cfg_.inherit = true;
        cfg_.side_band = false;
        cfg_.sample_id = true;
        cfg_.lazy_stack = true;
        cfg_.watermark = kRingBytes / 8;
    }
    Result<AllocSitesResult> run();

  private:
    Result<void> open_thread(pid_t tid);
    Result<void> open_events();
    void drain(bool final);
    void first_step(const perf::Sample& s, const ThreadCapture& cap);
    void replay(const Hit& h);
    void add_sample(uint32_t stack, uint64_t size, uint64_t ptr);
    void remove_live(uint64_t ptr);
    uint32_t intern(const RawStack& st);
    bool is_trampoline(uint64_t address);
    int64_t next_gap();

    const pid_t pid_;
    const AllocSitesOptions& opt_;
    ProcessMemory memory_;
    perf::EventConfig cfg_;
    int pmu_ = -1;
    std::vector<int> cpus_;
    AllocatorPlan plan_;
    struct ProbeRef {
        const AllocProbe* probe;
        bool ret;
    };
    std::vector<std::pair<const AllocProbe*, bool>> events_wanted_;
    std::unordered_map<uint64_t, ProbeRef> by_id_;
    std::vector<perf::Ring> rings_;
    std::vector<UniqueFd> events_;
    std::set<pid_t> opened_;
    std::vector<int> ret_fds_, entry_fds_;  // to enable: returns first
    std::unique_ptr<ProcessImage> image_;
    std::unique_ptr<Unwinder> unwinder_;
    ThreadCapture cap_;
    std::unordered_map<pid_t, ThreadState> first_, second_;
    std::vector<Hit> batch_, held_;
    std::vector<RawStack> stacks_;
    std::unordered_map<std::string, uint32_t> stack_ids_;
    std::vector<Sampled> samples_;
    std::unordered_map<uint64_t, size_t> live_;  // sampled pointer -> index into samples_
    uint64_t tramp_lo_ = 0, tramp_hi_ = 0;       // the [uprobes] mapping (uretprobe trampoline)
    std::mt19937_64 rng_{std::random_device{}()};
    AllocSitesStats stats_;
};

int64_t SitesRecorder::next_gap() {
    if (opt_.sample_rate <= 1) return 0;
    std::exponential_distribution<double> d(1.0 / static_cast<double>(opt_.sample_rate));
    return static_cast<int64_t>(d(rng_)) + 1;
}

uint32_t SitesRecorder::intern(const RawStack& st) {
    std::string key(reinterpret_cast<const char*>(st.frames.data()),
                    st.frames.size() * sizeof(RawFrame));
    auto [it, fresh] = stack_ids_.emplace(std::move(key), static_cast<uint32_t>(stacks_.size()));
    if (fresh) stacks_.push_back(st);
    return it->second;
}

bool SitesRecorder::is_trampoline(uint64_t address) {
    if (tramp_hi_ == 0 && image_->find_map(address) == nullptr) {
        // The kernel maps [uprobes] at the first hit: look for it when an address is unknown.
        if (auto maps = read_maps(pid_); maps.ok())
            for (const MemoryMap& m : *maps)
                if (m.path == "[uprobes]") {
                    tramp_lo_ = m.start;
                    tramp_hi_ = m.end;
                }
    }
    return address >= tramp_lo_ && address < tramp_hi_;
}

Result<void> SitesRecorder::open_thread(pid_t tid) {
    for (size_t c = 0; c < cpus_.size(); ++c) {
        for (const auto& [probe, ret] : events_wanted_) {
            const bool stack = !ret && probe->fn->kind != AllocKind::Free;
            const uint32_t bytes = stack ? opt_.stack_bytes
                                   : (ret && probe->fn->kind == AllocKind::PosixMemalign)
                                       ? kRetStackBytes
                                       : 0;
            auto fd = perf::open_uprobe(tid, cpus_[c], pmu_, probe->probe_path, probe->offset, ret,
                                        bytes, cfg_);
            if (!fd.ok()) return fd.error();
            uint64_t id = 0;
            if (ioctl(fd->get(), PERF_EVENT_IOC_ID, &id) != 0)
                return Error::from_errno("PERF_EVENT_IOC_ID", errno);
            by_id_[id] = {probe, ret};
            (ret ? ret_fds_ : entry_fds_).push_back(fd->get());
            if (rings_.size() <= c) {
                auto ring = perf::Ring::map(std::move(*fd), kRingBytes);
                if (!ring.ok()) return ring.error();
                rings_.push_back(std::move(*ring));
                continue;
            }
            if (ioctl(fd->get(), PERF_EVENT_IOC_SET_OUTPUT, rings_[c].fd()) != 0)
                return Error::from_errno("PERF_EVENT_IOC_SET_OUTPUT", errno);
            events_.push_back(std::move(*fd));
        }
    }
    opened_.insert(tid);
    return {};
}

Result<void> SitesRecorder::open_events() {
    std::set<std::pair<std::string, uint64_t>> placed;  // aliases (cfree = free) probed once
    // Return probes first: an entry seen must have its return armed (a call that started
    // between the two would otherwise wait for a return that never comes).
    for (const AllocProbe& p : plan_.probes) {
        if (!placed.insert({p.probe_path, p.offset}).second) continue;
        if (p.fn->kind != AllocKind::Free) events_wanted_.push_back({&p, true});
    }
    placed.clear();
    for (const AllocProbe& p : plan_.probes)
        if (placed.insert({p.probe_path, p.offset}).second) events_wanted_.push_back({&p, false});
    stats_.probes = events_wanted_.size();
    cpus_ = perf::online_cpus();
    rlimit rl{};  // threads x cpus x probes descriptors
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (int pass = 0; pass < 100; ++pass) {
        auto tids = list_tasks(pid_);
        if (!tids.ok()) return tids.error();
        bool any_new = false;
        for (pid_t tid : *tids) {
            if (opened_.count(tid)) continue;
            any_new = true;
            if (auto r = open_thread(tid); !r.ok()) {
                if (r.error().errno_value == ESRCH) continue;
                return r.error();
            }
        }
        if (!any_new) break;
    }
    // All at once, returns first: an entry recorded has its return recorded too, and the
    // window starts for every probe within microseconds instead of the opening's seconds.
    for (int fd : ret_fds_) ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
    for (int fd : entry_fds_) ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
    stats_.events = events_.size() + rings_.size();
    stats_.threads = opened_.size();
    if (rings_.empty()) return Error{fmt::format("pid {} has no threads to probe", pid_)};
    return {};
}

/// First step, as records are drained: classify, sample by bytes, unwind the sampled.
void SitesRecorder::first_step(const perf::Sample& s, const ThreadCapture& cap) {
    ++stats_.records;
    if (s.pid != pid_ || !s.user_regs) return;
    auto it = by_id_.find(s.id);
    if (it == by_id_.end()) return;
    Hit h;
    h.time = s.time;
    h.tid = s.tid;
    h.fn = it->second.probe->fn;
    h.ret = it->second.ret;
    const auto& r = cap.regs.dwarf;  // DWARF numbering: rax 0, rdx 1, rsi 4, rdi 5
    const uint64_t args[3] = {r[5], r[4], r[1]};
    ThreadState& t = first_[s.tid];
    h.sp = cap.regs.sp();
    auto sp_of = [](const std::pair<uint64_t, uint64_t>& c) { return c.first; };
    auto time_of = [](const std::pair<uint64_t, uint64_t>& c) { return c.second; };
    if (h.ret) {
        h.a0 = r[0];
        drop_finished(t.calls, h.sp - 9, 0, sp_of, time_of);  // deeper ones lost returns
        if (!t.calls.empty() && t.calls.back().first == h.sp - 8) t.calls.pop_back();
        if (h.fn->kind == AllocKind::PosixMemalign && !t.memptrs.empty()) {
            // *memptr, from the stack copy of the return when it lies there (it usually does)
            const uint64_t memptr = t.memptrs.back(), sp = cap.regs.sp();
            t.memptrs.pop_back();
            if (s.stack_data != nullptr && memptr >= sp && memptr + 8 <= sp + s.stack_size) {
                std::memcpy(&h.memptr_value, s.stack_data + (memptr - sp), 8);
                h.memptr_known = true;
            }
        }
        batch_.push_back(std::move(h));
        return;
    }
    if (h.fn->kind == AllocKind::Free) {
        h.a1 = args[0];
        drop_finished(t.calls, h.sp, s.time, sp_of, time_of);
        h.nested = !t.calls.empty();
        batch_.push_back(std::move(h));
        return;
    }
    // A tail call from a probed function (jmp _Znwm) finds its return address already
    // replaced by the outer call's uretprobe trampoline: the same call, not a new one.
    uint64_t ret_word = 0;
    if (s.stack_data != nullptr && s.stack_size >= 8) std::memcpy(&ret_word, s.stack_data, 8);
    h.tail = ret_word != 0 && is_trampoline(ret_word);
    drop_finished(t.calls, h.tail ? h.sp - 1 : h.sp, s.time, sp_of, time_of);
    h.nested = !t.calls.empty();
    t.calls.push_back({h.sp, s.time});
    switch (h.fn->kind) {
    case AllocKind::Calloc:
        h.a0 = args[0] * args[1];
        break;
    case AllocKind::Realloc:
        h.a0 = args[1];
        h.a1 = args[0];
        break;
    case AllocKind::PosixMemalign:
        h.a0 = args[2];
        h.a1 = args[0];
        t.memptrs.push_back(args[0]);
        break;
    default:
        h.a0 = args[h.fn->size_arg];
        break;
    }
    if (!h.nested && h.a0 > 0) {
        if (t.until_sample == 0 && opt_.sample_rate > 1) t.until_sample = next_gap();
        t.until_sample -= static_cast<int64_t>(h.a0);
        if (t.until_sample <= 0) {
            t.until_sample = next_gap();
            h.sampled = true;
            cap_.tid = cap.tid;
            cap_.ok = true;
            cap_.regs = cap.regs;
            cap_.stack.base = cap.stack.base;
            cap_.stack.bytes.assign(s.stack_data, s.stack_data + s.stack_size);
            RawStack st = unwinder_->unwind(cap_, opt_.max_depth);
            if (st.truncated) ++stats_.unwind_truncated;
            h.stack = intern(st);
        }
    }
    batch_.push_back(std::move(h));
}

void SitesRecorder::add_sample(uint32_t stack, uint64_t size, uint64_t ptr) {
    Sampled smp;
    smp.stack = stack;
    smp.size = size;
    smp.ptr = ptr;
    smp.scale = sites::sample_scale(size, opt_.sample_rate);
    ++stats_.samples;
    stats_.sampled_bytes += size;
    if (ptr == 0) smp.live = false;
    samples_.push_back(std::move(smp));
    if (ptr != 0) live_[ptr] = samples_.size() - 1;
}

void SitesRecorder::remove_live(uint64_t ptr) {
    auto it = live_.find(ptr);
    if (it == live_.end()) return;
    samples_[it->second].live = false;
    ++stats_.sampled_freed;
    live_.erase(it);
}

/// Second step, in time order: entries matched to returns, frees to sampled pointers.
void SitesRecorder::replay(const Hit& h) {
    ThreadState& t = second_[h.tid];
    auto sp_of = [](const Pending& p) { return p.sp; };
    auto time_of = [](const Pending& p) { return p.time; };
    const uint64_t below = h.ret ? h.sp - 9 : h.tail ? h.sp - 1 : h.sp;
    stats_.unmatched += drop_finished(t.pending, below, h.ret ? 0 : h.time, sp_of, time_of);
    if (h.fn->kind == AllocKind::Free) {
        if (!t.pending.empty()) return;  // realloc's own free of the old block
        ++stats_.frees;
        if (h.a1 != 0) remove_live(h.a1);
        return;
    }
    if (!h.ret) {
        Pending p;
        p.fn = h.fn;
        p.size = h.a0;
        p.ptr = h.a1;
        p.sampled = h.sampled;
        p.nested = !t.pending.empty();
        p.stack = h.stack;
        p.time = h.time;
        p.sp = h.sp;
        t.pending.push_back(p);
        return;
    }
    if (t.pending.empty() || t.pending.back().sp != h.sp - 8) {
        ++stats_.unmatched;
        return;
    }
    const Pending p = t.pending.back();
    t.pending.pop_back();
    if (p.nested) {
        ++stats_.nested;
        return;
    }
    uint64_t result = h.a0;
    if (p.fn->kind == AllocKind::PosixMemalign) {
        result = 0;
        if (h.a0 == 0) {  // success: the pointer is in *memptr
            uint64_t v = h.memptr_value;
            if (!h.memptr_known)
                if (auto rr = memory_.read(p.ptr, &v, 8); !rr.ok() || *rr != 8) v = 0;
            result = v;
        }
    }
    if (p.fn->kind == AllocKind::Realloc && p.ptr != 0 && (result != 0 || p.size == 0)) {
        ++stats_.frees;
        remove_live(p.ptr);
    }
    if (result == 0) return;  // failed (or realloc(p, 0))
    ++stats_.allocs;
    stats_.alloc_bytes += p.size;
    if (p.sampled) add_sample(p.stack, p.size, result);
}

void SitesRecorder::drain(bool final) {
    const uint64_t cutoff = final ? UINT64_MAX : static_cast<uint64_t>(mono_ns() - kSettle);
    perf::RecordSink sink;
    sink.sample = [this](const perf::Sample& s, const ThreadCapture& c) { first_step(s, c); };
    sink.lost = [this](uint64_t n) { stats_.lost += n; };
    sink.throttle = [this] { ++stats_.throttled; };
    batch_.swap(held_);  // what waited from the last round comes first
    for (perf::Ring& r : rings_) r.drain(cfg_, sink);
    std::stable_sort(batch_.begin(), batch_.end(),
                     [](const Hit& a, const Hit& b) { return a.time < b.time; });
    held_.clear();
    for (Hit& h : batch_) {
        if (h.time > cutoff)
            held_.push_back(std::move(h));
        else
            replay(h);
    }
    batch_.clear();
}

Result<AllocSitesResult> SitesRecorder::run() {
    auto maps = read_maps(pid_);
    if (!maps.ok()) return maps.error();
    auto plan = plan_alloc_probes(pid_, *maps);
    if (!plan.ok()) return plan.error();
    plan_ = std::move(*plan);
    stats_.allocator = plan_.allocator;
    std::string why;
    pmu_ = perf::uprobe_pmu_type(&why);
    if (pmu_ < 0) return Error{why};
    auto image = ProcessImage::open(pid_, std::move(*maps));
    if (!image.ok()) return image.error();
    image_ = std::move(*image);
    unwinder_ = make_unwinder(opt_.unwinder, *image_, memory_);

    uint64_t u0 = 0, s0 = 0, start_ticks = 0;
    process_cpu(pid_, &u0, &s0, &start_ticks);
    if (u0 + s0 > 0)
        stats_.target_sys_fraction_before = static_cast<double>(s0) / static_cast<double>(u0 + s0);
    const uint64_t self0 = rusage_cpu_ns();
    const int64_t t0 = mono_ns();
    timespec rt{};
    clock_gettime(CLOCK_REALTIME, &rt);
    const int64_t start_realtime = int64_t{rt.tv_sec} * 1000000000 + rt.tv_nsec;
    auto opened = open_events();
    log_info("sites: recording: {} events opened and enabled in {:.1f} ms",
             events_.size() + rings_.size(), static_cast<double>(mono_ns() - t0) / 1e6);
    if (!opened.ok()) {
        rings_.clear();
        events_.clear();
        return opened.error();
    }
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
    const int64_t deadline = t0 + opt_.duration_ns;
    std::vector<pollfd> fds;
    for (const perf::Ring& r : rings_) fds.push_back({r.fd(), POLLIN, 0});
    if (pidfd.valid()) fds.push_back({pidfd.get(), POLLIN, 0});
    bool exited = false;
    while (!stop_requested()) {
        const int64_t now = mono_ns();
        if (now >= deadline) break;
        poll(fds.data(), fds.size(),
             static_cast<int>(std::clamp<int64_t>((deadline - now) / kMs, 1, 10)));
        drain(false);
        if (pidfd.valid() && (fds.back().revents & POLLIN)) {
            exited = true;
            break;
        }
    }
    uint64_t u1 = 0, s1 = 0;
    const bool cpu_ok = !exited && process_cpu(pid_, &u1, &s1);
    // Probes off first (the descriptors close), then what is left in the rings is read.
    for (perf::Ring& r : rings_) ioctl(r.fd(), PERF_EVENT_IOC_DISABLE, 0);
    for (UniqueFd& e : events_) ioctl(e.get(), PERF_EVENT_IOC_DISABLE, 0);
    const int64_t t_end = mono_ns();
    close_in_parallel(std::move(events_));
    drain(true);
    rings_.clear();
    log_debug("sites: closed and drained in {:.1f} ms",
              static_cast<double>(mono_ns() - t_end) / 1e6);
    stats_.wall_ns = static_cast<uint64_t>(mono_ns() - t0);
    stats_.pmprof_cpu_ns = rusage_cpu_ns() - self0;
    if (cpu_ok) {
        stats_.target_cpu_ns = (u1 - u0) + (s1 - s0);
        stats_.target_sys_ns = s1 - s0;
    }
    for (const auto& [tid, t] : second_) stats_.unmatched += t.pending.size();
    if (plan_.glibc && opt_.confirm && !exited)
        sites::confirm_with_walker(pid_, samples_, stats_);
    else if (plan_.glibc && opt_.confirm)
        stats_.walk_note = "not walked: the target exited";
    AllocSitesResult res;
    res.profile =
        sites::build_sites_profile(samples_, stacks_, opt_.sample_rate, *image_, opt_.symbolize);
    res.profile.time_nanos = start_realtime;
    res.profile.duration_nanos = static_cast<int64_t>(stats_.wall_ns);
    if (!opt_.command_line.empty()) res.profile.comments.push_back(opt_.command_line);
    res.stats = stats_;
    const std::string summary = format_alloc_sites_summary(stats_);
    for (size_t b = 0, e; b < summary.size(); b = e + 1) {
        e = summary.find('\n', b);
        if (e == std::string::npos) e = summary.size();
        if (e > b) res.profile.comments.push_back(summary.substr(b, e - b));
    }
    return res;
}

}  // namespace

Result<void> check_alloc_sites(pid_t pid) {
    std::string why;
    if (perf::uprobe_pmu_type(&why) < 0) return Error{why};
    if (!perf::has_capability(CAP_SYS_ADMIN) && !perf::has_capability(38 /* CAP_PERFMON */))
        return Error{"placing uprobes needs CAP_PERFMON (Linux 5.8+) or CAP_SYS_ADMIN: run "
                     "pmprof as root or give it the capability (setcap cap_perfmon+ep)"};
    auto maps = read_maps(pid);
    if (!maps.ok()) return maps.error();
    auto plan = plan_alloc_probes(pid, *maps);
    if (!plan.ok()) return plan.error();
    return {};
}

Result<AllocSitesResult> record_alloc_sites(pid_t pid, const AllocSitesOptions& opt) {
    if (auto c = check_alloc_sites(pid); !c.ok()) return c.error();
    AllocSitesOptions o = opt;
    o.stack_bytes = std::clamp<uint32_t>(o.stack_bytes, 512, 63480) & ~uint32_t{7};
    SitesRecorder rec(pid, o);
    return rec.run();
}

}  // namespace pmprof
