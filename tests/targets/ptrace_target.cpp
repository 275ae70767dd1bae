// Target for the ptrace layer's integration tests (tests/integration/test_ptrace.cpp).
//
//   --threads N   N extra threads: even ones spin (ptrace_target::spin), odd ones sleep
//                 (ptrace_target::doze); "ready" once every one runs or sleeps.
//   --idle        the extra threads all sleep (no spinner).
//   --signals     counts SIGUSR1 (reports "usr1 K" on each) and SIGRTMIN (queued: reports
//                 "rt K usr1 K" on SIGUSR2), so a test can prove no signal was swallowed.
//   --churn       two threads create and join short-lived threads without pause.
//   --main-exits  the main thread calls pthread_exit after "ready": the leader is a zombie while
//                 the other threads run.
//   --dstate      one thread vforks a child that sleeps 2 s in a raw nanosleep, again and again:
//                 the vfork parent sits in D state; reported as "ready ... dstate=TID".
//   --dstate-ms M the child sleeps M ms instead, and the vforker reports "vfork K" on the pipe
//                 right before each vfork (a test can start pmprof at the beginning of a D
//                 state and knows it lasts M ms).
// Every mode reports "ready pid=P" (plus fields) on the harness pipe; the main thread then
// sleeps until killed.
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

namespace ptrace_target {

std::atomic<int> g_started{0};
int g_report_fd = 1;
// Counted with lock-free atomics (async-signal-safe): a process-directed signal can be handled
// by two threads at the same moment, and `x = x + 1` on a sig_atomic_t then loses one.
std::atomic<int> g_usr1{0};
std::atomic<int> g_rt{0};
static_assert(std::atomic<int>::is_always_lock_free);

// Async-signal-safe "<name> <n>\n" (signal-safety(7): write only).
void write_counter(char* buf, size_t* len, const char* name, long n) {
    size_t l = *len;
    for (const char* p = name; *p; ++p) buf[l++] = *p;
    buf[l++] = ' ';
    char digits[24];
    int d = 0;
    do {
        digits[d++] = static_cast<char>('0' + n % 10);
        n /= 10;
    } while (n > 0);
    while (d > 0) buf[l++] = digits[--d];
    *len = l;
}

extern "C" void on_usr1(int) {
    const int usr1 = g_usr1.fetch_add(1) + 1;
    char buf[64];
    size_t len = 0;
    write_counter(buf, &len, "usr1", usr1);
    buf[len++] = '\n';
    ssize_t n = write(g_report_fd, buf, len);
    (void)n;
}

extern "C" void on_rt(int) { g_rt.fetch_add(1); }

extern "C" void on_usr2(int) {
    char buf[96];
    size_t len = 0;
    write_counter(buf, &len, "rt", g_rt.load());
    buf[len++] = ' ';
    write_counter(buf, &len, "usr1", g_usr1.load());
    buf[len++] = '\n';
    ssize_t n = write(g_report_fd, buf, len);
    (void)n;
}

TARGET_NOINLINE void spin() {
    volatile unsigned long x = 0;
    for (;;) {
        for (int i = 0; i < 1000; ++i) x = x + static_cast<unsigned long>(i);
        target::escape(&x);
    }
}

TARGET_NOINLINE void doze() {
    for (;;) {
        timespec ts{0, 50 * 1000 * 1000};
        nanosleep(&ts, nullptr);
    }
}

void worker(int index) {
    std::string name = (index % 2 == 0 ? "spin-" : "doze-") + std::to_string(index);
    target::name_thread(name.c_str());
    g_started.fetch_add(1);
    if (index % 2 == 0) spin();
    doze();
}

TARGET_NOINLINE void short_life() {
    volatile unsigned long x = 0;
    for (int i = 0; i < 20000; ++i) x = x + static_cast<unsigned long>(i);
}

void churn() {
    target::name_thread("churner");
    g_started.fetch_add(1);
    for (;;) {
        std::thread t(short_life);
        t.join();
    }
}

std::atomic<pid_t> g_dstate_tid{0};

// vfork(2): the parent waits, uninterruptibly (killable), until the child execs or exits. The
// child makes only raw system calls: it shares our memory and stack.
long g_dstate_ms = 2000;
bool g_report_vforks = false;
std::atomic<bool> g_ready{false};  // vforks are reported after the ready line only

TARGET_NOINLINE void vfork_forever() {
    target::name_thread("vforker");
    g_dstate_tid = target::current_tid();
    for (long k = 1;; ++k) {
        if (g_report_vforks && g_ready.load()) {
            char buf[48];
            size_t len = 0;
            write_counter(buf, &len, "vfork", k);
            buf[len++] = '\n';
            ssize_t n = write(g_report_fd, buf, len);
            (void)n;
        }
        pid_t child = vfork();
        if (child == 0) {
            timespec ts{g_dstate_ms / 1000, (g_dstate_ms % 1000) * 1000000L};
            syscall(SYS_nanosleep, &ts, nullptr);
            _exit(0);
        }
        if (child > 0) {
            int status = 0;
            while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
            }
        }
    }
}

TARGET_NOINLINE void main_wait() {
    for (;;) {
        timespec ts{0, 10 * 1000 * 1000};
        nanosleep(&ts, nullptr);
    }
}

void install(int sig, void (*handler)(int)) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, nullptr);
}

}  // namespace ptrace_target

int main(int argc, char** argv) {
    using namespace ptrace_target;
    target::allow_any_tracer();
    if (const char* fd = std::getenv("PMPROF_READY_FD")) g_report_fd = std::atoi(fd);
    int threads = 0, expected = 0;
    bool signals = false, churn_mode = false, dstate = false, main_exits = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        if (a == "--signals") signals = true;
        if (a == "--churn") churn_mode = true;
        if (a == "--dstate") dstate = true;
        if (a == "--dstate-ms" && i + 1 < argc) {
            dstate = true;
            g_report_vforks = true;
            g_dstate_ms = std::atol(argv[++i]);
        }
        if (a == "--main-exits") main_exits = true;
    }
    if (signals) {
        install(SIGUSR1, on_usr1);
        install(SIGUSR2, on_usr2);
        install(SIGRTMIN, on_rt);
    }
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) pool.emplace_back(worker, i);
    expected += threads;
    if (churn_mode) {
        pool.emplace_back(churn);
        pool.emplace_back(churn);
        expected += 2;
    }
    if (dstate) pool.emplace_back(vfork_forever);
    while (g_started.load() < expected) std::this_thread::yield();
    std::string ready = "ready pid=" + std::to_string(getpid());
    if (dstate) {
        // Only report once the vfork parent is really in D state.
        while (g_dstate_tid == 0 || target::thread_state(g_dstate_tid) != 'D') {
            timespec ts{0, 1000 * 1000};
            nanosleep(&ts, nullptr);
        }
        ready += " dstate=" + std::to_string(g_dstate_tid.load());
    }
    target::name_thread("main");
    target::report(ready);
    g_ready = true;
    if (main_exits) {
        for (auto& t : pool) t.detach();
        pthread_exit(nullptr);
    }
    main_wait();
}
