// Allocation-site target: on SIGUSR1 it runs one phase of known allocations, once
// malloc carries a uprobe (its first byte reads 0xcc: pmprof's probes are in place), and reports
// "phase ..." with the truth; on SIGUSR2 it reports "counts allocs=N probed=0|1" (allocations
// of the churn thread so far, and whether malloc is probed now). SIGTERM ends it.
//
//   leak_site     40 x 2 MiB malloc, never freed            (in use: all of it)
//   keep_site     200 x 2 MiB operator new[], odd ones freed (in use: half)
//   free_site     20000 x 4 KiB malloc, all freed            (in use: nothing)
//   small_site    20000 x 100 B calloc, never freed          (in use: all; for --sample-rate 1)
//
// --churn: a thread mallocs and frees 64-byte blocks as fast as it can (the slowdown tests).
// --work US: a thread does units of US microseconds of computation (calibrated at start), each
// with one malloc and free of 256 bytes: a busy server allocating about 1e6 / US times a second
// of its cpu time (bench/sites.py). Its units are the "allocs" of the counts line.
#include <dlfcn.h>
#include <signal.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

namespace {

std::atomic<long> churn_allocs{0};
std::vector<void*> leaked;  // never freed
std::vector<char*> kept;    // freed at exit only
constexpr size_t kBig = 2u << 20;

bool malloc_probed() {
    const void* m = dlsym(RTLD_DEFAULT, "malloc");
    return m != nullptr && *static_cast<const unsigned char*>(m) == 0xcc;
}

TARGET_NOINLINE void leak_site() {
    for (int i = 0; i < 40; ++i) {
        void* p = std::malloc(kBig);  // @line:leak
        target::escape(p);
        leaked.push_back(p);
    }
    target::no_tail_call();
}

TARGET_NOINLINE void keep_site() {
    for (int i = 0; i < 200; ++i) {
        char* p = new char[kBig];  // @line:keep
        target::escape(p);
        if (i % 2)
            delete[] p;
        else
            kept.push_back(p);
    }
    target::no_tail_call();
}

TARGET_NOINLINE void free_site() {
    std::vector<void*> blocks(20000);
    for (void*& b : blocks) {
        b = std::malloc(4096);  // @line:free
        target::escape(b);
    }
    for (void* b : blocks) std::free(b);
    target::no_tail_call();
}

TARGET_NOINLINE void small_site() {
    for (int i = 0; i < 20000; ++i) {
        void* p = std::calloc(1, 100);  // @line:small
        target::escape(p);
        leaked.push_back(p);
    }
    target::no_tail_call();
}

void run_phase() {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!malloc_probed() && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const bool probed = malloc_probed();
    leaked.reserve(leaked.size() + 40 + 20000);  // the vectors' own growth stays out of it
    kept.reserve(kept.size() + 200);
    leak_site();
    keep_site();
    free_site();
    small_site();
    target::report("phase probed=" + std::to_string(probed ? 1 : 0) + " leak_inuse=" +
                   std::to_string(40 * kBig) + " keep_alloc=" + std::to_string(200 * kBig) +
                   " keep_inuse=" + std::to_string(100 * kBig) + " free_alloc=" +
                   std::to_string(20000 * 4096) + " small_inuse=" + std::to_string(20000 * 100));
}

TARGET_NOINLINE void churn() {
    target::name_thread("churn");
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            void* p = std::malloc(64);
            target::escape(p);
            std::free(p);
        }
        churn_allocs.fetch_add(64, std::memory_order_relaxed);
    }
}

// Iterations of spin() per microsecond of this thread's cpu time.
double spin_per_us = 100;

TARGET_NOINLINE uint64_t spin(uint64_t n) {
    uint64_t x = 88172645463325252ull;
    for (uint64_t i = 0; i < n; ++i) {  // xorshift: no memory, no calls
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        asm volatile("" : "+r"(x));  // not a pure function: the caller's loop calls it each time
    }
    return x;
}

double thread_cpu_us() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

TARGET_NOINLINE void work(long us) {
    target::name_thread("work");
    const uint64_t n = static_cast<uint64_t>(spin_per_us * static_cast<double>(us));
    volatile uint64_t sink = 0;
    for (;;) {
        sink = sink + spin(n);
        void* p = std::malloc(256);
        target::escape(p);
        std::free(p);
        churn_allocs.fetch_add(1, std::memory_order_relaxed);
    }
}

void calibrate() {
    const double t0 = thread_cpu_us();
    uint64_t done = 0;
    volatile uint64_t sink = 0;
    while (thread_cpu_us() - t0 < 50000) {
        sink = sink + spin(10000);
        done += 10000;
    }
    spin_per_us = static_cast<double>(done) / (thread_cpu_us() - t0);
}

}  // namespace

int main(int argc, char** argv) {
    target::allow_any_tracer();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    if (argc > 1 && std::strcmp(argv[1], "--churn") == 0) std::thread(churn).detach();
    if (argc > 2 && std::strcmp(argv[1], "--work") == 0) {
        calibrate();
        std::thread(work, std::atol(argv[2])).detach();
    }
    target::report("ready pid=" + std::to_string(getpid()));
    for (;;) {
        int sig = 0;
        sigwait(&set, &sig);
        if (sig == SIGUSR1) run_phase();
        if (sig == SIGUSR2)
            target::report("counts allocs=" + std::to_string(churn_allocs.load()) +
                           " probed=" + std::to_string(malloc_probed() ? 1 : 0));
        if (sig == SIGTERM) break;
    }
    for (char* p : kept) delete[] p;
    return 0;
}
