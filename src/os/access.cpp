// Trace permission facts and their explanation (include/pmprof/os/access.h): ptrace(2) "Ptrace
// access mode checking", the kernel's Yama documentation, proc(5) for the Seccomp field.
#include "pmprof/os/access.h"

#include <unistd.h>

#include <fmt/format.h>

#include "pmprof/os/procfs.h"
#include "pmprof/support/fd.h"

namespace pmprof {
namespace {

constexpr int kCapSysPtrace = 19;  // linux/capability.h

bool exists(const char* path) { return ::access(path, F_OK) == 0; }

std::string detect_container() {
    if (exists("/run/.containerenv")) return "podman";
    if (exists("/.dockerenv")) return "docker";
    if (auto cg = read_file("/proc/1/cgroup"); cg.ok()) {
        if (cg->find("kubepods") != std::string::npos) return "kubernetes";
        if (cg->find("docker") != std::string::npos) return "docker";
        if (cg->find("libpod") != std::string::npos) return "podman";
        if (cg->find("lxc") != std::string::npos) return "lxc";
    }
    if (auto env = read_file("/proc/1/environ"); env.ok() && env->find("container=") == 0)
        return "container";
    return "";
}

/// Whether `pid` descends from pmprof (Yama's scope 1 lets a process trace its descendants).
bool descends_from_self(pid_t pid) {
    const pid_t self = ::getpid();
    for (int hops = 0; hops < 64 && pid > 1; ++hops) {
        auto st = read_status(pid);
        if (!st.ok()) return false;
        if (st->ppid == self) return true;
        pid = st->ppid;
    }
    return false;
}

std::string chomp(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

TraceAccess inspect_trace_access(pid_t pid) {
    TraceAccess a;
    a.pid = pid;
    a.self_uid = ::getuid();
    a.self_euid = ::geteuid();
    if (auto self = read_status(::getpid()); self.ok()) {
        a.cap_sys_ptrace = (self->cap_eff >> kCapSysPtrace) & 1;
        a.self_seccomp = self->seccomp;
    }
    a.ptrace_scope = read_ptrace_scope();
    if (auto st = read_status(pid); st.ok()) {
        a.target_readable = true;
        a.target_uid = st->uid_real;
        a.target_euid = st->uid_effective;
        a.tracer_pid = st->tracer_pid;
        if (a.tracer_pid != 0) {
            auto comm = read_file(fmt::format("/proc/{}/comm", a.tracer_pid));
            a.tracer_name = comm.ok() ? chomp(*comm) : "unknown";
        }
    }
    a.descendant = descends_from_self(pid);
    a.container = detect_container();
    return a;
}

std::string ptrace_scope_meaning(int scope) {
    switch (scope) {
    case -1:
        return "absent (no Yama: only uids and CAP_SYS_PTRACE decide)";
    case 0:
        return "0 (classic: any process of the same uid may be traced)";
    case 1:
        return "1 (restricted: only descendants, or a process that allowed it with "
               "PR_SET_PTRACER, may be traced without CAP_SYS_PTRACE)";
    case 2:
        return "2 (admin-only: only CAP_SYS_PTRACE may trace)";
    default:
        return fmt::format("{} (no attach: ptrace is disabled until reboot)", scope);
    }
}

bool credentials_allow_trace(const TraceAccess& a) {
    if (a.ptrace_scope >= 3) return false;
    if (a.cap_sys_ptrace) return true;
    if (a.ptrace_scope == 2) return false;
    // Same uid for real and effective on both sides; a set-uid target also needs dumpable,
    // which /proc does not show: assumed.
    const bool same_uid =
        a.self_euid == a.target_uid && a.self_euid == a.target_euid && a.self_uid == a.self_euid;
    if (!same_uid) return false;
    return a.ptrace_scope != 1 || a.descendant;
}

bool seccomp_likely_cause(const TraceAccess& a) {
    return a.self_seccomp == 2 && credentials_allow_trace(a);
}

std::string explain_trace_permission(const TraceAccess& a) {
    std::string out;
    if (seccomp_likely_cause(a)) {
        return "pmprof runs under a seccomp filter (Seccomp: 2 in /proc/self/status) and "
               "nothing else refuses the trace: the filter denies ptrace; run pmprof outside "
               "that sandbox (docker: --security-opt seccomp=unconfined; systemd: "
               "SystemCallFilter=)";
    }
    out = fmt::format("pmprof runs as uid {}{}, pid {} as uid {}", a.self_euid,
                      a.cap_sys_ptrace ? " with CAP_SYS_PTRACE" : " without CAP_SYS_PTRACE", a.pid,
                      a.target_euid);
    if (a.target_uid != a.target_euid) out += fmt::format(" (real uid {})", a.target_uid);
    if (a.ptrace_scope >= 3) {
        out += "; /proc/sys/kernel/yama/ptrace_scope is " + ptrace_scope_meaning(a.ptrace_scope);
    } else if (!a.cap_sys_ptrace) {
        if (a.self_euid != a.target_euid || a.self_euid != a.target_uid)
            out += "; tracing another user's process needs root or CAP_SYS_PTRACE";
        if (a.ptrace_scope >= 1)
            out += "; /proc/sys/kernel/yama/ptrace_scope is " +
                   ptrace_scope_meaning(a.ptrace_scope) +
                   (a.ptrace_scope == 1 ? ": run as root, or set it to 0" : "");
        else if (a.self_euid == a.target_euid)
            out += "; the uids match: the target may have changed its credentials (set-uid, "
                   "capabilities) or be non-dumpable, which needs CAP_SYS_PTRACE";
        if (!a.container.empty())
            out += fmt::format("; inside a {} container, grant the capability "
                               "(docker run --cap-add=SYS_PTRACE; Kubernetes: "
                               "securityContext.capabilities.add: [\"SYS_PTRACE\"])",
                               a.container);
    } else {
        out += "; CAP_SYS_PTRACE should allow this: an LSM (AppArmor, SELinux) or a user "
               "namespace may refuse it";
        if (!a.container.empty())
            out += fmt::format(" (inside a {} container, the target may belong to another "
                               "user namespace)",
                               a.container);
    }
    if (a.self_seccomp == 2)
        out += "; pmprof also runs under a seccomp filter, which may deny ptrace";
    return out;
}

}  // namespace pmprof
