// The benchmark's reference target: --busy threads that split their cpu work 70/30
// between work_seventy() and work_thirty() (identical loops, 7 vs 3 units per op, each through two
// always-inlined helpers) at the bottom of a 29-frame stack, and --idle threads parked in
// pthread_cond_wait, a raw futex wait and read() on a pipe (in turn). The main thread waits for
// signals: SIGUSR1 appends one line "stats SEQ MONO_NS OPS CPU_NS" to the --stats file (ops: busy
// rounds completed; cpu: the whole process), SIGTERM/SIGINT exit 0. --heap-mb N fills the glibc
// heap with about N MiB of live small blocks before it reports ready (for `pmprof heap`). It dies
// with SIGKILL when the process that started it dies (PR_SET_PDEATHSIG).
//
// Stack of a busy thread, leaf first (29 frames with inlines):
//   lcg_step (inlined) <- spin_units (inlined) <- work_seventy | work_thirty <- descend x22
//   <- run_op <- busy_main <- start_thread <- clone3
// Usage: reference_target [--busy N] [--idle N] [--stats FILE] [--ready FILE] [--heap-mb N]
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// noipa: no inlining, cloning or interprocedural shortcuts, so every level is a real frame.
#define REF_FRAME __attribute__((noipa))
#define REF_INLINE static inline __attribute__((always_inline))

namespace {

constexpr int kDescendFrames = 22;  // descend() frames between run_op() and the work functions
constexpr long kUnit = 1500;        // loop iterations per tenth of an op (an op: ~15-30 us)
constexpr int kMaxBusy = 64;

struct alignas(64) Counter {
    std::atomic<uint64_t> ops{0};
};
Counter g_ops[kMaxBusy];
int g_busy = 4;

uint64_t mono_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "reference_target: %s: %s\n", what, std::strerror(errno));
    std::exit(2);
}

}  // namespace

// The inlined helpers: both work functions run exactly the same instructions per iteration, so
// the time split follows the 7:3 iteration counts.
REF_INLINE uint64_t lcg_step(uint64_t x) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    asm volatile("" : "+r"(x));
    return x;
}

REF_INLINE uint64_t spin_units(long n, uint64_t seed) {
    uint64_t x = seed;
    for (long i = 0; i < n; ++i) x = lcg_step(x);
    return x;
}

extern "C" {
REF_FRAME uint64_t work_seventy(long n) { return spin_units(n, 7); }
REF_FRAME uint64_t work_thirty(long n) { return spin_units(n, 3); }
}

REF_FRAME uint64_t descend(int depth, int which, long n) {
    uint64_t r =
        depth <= 1 ? (which ? work_thirty(n) : work_seventy(n)) : descend(depth - 1, which, n);
    asm volatile("" : "+r"(r));  // work after the call: no tail call, the frame stays
    return r + 1;
}

REF_FRAME uint64_t run_op() {
    uint64_t r = descend(kDescendFrames, 0, 7 * kUnit);
    r += descend(kDescendFrames, 1, 3 * kUnit);
    asm volatile("" : "+r"(r));
    return r;
}

extern "C" REF_FRAME void* busy_main(void* arg) {
    const auto index = static_cast<int>(reinterpret_cast<intptr_t>(arg));
    char name[16];
    std::snprintf(name, sizeof name, "busy-%d", index);
    pthread_setname_np(pthread_self(), name);
    uint64_t sink = 0;
    while (true) {
        sink += run_op();
        asm volatile("" : : "r"(sink));
        // Single writer: a relaxed store is enough for the reporter to read a recent count.
        g_ops[index].ops.store(g_ops[index].ops.load(std::memory_order_relaxed) + 1,
                               std::memory_order_relaxed);
    }
    return nullptr;
}

