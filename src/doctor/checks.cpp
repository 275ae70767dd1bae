// `pmprof doctor PID`: the checks (include/pmprof/doctor/doctor.h). Everything comes from /proc,
// the target's files and harmless probes of pmprof's own process; the target is never traced.
#include "pmprof/doctor/doctor.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <set>

#include <fmt/format.h>

#include "pmprof/heap/heap.h"
#include "pmprof/heap/symbols.h"
#include "pmprof/os/access.h"
#include "pmprof/os/procfs.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/support/fd.h"

namespace pmprof {
namespace {

constexpr int kCapSysAdmin = 21, kCapPerfmon = 38;

void add(DoctorReport& r, const char* section, std::string subject, Verdict v, std::string msg,
         std::string fix = {}) {
    r.findings.push_back({section, std::move(subject), v, std::move(msg), std::move(fix)});
}

void check_tracing(DoctorReport& r, const TraceAccess& a) {
    const pid_t pid = r.pid;
    if (auto ok = check_traceable(pid); !ok.ok() && a.tracer_pid == 0)
        add(r, "tracing", "target", Verdict::Blocker, ok.error().message,
            "give the pid of a live process that is not pmprof or its parent");
    if (auto st = read_status(pid);
        st.ok() && st->state == ThreadState::Zombie && process_running(pid, 0))
        add(r, "tracing", "target", Verdict::Degraded,
            fmt::format("pid {}'s main thread has exited (a zombie leader): stacks and attach "
                        "trace its other threads, heap refuses it",
                        pid));
    if (a.tracer_pid != 0)
        add(r, "tracing", "tracer", Verdict::Blocker,
            fmt::format("pid {} is already traced by {} ({}): a process has one tracer at most",
                        pid, a.tracer_pid, a.tracer_name),
            fmt::format("detach {} first (quit the debugger, end strace)", a.tracer_name));
    else
        add(r, "tracing", "tracer", Verdict::Ok, "no other tracer");

    const std::string who =
        fmt::format("pmprof runs as uid {}{}, pid {} as uid {}; ptrace_scope {}", a.self_euid,
                    a.cap_sys_ptrace ? " with CAP_SYS_PTRACE" : " without CAP_SYS_PTRACE", pid,
                    a.target_euid, ptrace_scope_meaning(a.ptrace_scope));
    if (credentials_allow_trace(a))
        add(r, "tracing", "permission", Verdict::Ok, who);
    else
        add(r, "tracing", "permission", Verdict::Blocker, explain_trace_permission(a),
            a.ptrace_scope >= 3
                ? "reboot: ptrace_scope 3 cannot be lowered at run time"
                : fmt::format("run pmprof as uid {} (sudo -u '#{}' pmprof ...){} or as root / "
                              "with CAP_SYS_PTRACE",
                              a.target_euid, a.target_euid,
                              a.ptrace_scope == 1 ? " with ptrace_scope set to 0 "
                                                    "(sysctl kernel.yama.ptrace_scope=0)"
                                                  : ""));

    const int ptrace_errno = probe_ptrace_syscall();
    if (ptrace_errno != 0)
        add(r, "tracing", "seccomp", Verdict::Blocker,
            fmt::format("ptrace is denied to pmprof itself ({}): a seccomp filter{}",
                        std::strerror(ptrace_errno),
                        a.self_seccomp == 2 ? " (Seccomp: 2 in /proc/self/status)" : ""),
            "run pmprof outside that sandbox (docker: --security-opt seccomp=unconfined or a "
            "profile allowing ptrace; systemd: SystemCallFilter=)");
    else if (a.self_seccomp == 2)
        add(r, "tracing", "seccomp", Verdict::Info,
            "pmprof runs under a seccomp filter that allows ptrace");
    else
        add(r, "tracing", "seccomp", Verdict::Ok, "pmprof runs without a seccomp filter");
}

void check_memory(DoctorReport& r, const TraceAccess& a) {
    const int vm_errno = probe_vm_readv_syscall();
    if (vm_errno == 0) {
        add(r, "memory", "process_vm_readv", Verdict::Ok, "process_vm_readv is allowed");
        return;
    }
    // /proc/PID/mem: opening it checks the same ptrace access, and stops nothing.
    UniqueFd mem(::open(fmt::format("/proc/{}/mem", r.pid).c_str(), O_RDONLY | O_CLOEXEC));
    const std::string why =
        fmt::format("process_vm_readv is denied to pmprof ({}{})", std::strerror(vm_errno),
                    a.self_seccomp == 2 ? ", a seccomp filter" : "");
    if (mem.valid())
        add(r, "memory", "process_vm_readv", Verdict::Degraded,
            why + fmt::format(": pmprof reads /proc/{}/mem instead (somewhat slower)", r.pid),
            "allow process_vm_readv in pmprof's seccomp profile");
    else
        add(r, "memory", "process_vm_readv", Verdict::Degraded,
            why + fmt::format(" and /proc/{}/mem cannot be opened ({}): stack copies use "
                              "PTRACE_PEEKDATA, a word per call, cut to 8 KiB",
                              r.pid, std::strerror(errno)),
            "allow process_vm_readv in pmprof's seccomp profile");
}

void check_perf(DoctorReport& r, const TraceAccess&) {
    auto text = read_file("/proc/sys/kernel/perf_event_paranoid");
    if (!text.ok()) {
        add(r, "perf", "perf_event_paranoid", Verdict::Info,
            "no /proc/sys/kernel/perf_event_paranoid: the kernel has no perf events");
        return;
    }
    const int level = std::atoi(text->c_str());
    uint64_t caps = 0;
    if (auto self = read_status(::getpid()); self.ok()) caps = self->cap_eff;
    const bool privileged = ((caps >> kCapPerfmon) & 1) != 0 || ((caps >> kCapSysAdmin) & 1) != 0;
    const char* meaning = level <= -1  ? "no restriction"
                          : level == 0 ? "per-process and CPU-wide events"
                          : level == 1 ? "per-process user and kernel events"
                          : level == 2 ? "per-process user-space events only"
                                       : "only CAP_PERFMON or CAP_SYS_ADMIN may open events";
    // `--mode cpu` prefers the kernel's sampling (the perf backend) and falls back to ptrace;
    // wall mode, stacks and heap always use ptrace.
    const bool usable = privileged || level <= 2;
    add(r, "perf", "perf_event_paranoid", Verdict::Info,
        fmt::format("perf_event_paranoid is {} ({}){}", level, meaning,
                    usable ? ": `attach --mode cpu` samples with perf events (no thread stopped)"
                           : ": `attach --mode cpu` falls back to ptrace (threads are stopped "
                             "to be sampled); wall mode, stacks and heap use ptrace anyway"),
        usable ? "" : "sysctl kernel.perf_event_paranoid=2, or grant CAP_PERFMON");
}

void check_modules(DoctorReport& r, pid_t via, const std::vector<MemoryMap>& maps) {
    std::set<std::string> seen;
    for (const MemoryMap& m : maps) {
        if (!m.file_backed() || !m.executable() || !seen.insert(m.path).second) continue;
        inspect_module(via, m, &r.findings);
    }
    if (std::getenv("DEBUGINFOD_URLS") == nullptr)
        add(r, "debug", "debuginfod", Verdict::Info,
            "DEBUGINFOD_URLS is not set: missing debug files are not fetched");
    else
        add(r, "debug", "debuginfod", Verdict::Ok,
            fmt::format("DEBUGINFOD_URLS is set ({})", std::getenv("DEBUGINFOD_URLS")));
}

/// The allocator finding; returns glibc's HEAP_MAX when `pmprof heap` supports it, else 0.
uint64_t check_allocator(DoctorReport& r, pid_t via, const std::vector<MemoryMap>& maps) {
    if (auto ok = heap_detail::check_glibc_malloc(r.pid, maps); !ok.ok()) {
        add(r, "allocator", "malloc", Verdict::Degraded,
            ok.error().message + ": `pmprof heap` refuses it; stacks, attach and serve's "
                                 "profiles work");
        return 0;
    }
    const MemoryMap* libc = heap_detail::find_libc(maps);
    auto version = heap_detail::read_glibc_version(via, *libc);
    if (!version.ok()) {
        add(r, "allocator", "malloc", Verdict::Degraded,
            "glibc malloc, but its version is unreadable: " + version.error().message);
        return 0;
    }
    auto layout = glibc_layout_for(*version);
    if (!layout.ok()) {
        add(r, "allocator", "malloc", Verdict::Degraded,
            fmt::format("glibc {} malloc: {}", *version, layout.error().message));
        return 0;
    }
    add(r, "allocator", "malloc", Verdict::Ok,
        fmt::format("glibc {} malloc: `pmprof heap` supports it", *version));
    return layout->heap_max;
}

void check_threads(DoctorReport& r, const std::vector<MemoryMap>& maps, uint64_t heap_max) {
    auto tids = list_tasks(r.pid);
    if (!tids.ok()) return;
    std::vector<std::string> dstate;
    for (pid_t tid : *tids) {
        auto st = read_task_stat(r.pid, tid);
        if (st.ok() && st->state == ThreadState::DiskSleep)
            dstate.push_back(
                fmt::format("{} ({}, wchan {})", tid, st->comm,
                            read_wchan(r.pid, tid).empty() ? "?" : read_wchan(r.pid, tid)));
    }
    const size_t n = tids->size();
    std::string msg = fmt::format("{} threads: `stacks` stops each for tens of microseconds and "
                                  "spans about {:.1f} ms; `attach` stops only threads that ran "
                                  "since their last sample",
                                  n, static_cast<double>(n) * 0.03);
    if (heap_max != 0) {
        // The arenas' extent (the brk heap and HEAP_MAX-aligned mappings), walked at roughly
        // 1 ms per MB while every thread is stopped.
        const double mb =
            static_cast<double>(estimate_heap_bytes(maps, heap_max, UINT64_MAX)) / 1e6;
        msg += fmt::format("; `heap` stops all of them together for about {:.0f} ms ({:.0f} MB "
                           "of arenas at most)",
                           std::max(1.0, mb), mb);
    }
    add(r, "threads", "pause", n > 1000 ? Verdict::Info : Verdict::Ok, msg);
    if (!dstate.empty()) {
        std::string list;
        for (const std::string& d : dstate) list += (list.empty() ? "" : ", ") + d;
        add(r, "threads", "D state", Verdict::Degraded,
            fmt::format("{} thread{} in uninterruptible sleep (D): {}; such a thread stops only "
                        "when it leaves the kernel: `stacks` reports it not captured after "
                        "--stop-timeout, `heap` waits that long",
                        dstate.size(), dstate.size() == 1 ? "" : "s", list),
            "look again when the I/O (or vfork child) it waits for is done");
    }
}

}  // namespace

Verdict DoctorReport::worst() const {
    Verdict w = Verdict::Ok;
    for (const Finding& f : findings)
        if (f.verdict == Verdict::Blocker ||
            (f.verdict == Verdict::Degraded && w != Verdict::Blocker))
            w = f.verdict;
    return w;
}

DoctorReport run_doctor(pid_t pid) {
    DoctorReport r;
    r.pid = pid;
    r.command = read_cmdline(pid);
    const TraceAccess access = inspect_trace_access(pid);
    check_tracing(r, access);
    check_memory(r, access);
    check_perf(r, access);
    // A zombie leader has no maps of its own; any live thread shows the process's.
    pid_t via = pid;
    if (auto st = read_task_stat(pid, pid); st.ok() && st->state == ThreadState::Zombie)
        if (auto tids = list_tasks(pid); tids.ok())
            for (pid_t t : *tids)
                if (auto ts = read_task_stat(pid, t); ts.ok() && ts->state != ThreadState::Zombie) {
                    via = t;
                    break;
                }
    auto maps = read_maps(via);
    if (!maps.ok() || maps->empty()) {
        add(r, "debug", "maps", Verdict::Blocker,
            fmt::format("cannot read /proc/{}/maps{}", pid,
                        maps.ok() ? " (empty: a zombie or kernel thread)"
                                  : ": " + maps.error().message),
            "see the permission finding above");
        check_threads(r, {}, 0);
        return r;
    }
    check_modules(r, via, *maps);
    const uint64_t heap_max = check_allocator(r, via, *maps);
    check_threads(r, *maps, heap_max);
    // One block per section, in this order; within a section, the order found.
    static const char* const kOrder[] = {"tracing", "memory",    "perf",   "debug",
                                         "unwind",  "allocator", "threads"};
    const auto rank = [](const Finding& f) {
        for (size_t i = 0; i < std::size(kOrder); ++i)
            if (f.section == kOrder[i]) return i;
        return std::size(kOrder);
    };
    std::stable_sort(r.findings.begin(), r.findings.end(),
                     [&](const Finding& a, const Finding& b) { return rank(a) < rank(b); });
    return r;
}

int doctor_exit_code(const DoctorReport& r) {
    switch (r.worst()) {
    case Verdict::Blocker:
        return 1;
    case Verdict::Degraded:
        return 3;
    default:
        return 0;
    }
}

}  // namespace pmprof
