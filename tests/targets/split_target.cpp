// The sampler's reference target: a known 70/30 split of cpu work between
// work_seventy() and work_thirty(), both reached through 24 frames of descend(), in --busy
// threads; --idle threads parked in pthread_cond_wait; one thread each blocked in epoll_wait,
// read, nanosleep and futex that count the EINTRs they see; optional thread churn; SIGUSR1 and
// SIGRTMIN counting. It reports on its pipe (target_support.h): "ready ..." with the thread ids
// once everything runs, and "counts ..." on SIGUSR2 (a command) or SIGTERM (then it exits 0).
//
// Usage: split_target [--busy N] [--idle N] [--churn] [--exit-after SECONDS] [--exit-code C]
//                     [--exec-after SECONDS]
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

// noipa: no inlining, cloning or interprocedural shortcuts, so every level is a real frame.
#define SPLIT_FRAME __attribute__((noipa))

namespace {

constexpr int kDepth = 24;     // descend() frames above each work function
constexpr long kUnit = 20000;  // iterations per tenth of a round (a round: ~1-2 ms)

std::atomic<long> g_usr1{0}, g_rtmin{0};
std::atomic<long> g_eintr_epoll{0}, g_eintr_read{0}, g_eintr_sleep{0}, g_eintr_futex{0};
std::atomic<long> g_rounds{0}, g_churned{0};
std::atomic<pid_t> g_tid_epoll{0}, g_tid_read{0}, g_tid_sleep{0}, g_tid_futex{0};
std::atomic<int> g_started{0};
int g_futex_word = 0;

pid_t gettid_() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// One multiply-add chain, identical in both work functions so an iteration costs the same.
#define SPLIT_SPIN(n, seed)                                                                        \
    uint64_t x = (seed);                                                                           \
    for (long i = 0; i < (n); ++i) {                                                               \
        x = x * 6364136223846793005ull + 1442695040888963407ull;                                   \
        asm volatile("" : "+r"(x));                                                                \
    }                                                                                              \
    return x

}  // namespace

extern "C" {
SPLIT_FRAME uint64_t work_seventy(long n) { SPLIT_SPIN(n, 7); }  // @line:seventy
SPLIT_FRAME uint64_t work_thirty(long n) { SPLIT_SPIN(n, 3); }   // @line:thirty
}

SPLIT_FRAME uint64_t descend(int depth, int which, long n) {
    uint64_t r =
        depth == 0 ? (which ? work_thirty(n) : work_seventy(n)) : descend(depth - 1, which, n);
    asm volatile("" : "+r"(r));  // work after the call: no tail call, the frame stays
    return r + 1;
}

namespace {

void busy_thread(int index) {
    target::name_thread(("busy-" + std::to_string(index)).c_str());
    ++g_started;
    uint64_t sink = 0;
    while (true) {
        sink += descend(kDepth, 0, 7 * kUnit);
        sink += descend(kDepth, 1, 3 * kUnit);
        ++g_rounds;
        target::escape(&sink);
    }
}

std::mutex g_idle_mutex;
std::condition_variable g_idle_cv;

void idle_thread(int index) {
    target::name_thread(("idle-" + std::to_string(index)).c_str());
    ++g_started;
    std::unique_lock<std::mutex> lock(g_idle_mutex);
    while (true) g_idle_cv.wait(lock);  // never notified
}

void epoll_thread() {
    target::name_thread("blk-epoll");
    g_tid_epoll = gettid_();
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev);
    ++g_started;
    while (true) {
        epoll_event out{};
        if (epoll_wait(ep, &out, 1, -1) < 0 && errno == EINTR) ++g_eintr_epoll;
    }
}

void read_thread() {
    target::name_thread("blk-read");
    g_tid_read = gettid_();
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    ++g_started;
    char c;
    while (true)
        if (read(fds[0], &c, 1) < 0 && errno == EINTR) ++g_eintr_read;
}

void sleep_thread() {
    target::name_thread("blk-sleep");
    g_tid_sleep = gettid_();
    ++g_started;
    while (true) {
        timespec t{3600, 0};
        if (nanosleep(&t, &t) < 0 && errno == EINTR) ++g_eintr_sleep;
    }
}

void futex_thread() {
    target::name_thread("blk-futex");
    g_tid_futex = gettid_();
    ++g_started;
    while (true)
        if (syscall(SYS_futex, &g_futex_word, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0) < 0 &&
            errno == EINTR)
            ++g_eintr_futex;
}

/// --nap-ms N: a thread that sleeps N ms, then works about N/2 ms, over and over (a sampler
/// keeps its sleeping stack for many ticks, then sees it run).
void nap_thread(int nap_ms) {
    target::name_thread("napper");
    ++g_started;
    while (true) {
        timespec t{nap_ms / 1000, (nap_ms % 1000) * 1000000L};
        nanosleep(&t, nullptr);
        timespec start{}, now{};
        clock_gettime(CLOCK_MONOTONIC, &start);
        do {
            descend(3, 0, 2000);
            clock_gettime(CLOCK_MONOTONIC, &now);
        } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 <
                 nap_ms / 2);
    }
}

