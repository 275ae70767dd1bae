// Shared by the test targets: readiness lines to the harness, thread naming, and keeping the
// compiler from folding the distinctive functions tests look for.
#pragma once

#include <errno.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

// noinline alone still lets GCC clone a function ("f.constprop.0", "f.isra.0"), which renames
// the frame tests look for; noclone keeps the one symbol.
#if defined(__clang__)
#define TARGET_NOINLINE __attribute__((noinline))
#else
#define TARGET_NOINLINE __attribute__((noinline, noclone))
#endif

namespace target {

/// Writes one line to the harness's pipe (fd named by PMPROF_READY_FD), or stdout without one.
inline void report(const std::string& line) {
    const char* fd_text = std::getenv("PMPROF_READY_FD");
    int fd = fd_text ? std::atoi(fd_text) : 1;
    std::string l = line + "\n";
    ssize_t n = write(fd, l.data(), l.size());
    (void)n;
}

/// Names the calling thread (at most 15 characters are kept by the kernel).
inline void name_thread(const char* name) { pthread_setname_np(pthread_self(), name); }

/// An optimization barrier: the compiler must assume `p` is read and written.
template <typename T> inline void escape(T* p) { asm volatile("" : : "g"(p) : "memory"); }

/// Placed right after a call that ends a function: the call is then no longer in tail position,
/// so it stays a call and the caller keeps its frame on the stack.
inline void no_tail_call() { asm volatile("" ::: "memory"); }

/// Lets any process trace us under Yama ptrace_scope 1. Kernels without Yama answer EINVAL
/// (docs/facts.md): that is fine, there is nothing to relax.
inline void allow_any_tracer() {
    if (prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) != 0 && errno != EINVAL) {
        std::fprintf(stderr, "prctl(PR_SET_PTRACER): %s\n", std::strerror(errno));
    }
}

/// The calling thread's kernel thread id.
inline pid_t current_tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

/// The state letter of one of our own threads (proc(5) /proc/PID/task/TID/stat field 3, read
/// after the last ')' since the name may hold parentheses); 0 when unreadable.
inline char thread_state(pid_t tid) {
    std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size()) return 0;
    return stat[close + 2];
}

/// The syscall number one of our threads is blocked in (proc(5) /proc/PID/task/TID/syscall);
/// -1 when it runs in user space ("running") or is unreadable.
inline long thread_syscall(pid_t tid) {
    std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/syscall");
    std::string first;
    if (!(in >> first) || first == "running") return -1;
    return std::strtol(first.c_str(), nullptr, 10);
}

}  // namespace target
