// Allocation-site target (issue 18): on SIGUSR1 it runs one phase of known allocations, once
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
#include <dlfcn.h>
#include <signal.h>

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