namespace {

pthread_mutex_t g_idle_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_idle_cond = PTHREAD_COND_INITIALIZER;
int g_futex_word = 0;
int g_idle_pipe[2] = {-1, -1};  // nobody ever writes: readers block forever

extern "C" REF_FRAME void* idle_cond_main(void*) {
    pthread_setname_np(pthread_self(), "idle-cond");
    pthread_mutex_lock(&g_idle_mutex);
    while (true) pthread_cond_wait(&g_idle_cond, &g_idle_mutex);  // never signalled
    return nullptr;
}

extern "C" REF_FRAME void* idle_futex_main(void*) {
    pthread_setname_np(pthread_self(), "idle-futex");
    while (true) syscall(SYS_futex, &g_futex_word, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
    return nullptr;
}

extern "C" REF_FRAME void* idle_read_main(void*) {
    pthread_setname_np(pthread_self(), "idle-read");
    char byte;
    while (true)
        if (read(g_idle_pipe[0], &byte, 1) == 0) break;
    return nullptr;
}

void start_thread(void* (*entry)(void*), void* arg, size_t stack_size) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack_size) pthread_attr_setstacksize(&attr, stack_size);
    pthread_t t;
    int rc = pthread_create(&t, &attr, entry, arg);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        die("pthread_create");
    }
    pthread_detach(t);
}

/// Live small blocks of 32-512 bytes until about `mb` MiB are in use; kept forever.
void fill_heap(long mb) {
    const uint64_t target = static_cast<uint64_t>(mb) << 20;
    auto* blocks = new std::vector<void*>();
    blocks->reserve(static_cast<size_t>(target / 200));
    uint64_t used = 0, x = 12345;
    while (used < target) {
        x = lcg_step(x);
        const size_t size = 32 + (x >> 33) % 481;
        void* p = std::malloc(size);
        if (!p) die("malloc");
        std::memset(p, 0x5a, size);
        blocks->push_back(p);
        used += size;
    }
}

void write_line(const std::string& path, const std::string& line) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) die(path.c_str());
    if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) die("write");
    close(fd);
}

long arg_long(int argc, char** argv, int& i) {
    if (i + 1 >= argc) {
        std::fprintf(stderr, "reference_target: %s needs a value\n", argv[i]);
        std::exit(64);
    }
    return std::strtol(argv[++i], nullptr, 10);
}

}  // namespace

int main(int argc, char** argv) {
    long idle = 16, heap_mb = 0;
    std::string stats_path = "/dev/stdout", ready_path;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--busy")
            g_busy = static_cast<int>(arg_long(argc, argv, i));
        else if (a == "--idle")
            idle = arg_long(argc, argv, i);
        else if (a == "--heap-mb")
            heap_mb = arg_long(argc, argv, i);
        else if (a == "--stats" && i + 1 < argc)
            stats_path = argv[++i];
        else if (a == "--ready" && i + 1 < argc)
            ready_path = argv[++i];
        else {
            std::fprintf(stderr, "usage: reference_target [--busy N] [--idle N] [--stats FILE] "
                                 "[--ready FILE] [--heap-mb N]\n");
            return 64;
        }
    }
    if (g_busy < 0 || g_busy > kMaxBusy || idle < 0 || idle > 100000 || heap_mb < 0) return 64;
    // Four spinning threads must not outlive a bench driver that was killed outright.
    const pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) return 3;
    // Every thread inherits this mask, so only the main thread's sigwaitinfo sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    if (pipe2(g_idle_pipe, O_CLOEXEC) != 0) die("pipe2");
    if (heap_mb > 0) fill_heap(heap_mb);

    for (long i = 0; i < idle; ++i) {
        void* (*entry)(void*) = i % 3 == 0   ? idle_cond_main
                                : i % 3 == 1 ? idle_futex_main
                                             : idle_read_main;
        start_thread(entry, nullptr, 64 << 10);
    }
    for (int i = 0; i < g_busy; ++i)
        start_thread(busy_main, reinterpret_cast<void*>(static_cast<intptr_t>(i)), 0);
    if (!ready_path.empty()) write_line(ready_path, "ready " + std::to_string(getpid()) + "\n");

    for (uint64_t seq = 1;; ++seq) {
        siginfo_t info{};
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) {
            if (errno == EINTR)  // every ptrace stop of this thread ends the wait (docs/facts.md)
                continue;
            die("sigwaitinfo");
        }
        if (sig != SIGUSR1) return 0;
        uint64_t ops = 0;
        for (int i = 0; i < g_busy; ++i) ops += g_ops[i].ops.load(std::memory_order_relaxed);
        write_line(stats_path, "stats " + std::to_string(seq) + " " + std::to_string(mono_ns()) +
                                   " " + std::to_string(ops) + " " + std::to_string(cpu_ns()) +
                                   "\n");
    }
}
