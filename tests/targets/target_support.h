// Shared by the test targets: readiness lines to the harness, thread naming, and keeping the
// compiler from folding the distinctive functions tests look for.
#pragma once

#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#define TARGET_NOINLINE __attribute__((noinline))

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

}  // namespace target