SPLIT_FRAME uint64_t churn_work() { return descend(3, 0, 20000); }

void churn_thread() {
    target::name_thread("churn");
    ++g_started;
    while (true) {
        std::thread workers[4];
        for (auto& w : workers)
            w = std::thread([] {
                target::name_thread("churn-w");
                uint64_t v = churn_work();
                target::escape(&v);
                ++g_churned;
            });
        for (auto& w : workers) w.join();
        usleep(2000);
    }
}

extern "C" void on_usr1(int) { ++g_usr1; }
extern "C" void on_rtmin(int) { ++g_rtmin; }

std::string counts_line() {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "counts usr1=%ld rtmin=%ld epoll_eintr=%ld read_eintr=%ld sleep_eintr=%ld "
                  "futex_eintr=%ld rounds=%ld churned=%ld",
                  g_usr1.load(), g_rtmin.load(), g_eintr_epoll.load(), g_eintr_read.load(),
                  g_eintr_sleep.load(), g_eintr_futex.load(), g_rounds.load(), g_churned.load());
    return buf;
}

double arg_double(int argc, char** argv, const char* name, double fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) return std::atof(argv[i + 1]);
    return fallback;
}

bool arg_flag(int argc, char** argv, const char* name) {
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) return true;
    return false;
}

void install(int sig, void (*handler)(int)) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
}

/// Waits for SIGTERM/SIGUSR2 (the commands) until `deadline_s` (0: forever); true on timeout.
bool serve_commands(double deadline_s) {
    sigset_t cmds;
    sigemptyset(&cmds);
    sigaddset(&cmds, SIGTERM);
    sigaddset(&cmds, SIGUSR2);
    timespec start{};
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (true) {
        timespec now{};
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = deadline_s - (static_cast<double>(now.tv_sec - start.tv_sec) +
                                    static_cast<double>(now.tv_nsec - start.tv_nsec) / 1e9);
        if (deadline_s > 0 && left <= 0) return true;
        timespec wait{1, 0};
        if (deadline_s > 0 && left < 1) wait = {0, static_cast<long>(left * 1e9)};
        int sig = sigtimedwait(&cmds, nullptr, &wait);  // EINTR (a handler, a ptrace stop): retry
        if (sig == SIGUSR2) target::report(counts_line());
        if (sig == SIGTERM) {
            target::report(counts_line());
            _exit(0);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    const int busy = static_cast<int>(arg_double(argc, argv, "--busy", 2));
    const int idle = static_cast<int>(arg_double(argc, argv, "--idle", 4));
    const double exit_after = arg_double(argc, argv, "--exit-after", 0);
    const int exit_code = static_cast<int>(arg_double(argc, argv, "--exit-code", 0));
    const double exec_after = arg_double(argc, argv, "--exec-after", 0);

    install(SIGUSR1, on_usr1);
    install(SIGRTMIN, on_rtmin);
    // SIGTERM and SIGUSR2 are commands taken by sigtimedwait in main; the blocked threads also
    // block SIGUSR1/SIGRTMIN, so only a stop by the profiler could make their calls fail with
    // EINTR (nanosleep and epoll_wait fail with EINTR after any handler, SA_RESTART or not).
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);
    sigset_t quiet = mask;
    sigaddset(&quiet, SIGUSR1);
    sigaddset(&quiet, SIGRTMIN);

    std::vector<std::thread> threads;
    int expected = busy + 4;
    pthread_sigmask(SIG_BLOCK, &quiet, nullptr);
    for (int i = 0; i < idle; ++i) threads.emplace_back(idle_thread, i);
    threads.emplace_back(epoll_thread);
    threads.emplace_back(read_thread);
    threads.emplace_back(sleep_thread);
    threads.emplace_back(futex_thread);
    expected += idle;
    pthread_sigmask(SIG_SETMASK, &mask, nullptr);
    for (int i = 0; i < busy; ++i) threads.emplace_back(busy_thread, i);
    if (arg_flag(argc, argv, "--churn")) {
        threads.emplace_back(churn_thread);
        ++expected;
    }
    if (const int nap_ms = static_cast<int>(arg_double(argc, argv, "--nap-ms", 0)); nap_ms > 0) {
        threads.emplace_back(nap_thread, nap_ms);
        ++expected;
    }
    while (g_started.load() < expected) usleep(1000);

    target::report("ready pid=" + std::to_string(getpid()) +
                   " epoll=" + std::to_string(g_tid_epoll.load()) +
                   " read=" + std::to_string(g_tid_read.load()) +
                   " sleep=" + std::to_string(g_tid_sleep.load()) +
                   " futex=" + std::to_string(g_tid_futex.load()));
    if (exec_after > 0) {
        serve_commands(exec_after);
        pthread_sigmask(SIG_UNBLOCK, &mask, nullptr);  // the new program starts with a clean mask
        execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
        _exit(127);
    }
    if (serve_commands(exit_after)) {
        target::report("exiting code=" + std::to_string(exit_code));
        _exit(exit_code);
    }
    return 0;
}
