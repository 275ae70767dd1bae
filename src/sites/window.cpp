// The allocation-site recorder's window (src/sites/recorder.h): the uprobe events opened
// per thread and cpu, disabled, then enabled together; the poll loop; closing them (the probes
// go with the descriptors); the target's cpu time around it and the overhead guard that may end
// the window early (src/sites/guard.h); the public entry points.
#include <fmt/format.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "pmprof/os/perf_events.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/log.h"
#include "sites/guard.h"
#include "sites/recorder.h"

namespace pmprof {
namespace sites {
namespace {

// The target's kernel share without probes is measured before any is placed, over at least
// this much of its cpu time (or kBaseMaxWaitNs, then over its life so far).
constexpr uint64_t kBaseMinCpuNs = 20'000'000;
constexpr int64_t kBaseMaxWaitNs = 300'000'000;
constexpr size_t kCloseThreads = 64;  // per breakpoint, closing its events together

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

}  // namespace

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
                ring_probe_.push_back(probe);
                continue;
            }
            if (ioctl(fd->get(), PERF_EVENT_IOC_SET_OUTPUT, rings_[c].fd()) != 0)
                return Error::from_errno("PERF_EVENT_IOC_SET_OUTPUT", errno);
            events_.push_back(std::move(*fd));
            event_probe_.push_back(probe);
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
        if (p.fn->kind != AllocKind::Free) events_wanted_.emplace_back(&p, true);
    }
    placed.clear();
    for (const AllocProbe& p : plan_.probes)
        if (placed.insert({p.probe_path, p.offset}).second) events_wanted_.emplace_back(&p, false);
    stats_.probes = events_wanted_.size();
    cpus_ = perf::online_cpus();
    rlimit rl{};  // threads x cpus x probes descriptors
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (auto r = perf::open_for_every_thread(pid_, opened_,
                                             [this](pid_t tid) { return open_thread(tid); });
        !r.ok())
        return r.error();
    stats_.events = events_.size() + rings_.size();
    stats_.threads = opened_.size();
    if (rings_.empty()) return Error{fmt::format("pid {} has no threads to probe", pid_)};
    return {};
}

/// A probe's breakpoint stays in the target (and traps, even with its events disabled) until
/// the last event on it is closed, entry and return events alike (they share the breakpoint).
/// The kernel closes uprobe events one at a time (perf_uprobe_destroy holds event_mutex across
/// the grace periods: 0.1 s or more each on this loaded machine), so the order is what matters:
/// breakpoint by breakpoint, the most hit first, each one's events together.
void SitesRecorder::remove_probes() {
    struct Group {
        uint64_t hits = 0;
        std::vector<size_t> events, rings;
    };
    std::map<std::pair<std::string, uint64_t>, Group> groups;
    for (size_t i = 0; i < events_.size(); ++i) {
        const AllocProbe* p = event_probe_[i];
        Group& g = groups[{p->probe_path, p->offset}];
        g.events.push_back(i);
        g.hits += hits_by_probe_[p];
    }
    for (size_t i = 0; i < rings_.size(); ++i) {
        const AllocProbe* p = ring_probe_[i];
        groups[{p->probe_path, p->offset}].rings.push_back(i);
    }
    std::vector<Group*> order;
    order.reserve(groups.size());
    for (auto& [key, g] : groups) order.push_back(&g);
    std::stable_sort(order.begin(), order.end(),
                     [](const Group* a, const Group* b) { return a->hits > b->hits; });
    std::vector<std::optional<perf::Ring>> rings;
    for (perf::Ring& r : rings_) rings.emplace_back(std::move(r));
    for (const Group* g : order) {
        // Together, so the events of one breakpoint queue for the kernel at once.
        const size_t total = g->events.size() + g->rings.size();
        const size_t n = std::min(kCloseThreads, total);
        std::vector<std::thread> threads;
        for (size_t t = 0; t < n; ++t)
            threads.emplace_back([this, g, &rings, t, n, total] {
                for (size_t k = t; k < total; k += n) {
                    if (k < g->events.size())
                        events_[g->events[k]].reset();
                    else
                        rings[g->rings[k - g->events.size()]].reset();
                }
            });
        for (std::thread& th : threads) th.join();
    }
    events_.clear();
    rings_.clear();
}

/// First step, as records are drained: classify, sample by bytes, unwind the sampled.

