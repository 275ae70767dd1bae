// What decides whether pmprof may trace a process, read from /proc only (nothing is traced or
// stopped): both processes' uids, pmprof's CAP_SYS_PTRACE and seccomp mode, Yama's
// ptrace_scope, another tracer, a container. Used to explain a refused PTRACE_SEIZE and by
// `pmprof doctor`.
#pragma once

#include <sys/types.h>

#include <string>

namespace pmprof {

struct TraceAccess {
    pid_t pid = 0;
    bool target_readable = false;  // /proc/PID/status could be read
    uid_t self_uid = 0, self_euid = 0;
    uid_t target_uid = 0, target_euid = 0;
    bool cap_sys_ptrace = false;  // in pmprof's effective set
    int ptrace_scope = -1;        // -1: no Yama
    int self_seccomp = -1;        // pmprof's Seccomp field: 0 none, 1 strict, 2 filter
    bool descendant = false;      // the target descends from pmprof (ptrace_scope 1 allows it)
    pid_t tracer_pid = 0;         // another tracer of the target, 0 when none
    std::string tracer_name;
    std::string container;  // "docker", "kubernetes", "podman", "lxc", "container" or ""
};

/// Reads everything above for `pid` (self: /proc/self, the target: /proc/PID).
TraceAccess inspect_trace_access(pid_t pid);

/// What ptrace_scope N means, in a few words ("0 (classic: any process of the same uid)").
std::string ptrace_scope_meaning(int scope);

/// Why PTRACE_SEIZE of the target was refused with EPERM, and what would allow it: the two
/// uids, CAP_SYS_PTRACE, ptrace_scope and its meaning, a seccomp filter on pmprof when that is
/// the likely cause, and a container hint. One line (clauses joined by "; ").
std::string explain_trace_permission(const TraceAccess& a);

/// Whether pmprof's own seccomp filter is the likely reason a permitted-looking call failed:
/// Seccomp 2, and neither uids, capability nor ptrace_scope would refuse.
bool seccomp_likely_cause(const TraceAccess& a);

/// Whether uids, CAP_SYS_PTRACE and ptrace_scope allow the trace (seccomp and LSMs aside).
bool credentials_allow_trace(const TraceAccess& a);

}  // namespace pmprof
