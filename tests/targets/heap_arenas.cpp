// Heap target: a known live set allocated from several threads (so several arenas), with frees
// that land in every kind of bin (tcache, fastbins, unsorted, small, large) and mmapped chunks.
// Once everything is in place it calls mallinfo2() and reports it on the readiness pipe with no
// allocation after the call (snprintf into a stack buffer, write(2)), then blocks forever.
//
// Ready line: "ready arena=.. ordblks=.. smblks=.. hblks=.. hblkhd=.. usmblks=.. fsmblks=..
// uordblks=.. fordblks=.. keepcost=.. live=REQ:COUNT,REQ:COUNT,..."
//
// --hold-locks: after the ready line a thread calls malloc_stats(3) every 20 ms with stderr on a
// stream whose every write takes 2 ms. glibc prints each arena's lines while it holds that
// arena's lock, so some arena lock is held for tens of ms at a time, then none for 20 ms.
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "target_support.h"

namespace {

constexpr int kThreads = 4;
constexpr int kLivePerThread = 300;
sem_t g_done;
std::vector<void*>* g_keep[kThreads + 1];

/// Request size whose chunk size is distinctive for thread `i` (0 = main).
size_t live_request(int i) { return 600 + 16 * static_cast<size_t>(i); }

TARGET_NOINLINE void fill_bins(std::vector<void*>& keep) {
    // tcache: 5 chunks of 48 B.
    void* t[5];
    for (auto& p : t) p = std::malloc(40);
    for (auto& p : t) std::free(p);
    // small and large bins: free chunks separated by live guards so they do not coalesce, then a
    // larger request sorts the unsorted bin into small/large bins.
    void* s[12];
    void* l[6];
    for (auto& p : s) {
        p = std::malloc(300);
        keep.push_back(std::malloc(24));
    }
    for (auto& p : l) {
        p = std::malloc(5000);
        keep.push_back(std::malloc(24));
    }
    for (auto& p : s) std::free(p);
    for (auto& p : l) std::free(p);
    keep.push_back(std::malloc(9000));
    // More frees that stay in the unsorted bin.
    void* u[3];
    for (auto& p : u) {
        p = std::malloc(2000);
        keep.push_back(std::malloc(24));
    }
    for (auto& p : u) std::free(p);
    // fastbins last (a large request would consolidate them): 20 chunks of 64 B, 7 go to the
    // tcache, 13 to the fastbin.
    void* f[20];
    for (auto& p : f) p = std::malloc(56);
    for (auto& p : f) std::free(p);
}

TARGET_NOINLINE void allocate_live(int i) {
    auto* keep = new std::vector<void*>();
    keep->reserve(4096);
    for (int k = 0; k < kLivePerThread; ++k) keep->push_back(std::malloc(live_request(i)));
    fill_bins(*keep);
    g_keep[i] = keep;
}

void* worker(void* arg) {
    int i = static_cast<int>(reinterpret_cast<intptr_t>(arg));
    allocate_live(i);
    sem_post(&g_done);
    for (;;) pause();
    return nullptr;
}

ssize_t slow_write(void*, const char*, size_t size) {
    const timespec two_ms{0, 2'000'000};
    nanosleep(&two_ms, nullptr);
    return static_cast<ssize_t>(size);
}

void* hold_locks(void*) {
    // Unbuffered, so each fprintf of malloc_stats is one slow write.
    FILE* slow =
        fopencookie(nullptr, "w", cookie_io_functions_t{nullptr, slow_write, nullptr, nullptr});
    if (slow == nullptr) return nullptr;
    setvbuf(slow, nullptr, _IONBF, 0);
    stderr = slow;
    const timespec gap{0, 20'000'000};
    for (;;) {
        malloc_stats();
        nanosleep(&gap, nullptr);
    }
    return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    const bool hold = argc > 1 && std::string_view(argv[1]) == "--hold-locks";
    sem_init(&g_done, 0, 0);
    allocate_live(0);
    // mmapped chunks (above the 128 KiB mmap threshold), kept.
    for (int k = 0; k < 3; ++k) g_keep[0]->push_back(std::malloc(200 * 1024 + 100 * k));
    pthread_t threads[kThreads];
    for (int i = 1; i <= kThreads; ++i)
        pthread_create(&threads[i - 1], nullptr, worker, reinterpret_cast<void*>(intptr_t{i}));
    for (int i = 0; i < kThreads; ++i) sem_wait(&g_done);

    struct mallinfo2 mi = mallinfo2();
    char line[1024];
    int n = std::snprintf(line, sizeof line,
                          "ready arena=%zu ordblks=%zu smblks=%zu hblks=%zu hblkhd=%zu usmblks=%zu "
                          "fsmblks=%zu uordblks=%zu fordblks=%zu keepcost=%zu live=",
                          mi.arena, mi.ordblks, mi.smblks, mi.hblks, mi.hblkhd, mi.usmblks,
                          mi.fsmblks, mi.uordblks, mi.fordblks, mi.keepcost);
    for (int i = 0; i <= kThreads && n > 0 && static_cast<size_t>(n) < sizeof line; ++i)
        n += std::snprintf(line + n, sizeof line - static_cast<size_t>(n), "%s%zu:%d", i ? "," : "",
                           live_request(i), kLivePerThread);
    const char* fd_text = std::getenv("PMPROF_READY_FD");
    int fd = fd_text ? std::atoi(fd_text) : 1;
    line[n++] = '\n';
    ssize_t w = write(fd, line, static_cast<size_t>(n));
    (void)w;
    pthread_t holder;
    if (hold) pthread_create(&holder, nullptr, hold_locks, nullptr);
    for (;;) pause();
}