Result<AllocSitesResult> SitesRecorder::run() {
    const int64_t t_prep = mono_ns();
    uint64_t u0 = 0, s0 = 0;
    process_cpu(pid_, &u0, &s0);
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

    // The target's kernel share without probes, before any is placed (a probe traps from the
    // moment its first event is opened, enabled or not): measured from the start of the
    // preparation above, waiting up to kBaseMaxWaitNs for enough of its cpu time.
    uint64_t ub = 0, sb = 0;
    bool base_ok = process_cpu(pid_, &ub, &sb);
    while (base_ok && (ub + sb) - (u0 + s0) < kBaseMinCpuNs &&
           mono_ns() - t_prep < kBaseMaxWaitNs) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        base_ok = process_cpu(pid_, &ub, &sb);
    }
    double base = 0;
    if (base_ok && (ub + sb) - (u0 + s0) >= kBaseMinCpuNs)
        base = static_cast<double>(sb - s0) / static_cast<double>((ub + sb) - (u0 + s0));
    else if (base_ok && ub + sb > 0)
        base = static_cast<double>(sb) / static_cast<double>(ub + sb);
    stats_.target_sys_fraction_before = base;
    const uint64_t self0 = rusage_cpu_ns();
    const int64_t t_open = mono_ns();
    timespec rt{};
    clock_gettime(CLOCK_REALTIME, &rt);
    const int64_t start_realtime = int64_t{rt.tv_sec} * 1000000000 + rt.tv_nsec;
    auto opened = open_events();
    if (!opened.ok()) {
        rings_.clear();
        events_.clear();
        return opened.error();
    }
    // The target's cpu time is counted from before the opening (ub, sb): the opening's traps
    // (breakpoints placed, events still disabled) are the probes' cost too.
    // All at once, returns first: an entry recorded has its return recorded too, and the
    // window starts for every probe within microseconds instead of the opening's seconds.
    for (int fd : ret_fds_) ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
    for (int fd : entry_fds_) ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
    const int64_t t0 = mono_ns();
    log_info("sites: recording: {} events opened and enabled in {:.1f} ms", stats_.events,
             static_cast<double>(t0 - t_open) / 1e6);
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
    const int64_t deadline = t0 + opt_.duration_ns;
    std::vector<pollfd> fds;
    for (const perf::Ring& r : rings_) fds.push_back({r.fd(), POLLIN, 0});
    if (pidfd.valid()) fds.push_back({pidfd.get(), POLLIN, 0});
    OverheadGuard guard(opt_.max_overhead, base);
    stats_.max_overhead = opt_.max_overhead;
    stats_.requested_ns = opt_.duration_ns;
    // One reading of the target's cpu time (cumulative since the window opened); false when
    // it is gone.
    auto read_cost = [&](int64_t now, CostReading* r) {
        uint64_t u = 0, sy = 0;
        if (!process_cpu(pid_, &u, &sy)) return false;
        r->time_ns = now - t0;
        r->cpu_ns = (u + sy) - std::min(u + sy, ub + sb);
        r->sys_ns = sy - std::min(sy, sb);
        r->hits = stats_.records + stats_.lost;
        return true;
    };
    bool exited = false;
    int64_t next_check = t0 + kGuardCheckNs;
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
        if (const int64_t t = mono_ns(); t >= next_check) {
            next_check = t + kGuardCheckNs;
            CostReading r;
            if (read_cost(t, &r) && guard.over(r)) {
                stats_.stopped_early = true;
                break;
            }
        }
    }
    // A SIGINT that ended the window is answered: the confirming heap walk that follows must
    // not take it for a second one (which abandons the walk, the target released at once).
    if (stop_requested()) clear_stop_request();
    const int64_t t_end = mono_ns();
    CostReading end;
    const bool cpu_ok = !exited && read_cost(t_end, &end);
    if (cpu_ok && !stats_.stopped_early) guard.over(end);
    // Disabled, the events write no more records (the breakpoints stay until they close): the
    // rings are read to the end, then every event is closed at once.
    for (perf::Ring& r : rings_) ioctl(r.fd(), PERF_EVENT_IOC_DISABLE, 0);
    for (UniqueFd& e : events_) ioctl(e.get(), PERF_EVENT_IOC_DISABLE, 0);
    drain(true);
    remove_probes();
    stats_.remove_ns = static_cast<uint64_t>(mono_ns() - t_end);
    log_debug("sites: every probe removed in {:.1f} ms",
              static_cast<double>(stats_.remove_ns) / 1e6);
    stats_.window_ns = static_cast<uint64_t>(t_end - t0);
    stats_.wall_ns = static_cast<uint64_t>(mono_ns() - t_open);
    stats_.pmprof_cpu_ns = rusage_cpu_ns() - self0;
    if (cpu_ok) {
        stats_.target_cpu_ns = end.cpu_ns;
        stats_.target_sys_ns = end.sys_ns;
        end.hits = stats_.records + stats_.lost;  // with what the rings held at the end
        const CostEstimate w = estimate_cost(CostReading{}, end, base);
        stats_.probe_cost_ns = static_cast<uint64_t>(w.cost_ns);
        stats_.cost_from_kernel_time = w.from_kernel_time;
    }
    if (stats_.stopped_early) {
        stats_.stop_share = guard.last().share;
        stats_.stop_span_ns = static_cast<uint64_t>(guard.last().span_ns);
    }
    for (const auto& [tid, t] : second_) stats_.unmatched += t.pending.size();
    if (plan_.glibc && opt_.confirm && !exited)
        sites::confirm_with_walker(pid_, samples_, stats_);
    else if (plan_.glibc && opt_.confirm)
        stats_.walk_note = "not walked: the target exited";
    AllocSitesResult res;
    res.profile =
        sites::build_sites_profile(samples_, stacks_, opt_.sample_rate, *image_, opt_.symbolize);
    // The profile covers the window, not the opening and removal of the probes around it.
    res.profile.time_nanos = start_realtime + (t0 - t_open);
    res.profile.duration_nanos = static_cast<int64_t>(stats_.window_ns);
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

}  // namespace sites

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
    if (!(o.max_overhead > 0)) return Error{"the overhead budget must be more than 0 %"};
    sites::SitesRecorder rec(pid, o);
    return rec.run();
}

}  // namespace pmprof
