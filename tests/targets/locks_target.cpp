// Lock scenarios for the wait-for analysis of `pmprof stacks`. Each argument names a scenario;
// several can run in one process. Threads (names in quotes) and locks (globals, so they have
// symbols):
//
//   deadlock2   "dl2-a" holds g_dl_m1 (std::mutex), waits for g_dl_m2; "dl2-b" the reverse
//   deadlock3   "dl3-a" holds g_fork_a waits g_fork_b, "dl3-b" holds g_fork_b waits g_fork_c,
//               "dl3-c" holds g_fork_c waits g_fork_a (pthread_mutex_t)
//   rwlock      "rw-writer" holds g_rwlock for writing and blocks in read(2); "rw-reader-1",
//               "rw-reader-2" wait in rdlock, "rw-writer-2" waits in wrlock
//   recursive   "rec-holder" holds g_recursive (std::recursive_mutex) 3 times, blocks in read;
//               "rec-waiter" waits
//   errorcheck  "ec-holder" holds g_errorcheck (PTHREAD_MUTEX_ERRORCHECK), blocks in read;
//               "ec-waiter" waits
//   robust      "rb-dier" locks g_robust (robust) and exits; "rb-heir" takes it (EOWNERDEAD),
//               does not make it consistent and blocks in read; "rb-waiter" waits
//   leaked      "lk-leaker" locks g_leaked (normal) and exits; "lk-waiter" waits forever
//   pi          "pi-holder" holds g_pi (PTHREAD_PRIO_INHERIT), blocks in read; "pi-waiter" waits
//   contended   "ct-1".."ct-3" take g_contended in a loop, work ~1 ms inside, sleep 1 ms outside
//   pipe        "pp-holder" holds g_pipe_lock and blocks in read; "pp-waiter" holds g_outer and
//               waits for g_pipe_lock; "pp-waiter-2" waits for g_outer (a chain of three)
//   spin        "sp-spinner" holds g_spin_lock and spins in spin_forever; "sp-waiter" waits
//   cond        "cv-std" waits on g_cv (std::condition_variable), "cv-posix" on g_pcond
//   sem         "sem-1", "sem-2" wait on g_sem (value 0)
//   stackmutex  "st-holder" holds a mutex on its own stack, blocks in read; "st-waiter" waits
//   heapmutex   "hp-holder" holds a mutex main allocated with new, blocks in read; "hp-waiter"
//               waits
//
// Ready line: "ready pid=P <thread>=TID ... <lock>=0xADDR ...", written once every thread that
// blocks is in its expected syscall.
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

namespace locks_target {

int g_block_pipe[2];  // never written: reads block forever

std::mutex g_dl_m1, g_dl_m2;
pthread_mutex_t g_fork_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t g_fork_b = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t g_fork_c = PTHREAD_MUTEX_INITIALIZER;
pthread_rwlock_t g_rwlock = PTHREAD_RWLOCK_INITIALIZER;
std::recursive_mutex g_recursive;
pthread_mutex_t g_errorcheck, g_robust, g_pi;
pthread_mutex_t g_leaked = PTHREAD_MUTEX_INITIALIZER;
std::mutex g_contended;
pthread_mutex_t g_pipe_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t g_outer = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t g_spin_lock = PTHREAD_MUTEX_INITIALIZER;
std::mutex g_cv_mutex;
std::condition_variable g_cv;
pthread_mutex_t g_pcond_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_pcond = PTHREAD_COND_INITIALIZER;
sem_t g_sem;
std::atomic<pthread_mutex_t*> g_stack_mutex{nullptr};
std::atomic<long> g_progress{0};

struct Expect {
    std::string name;
    pid_t tid;
    long syscall;  // -1: do not wait for a syscall (spinner, looping threads)
};
std::mutex g_reg_mutex;
std::vector<Expect> g_threads;
std::vector<std::pair<std::string, const void*>> g_locks;

void announce(const char* name, long syscall) {
    target::name_thread(name);
    std::lock_guard<std::mutex> g(g_reg_mutex);
    g_threads.push_back({name, target::current_tid(), syscall});
}

TARGET_NOINLINE void block_in_read() {
    char c;
    ssize_t n = read(g_block_pipe[0], &c, 1);
    target::escape(&n);
}

std::atomic<size_t> g_spawned{0};

/// Started threads are detached: they block until the process is killed. Each announces itself.
void spawn(std::function<void()> fn) {
    g_spawned.fetch_add(1);
    std::thread(std::move(fn)).detach();
}

// ---- scenarios ----------------------------------------------------------------------------

TARGET_NOINLINE void take_two(std::mutex& first, std::mutex& second, pthread_barrier_t* b) {
    std::lock_guard<std::mutex> g1(first);
    pthread_barrier_wait(b);
    std::lock_guard<std::mutex> g2(second);  // never returns
    target::no_tail_call();
}

TARGET_NOINLINE void take_two_posix(pthread_mutex_t* first, pthread_mutex_t* second,
                                    pthread_barrier_t* b) {
    pthread_mutex_lock(first);
    pthread_barrier_wait(b);
    pthread_mutex_lock(second);  // never returns
    target::no_tail_call();
}

void deadlock2() {
    static pthread_barrier_t b;
    pthread_barrier_init(&b, nullptr, 2);
    spawn([] {
        announce("dl2-a", SYS_futex);
        take_two(g_dl_m1, g_dl_m2, &b);
    });
    spawn([] {
        announce("dl2-b", SYS_futex);
        take_two(g_dl_m2, g_dl_m1, &b);
    });
    g_locks.insert(g_locks.end(), {{"g_dl_m1", &g_dl_m1}, {"g_dl_m2", &g_dl_m2}});
}

void deadlock3() {
    static pthread_barrier_t b;
    pthread_barrier_init(&b, nullptr, 3);
    spawn([] {
        announce("dl3-a", SYS_futex);
        take_two_posix(&g_fork_a, &g_fork_b, &b);
    });
    spawn([] {
        announce("dl3-b", SYS_futex);
        take_two_posix(&g_fork_b, &g_fork_c, &b);
    });
    spawn([] {
        announce("dl3-c", SYS_futex);
        take_two_posix(&g_fork_c, &g_fork_a, &b);
    });
    g_locks.insert(g_locks.end(),
                   {{"g_fork_a", &g_fork_a}, {"g_fork_b", &g_fork_b}, {"g_fork_c", &g_fork_c}});
}

/// `lock` runs in a new thread "holder", which then blocks in read(2); `wait` runs in each
/// waiter once the holder holds.
void holder_and_waiters(const char* holder, std::function<void()> lock,
                        std::vector<const char*> waiters, std::function<void()> wait) {
    auto held = std::make_shared<std::atomic<bool>>(false);
    spawn([=] {
        announce(holder, SYS_read);
        lock();
        held->store(true);
        block_in_read();
    });
    while (!held->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (const char* w : waiters)
        spawn([=] {
            announce(w, SYS_futex);
            wait();
        });
}

TARGET_NOINLINE void read_lock_rw() { pthread_rwlock_rdlock(&g_rwlock); }
TARGET_NOINLINE void write_lock_rw() { pthread_rwlock_wrlock(&g_rwlock); }

void rwlock() {
    holder_and_waiters("rw-writer", write_lock_rw, {"rw-reader-1", "rw-reader-2"}, read_lock_rw);
    spawn([] {
        announce("rw-writer-2", SYS_futex);
        write_lock_rw();
    });
    g_locks.push_back({"g_rwlock", &g_rwlock});
}

TARGET_NOINLINE void lock_recursive_thrice() {
    for (int i = 0; i < 3; ++i) g_recursive.lock();
}

void recursive() {
    holder_and_waiters("rec-holder", lock_recursive_thrice, {"rec-waiter"},
                       [] { g_recursive.lock(); });
    g_locks.push_back({"g_recursive", &g_recursive});
}

void init_mutex(pthread_mutex_t* m, int type, bool robust, bool pi) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, type);
    if (robust) pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (pi) pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

TARGET_NOINLINE void lock_posix(pthread_mutex_t* m) {
    int rc = pthread_mutex_lock(m);
    target::escape(&rc);
}

void errorcheck() {
    init_mutex(&g_errorcheck, PTHREAD_MUTEX_ERRORCHECK, false, false);
    holder_and_waiters(
        "ec-holder", [] { lock_posix(&g_errorcheck); }, {"ec-waiter"},
        [] { lock_posix(&g_errorcheck); });
    g_locks.push_back({"g_errorcheck", &g_errorcheck});
}

void robust() {
    init_mutex(&g_robust, PTHREAD_MUTEX_NORMAL, true, false);
    std::thread dier([] {
        target::name_thread("rb-dier");
        pthread_mutex_lock(&g_robust);  // and exit holding it
    });
    dier.join();
    holder_and_waiters(
        "rb-heir",
        [] {
            int rc = pthread_mutex_lock(&g_robust);
            if (rc != EOWNERDEAD) std::fprintf(stderr, "robust: rc %d\n", rc);
        },
        {"rb-waiter"}, [] { lock_posix(&g_robust); });
    g_locks.push_back({"g_robust", &g_robust});
}

void leaked() {
    std::thread leaker([] {
        target::name_thread("lk-leaker");
        {
            std::lock_guard<std::mutex> g(g_reg_mutex);
            g_threads.push_back({"lk-leaker", target::current_tid(), -2});  // -2: exited
        }
        pthread_mutex_lock(&g_leaked);  // and exit holding it
    });
    leaker.join();
    spawn([] {
        announce("lk-waiter", SYS_futex);
        lock_posix(&g_leaked);
    });
    g_locks.push_back({"g_leaked", &g_leaked});
}

void pi() {
    init_mutex(&g_pi, PTHREAD_MUTEX_NORMAL, false, true);
    holder_and_waiters(
        "pi-holder", [] { lock_posix(&g_pi); }, {"pi-waiter"}, [] { lock_posix(&g_pi); });
    g_locks.push_back({"g_pi", &g_pi});
}

TARGET_NOINLINE void work_inside(long us) {
    auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    while (std::chrono::steady_clock::now() < end) target::escape(&us);
}

void contended() {
    for (const char* name : {"ct-1", "ct-2", "ct-3"})
        spawn([=] {
            announce(name, -1);
            while (true) {
                {
                    std::lock_guard<std::mutex> g(g_contended);
                    work_inside(1000);
                    g_progress.fetch_add(1);
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        });
    g_locks.push_back({"g_contended", &g_contended});
}

void pipe_chain() {
    holder_and_waiters(
        "pp-holder", [] { lock_posix(&g_pipe_lock); }, {}, [] {});
    auto held = std::make_shared<std::atomic<bool>>(false);
    spawn([=] {
        announce("pp-waiter", SYS_futex);
        pthread_mutex_lock(&g_outer);
        held->store(true);
        lock_posix(&g_pipe_lock);
    });
    while (!held->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    spawn([] {
        announce("pp-waiter-2", SYS_futex);
        lock_posix(&g_outer);
    });
    g_locks.insert(g_locks.end(), {{"g_pipe_lock", &g_pipe_lock}, {"g_outer", &g_outer}});
}

TARGET_NOINLINE void spin_forever() {
    volatile unsigned long n = 0;
    while (true) n = n + 1;
}

void spin() {
    auto held = std::make_shared<std::atomic<bool>>(false);
    spawn([=] {
        announce("sp-spinner", -1);
        pthread_mutex_lock(&g_spin_lock);
        held->store(true);
        spin_forever();
    });
    while (!held->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    spawn([] {
        announce("sp-waiter", SYS_futex);
        lock_posix(&g_spin_lock);
    });
    g_locks.push_back({"g_spin_lock", &g_spin_lock});
}

void cond() {
    spawn([] {
        announce("cv-std", SYS_futex);
        std::unique_lock<std::mutex> l(g_cv_mutex);
        g_cv.wait(l, [] { return false; });
    });
    spawn([] {
        announce("cv-posix", SYS_futex);
        pthread_mutex_lock(&g_pcond_mutex);
        while (true) pthread_cond_wait(&g_pcond, &g_pcond_mutex);
    });
    g_locks.insert(g_locks.end(), {{"g_cv", &g_cv}, {"g_pcond", &g_pcond}});
}

TARGET_NOINLINE void wait_sem() {
    while (sem_wait(&g_sem) != 0) {
    }
}

void sem() {
    sem_init(&g_sem, 0, 0);
    for (const char* name : {"sem-1", "sem-2"})
        spawn([=] {
            announce(name, SYS_futex);
            wait_sem();
        });
    g_locks.push_back({"g_sem", &g_sem});
}

void stack_mutex() {
    spawn([] {
        announce("st-holder", SYS_read);
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&m);
        g_stack_mutex.store(&m);
        block_in_read();
    });
    while (g_stack_mutex.load() == nullptr)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    spawn([] {
        announce("st-waiter", SYS_futex);
        lock_posix(g_stack_mutex.load());
    });
    g_locks.push_back({"stack_mutex", g_stack_mutex.load()});
}

void heap_mutex() {
    // Allocated by main (the main arena, in [heap]) before any other scenario's threads.
    static pthread_mutex_t* m = new pthread_mutex_t(PTHREAD_MUTEX_INITIALIZER);
    holder_and_waiters(
        "hp-holder", [] { lock_posix(m); }, {"hp-waiter"}, [] { lock_posix(m); });
    g_locks.push_back({"heap_mutex", m});
}

// ---- main ---------------------------------------------------------------------------------

bool all_blocked() {
    std::lock_guard<std::mutex> g(g_reg_mutex);
    for (const Expect& e : g_threads) {
        if (e.syscall < 0) continue;
        if (target::thread_state(e.tid) != 'S' || target::thread_syscall(e.tid) != e.syscall)
            return false;
    }
    return true;
}

}  // namespace locks_target

int main(int argc, char** argv) {
    using namespace locks_target;
    target::allow_any_tracer();
    if (pipe(g_block_pipe) != 0) return 1;
    const std::vector<std::pair<std::string, void (*)()>> scenarios = {{"deadlock2", deadlock2},
                                                                       {"deadlock3", deadlock3},
                                                                       {"rwlock", rwlock},
                                                                       {"recursive", recursive},
                                                                       {"errorcheck", errorcheck},
                                                                       {"robust", robust},
                                                                       {"leaked", leaked},
                                                                       {"pi", pi},
                                                                       {"contended", contended},
                                                                       {"pipe", pipe_chain},
                                                                       {"spin", spin},
                                                                       {"cond", cond},
                                                                       {"sem", sem},
                                                                       {"heapmutex", heap_mutex},
                                                                       {"stackmutex", stack_mutex}};
    size_t started = 0;
    for (int i = 1; i < argc; ++i)
        for (const auto& [name, fn] : scenarios)
            if (name == argv[i]) {
                fn();
                ++started;
            }
    if (started == 0) {
        std::fprintf(stderr, "usage: locks_target SCENARIO...\n");
        return 64;
    }
    // Every spawned thread has announced itself, and every blocking one is blocked (checked
    // twice: a waiter announces itself right before it blocks).
    auto announced = [] {
        std::lock_guard<std::mutex> g(g_reg_mutex);
        size_t n = 0;
        for (const Expect& e : g_threads) n += e.syscall == -2 ? 0 : 1;
        return n;
    };
    for (int round = 0; round < 2; ++round) {
        while (announced() < g_spawned.load() || !all_blocked())
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::string line = "ready pid=" + std::to_string(getpid());
    {
        std::lock_guard<std::mutex> g(g_reg_mutex);
        for (const Expect& e : g_threads) line += " " + e.name + "=" + std::to_string(e.tid);
    }
    char buf[64];
    for (const auto& [name, addr] : g_locks) {
        std::snprintf(buf, sizeof buf, " %s=%p", name.c_str(), addr);
        line += buf;
    }
    target::report(line);
    target::name_thread("main");
    while (true) pause();
}
