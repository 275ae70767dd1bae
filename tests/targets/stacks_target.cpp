// The main target for `pmprof stacks`: named threads, each parked in a distinctive noinline
// function, covering the shapes an unwinder and symbolizer must get right:
//
//   reader      blocked_in_read            read(2) on a pipe nobody writes
//   condwait    wait_on_condition          pthread_cond_wait (futex)
//   epoller     wait_in_epoll              epoll_wait, retried on EINTR (a ptrace stop causes one)
//   sleeper     sleep_in_nanosleep         nanosleep, 1000 s at a time
//   spinner     spin_leaf                  a busy loop in a leaf (omitted with --no-spinner)
//   recurser    recurse(20) -> ... -> recurse(0) -> recurse_leaf: 21 recurse frames, then read(2)
//   sorter      sort_with_libc -> qsort -> compare_ints -> block_in_comparator
//               (a path through libc: the comparator blocks on its first call)
//   sighandler  raise_and_block -> pthread_kill(self, SIGUSR2) -> on_sigusr2 -> handler_blocks
//               (a signal frame: the handler blocks in read(2))
//   inliner     blocked_via_inline -> inline_read_helper (always_inline) -> read(2)
//   worker-1..3 worker_wait                three threads with identical stacks (grouping)
//   vforker     vfork_in_loop (--dstate)   parent thread in D state while its vfork child sleeps
//   idle-K      idle_thread (--threads N)  N extra identical idle threads
//   main        main_wait -> pthread_join(reader), or pthread_exit with --main-exits
//
// Every blocking or calling line carries a `// @line:NAME` marker so tests compute expected line
// numbers from this source (pmprof::test::marker_line). Readiness: each thread announces itself
// just before it blocks; main then waits until /proc shows every announced thread blocked in its
// expected syscall and only then reports
//   "ready pid=P threads=N reader=TID condwait=TID ... worker-1=TID ..."
// (idle threads are counted in threads= but not listed).
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

namespace stacks_target {

// A pipe that is never written: reads on it block forever. The write end stays open so reads
// never see EOF.
int g_block_pipe[2];

// ---- readiness ----------------------------------------------------------------------------

struct Announced {
    std::string name;
    pid_t tid = 0;
    std::vector<long> syscalls;  // expected syscall numbers; empty: do not check (spinner)
    char state = 'S';            // expected state once blocked; 0: do not check
};

pthread_mutex_t g_announce_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_announce_cond = PTHREAD_COND_INITIALIZER;
std::vector<Announced> g_announced;

// Called by each thread right before it blocks.
void announce(const char* name, std::vector<long> syscalls, char state = 'S') {
    target::name_thread(name);
    pthread_mutex_lock(&g_announce_mutex);
    g_announced.push_back({name, target::current_tid(), std::move(syscalls), state});
    pthread_cond_broadcast(&g_announce_cond);
    pthread_mutex_unlock(&g_announce_mutex);
}

// ---- the blocking leaves --------------------------------------------------------------------

TARGET_NOINLINE void blocked_in_read() {
    char c;
    ssize_t n = read(g_block_pipe[0], &c, 1);  // @line:read
    target::escape(&n);
}

pthread_mutex_t g_cond_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
bool g_never = false;

TARGET_NOINLINE void wait_on_condition() {
    pthread_mutex_lock(&g_cond_mutex);
    while (!g_never) pthread_cond_wait(&g_cond, &g_cond_mutex);  // @line:condwait
    pthread_mutex_unlock(&g_cond_mutex);
}

TARGET_NOINLINE void wait_in_epoll() {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, g_block_pipe[0], &ev);
    epoll_event out[4];
    for (;;) {
        int n = epoll_wait(ep, out, 4, -1);  // @line:epoll
        target::escape(&n);
    }
}

TARGET_NOINLINE void sleep_in_nanosleep() {
    for (;;) {
        timespec ts{1000, 0};
        nanosleep(&ts, nullptr);  // @line:nanosleep
    }
}

TARGET_NOINLINE void spin_leaf() {
    volatile uint64_t x = 1;
    for (;;) x = x * 6364136223846793005ULL + 1442695040888963407ULL;  // @line:spin
}

TARGET_NOINLINE void recurse_leaf() {
    char c;
    ssize_t n = read(g_block_pipe[0], &c, 1);  // @line:recurse_leaf
    target::escape(&n);
}

/// depth + 1 frames of recurse() above recurse_leaf(); the work after the call keeps it from being
/// turned into a tail call or a loop.
TARGET_NOINLINE int recurse(int depth) {
    if (depth <= 0) {
        recurse_leaf();  // @line:recurse_bottom
        return 0;
    }
    int r = recurse(depth - 1);  // @line:recurse_call
    target::escape(&r);
    return r + 1;
}

TARGET_NOINLINE void block_in_comparator() {
    char c;
    ssize_t n = read(g_block_pipe[0], &c, 1);  // @line:comparator_read
    target::escape(&n);
}

TARGET_NOINLINE int compare_ints(const void* a, const void* b) {
    block_in_comparator();  // @line:comparator_call
    int x = *static_cast<const int*>(a);
    int y = *static_cast<const int*>(b);
    return (x > y) - (x < y);
}

TARGET_NOINLINE void sort_with_libc() {
    int values[16] = {5, 3, 9, 1, 7, 2, 8, 6, 4, 0, 15, 11, 13, 10, 12, 14};
    qsort(values, 16, sizeof(int), compare_ints);  // @line:qsort_call
    target::escape(values);
}

TARGET_NOINLINE void handler_blocks() {
    char c;
    ssize_t n = read(g_block_pipe[0], &c, 1);  // @line:sighandler_read
    target::escape(&n);
}

TARGET_NOINLINE void on_sigusr2(int) {
    handler_blocks();  // @line:sighandler_call
    target::no_tail_call();
}

TARGET_NOINLINE void raise_and_block() {
    pthread_kill(pthread_self(), SIGUSR2);  // @line:raise
    target::no_tail_call();
}

// always_inline: the read's caller frame is an inline frame of blocked_via_inline.
static inline __attribute__((always_inline)) void inline_read_helper() {
    char c;
    ssize_t n = read(g_block_pipe[0], &c, 1);  // @line:inline_read
    target::escape(&n);
}

TARGET_NOINLINE void blocked_via_inline() {
    inline_read_helper();  // @line:inline_call
}

pthread_mutex_t g_worker_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_worker_cond = PTHREAD_COND_INITIALIZER;

TARGET_NOINLINE void worker_wait() {
    pthread_mutex_lock(&g_worker_mutex);
    while (!g_never) pthread_cond_wait(&g_worker_cond, &g_worker_mutex);  // @line:worker_wait
    pthread_mutex_unlock(&g_worker_mutex);
}

TARGET_NOINLINE void idle_thread() {
    char c;
    ssize_t n = read(g_block_pipe[0], &c, 1);  // @line:idle_read
    target::escape(&n);
}

// vfork(2) suspends the calling thread until the child execs or exits, in a killable
// uninterruptible wait: /proc shows the parent thread in state D. The child only makes raw
// syscalls (it shares our memory) and exits after ~3 s.
TARGET_NOINLINE void vfork_in_loop() {
    for (;;) {
        static const timespec kChildSleep{3, 0};
        pid_t child = vfork();  // @line:vfork
        if (child == 0) {
            syscall(SYS_nanosleep, &kChildSleep, nullptr);
            _exit(0);
        }
        if (child < 0) return;
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
    }
}

// ---- thread entry points ----------------------------------------------------------------------

const std::vector<long> kRead = {SYS_read};
const std::vector<long> kFutex = {SYS_futex};

TARGET_NOINLINE void* reader_thread(void*) {
    announce("reader", kRead);
    blocked_in_read();  // @line:reader_call
    return nullptr;
}

TARGET_NOINLINE void* condwait_thread(void*) {
    announce("condwait", kFutex);
    wait_on_condition();  // @line:condwait_call
    return nullptr;
}

TARGET_NOINLINE void* epoller_thread(void*) {
    announce("epoller", {SYS_epoll_wait, SYS_epoll_pwait});
    wait_in_epoll();  // @line:epoll_call
    return nullptr;
}

TARGET_NOINLINE void* sleeper_thread(void*) {
    announce("sleeper", {SYS_nanosleep, SYS_clock_nanosleep});
    sleep_in_nanosleep();  // @line:nanosleep_call
    return nullptr;
}

TARGET_NOINLINE void* spinner_thread(void*) {
    announce("spinner", {}, 0);
    spin_leaf();  // @line:spin_call
    return nullptr;
}

TARGET_NOINLINE void* recurser_thread(void*) {
    announce("recurser", kRead);
    int r = recurse(20);  // @line:recurse_start
    target::escape(&r);
    return nullptr;
}

TARGET_NOINLINE void* sorter_thread(void*) {
    announce("sorter", kRead);
    sort_with_libc();  // @line:sorter_call
    return nullptr;
}

TARGET_NOINLINE void* sighandler_thread(void*) {
    struct sigaction sa {};
    sa.sa_handler = on_sigusr2;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, nullptr);
    announce("sighandler", kRead);
    raise_and_block();  // @line:sighandler_thread_call
    return nullptr;
}

TARGET_NOINLINE void* inliner_thread(void*) {
    announce("inliner", kRead);
    blocked_via_inline();  // @line:inliner_call
    return nullptr;
}

TARGET_NOINLINE void* worker_thread(void* arg) {
    announce(static_cast<const char*>(arg), kFutex);
    worker_wait();  // @line:worker_call
    return nullptr;
}

TARGET_NOINLINE void* vforker_thread(void*) {
    // Checked as D only: the syscall shown during the vfork wait is the vfork itself.
    announce("vforker", {}, 'D');
    vfork_in_loop();  // @line:vforker_call
    return nullptr;
}

TARGET_NOINLINE void* idle_thread_main(void* arg) {
    announce(static_cast<const char*>(arg), kRead);
    idle_thread();  // @line:idle_call
    return nullptr;
}

TARGET_NOINLINE void main_wait(pthread_t reader) {
    pthread_join(reader, nullptr);  // @line:main_join
    target::no_tail_call();
}

// ---- main -------------------------------------------------------------------------------------

struct Options {
    bool main_exits = false;
    bool dstate = false;
    bool spinner = true;
    int idle_threads = 0;
};

Options parse_options(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--main-exits") {
            opt.main_exits = true;
        } else if (arg == "--dstate") {
            opt.dstate = true;
        } else if (arg == "--no-spinner") {
            opt.spinner = false;
        } else if (arg == "--threads" && i + 1 < argc) {
            opt.idle_threads = std::atoi(argv[++i]);
        } else {
            std::fprintf(stderr,
                         "usage: %s [--main-exits] [--dstate] [--no-spinner] [--threads N]\n",
                         argv[0]);
            std::exit(64);
        }
    }
    return opt;
}

pthread_t spawn(void* (*entry)(void*), void* arg = nullptr) {
    pthread_t t;
    int rc = pthread_create(&t, nullptr, entry, arg);
    if (rc != 0) {
        std::fprintf(stderr, "pthread_create: %s\n", std::strerror(rc));
        std::exit(1);
    }
    return t;
}

// True once `a` sits where it announced it would block, as /proc shows it.
bool settled(const Announced& a) {
    if (a.state == 0) return true;
    if (target::thread_state(a.tid) != a.state) return false;
    if (a.syscalls.empty()) return true;
    long nr = target::thread_syscall(a.tid);
    for (long want : a.syscalls) {
        if (nr == want) return true;
    }
    return false;
}

// Waits until `expected` threads announced and all of them are blocked where they should be;
// exits with a message on the harness pipe after 10 s.
void wait_until_settled(size_t expected) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        pthread_mutex_lock(&g_announce_mutex);
        std::vector<Announced> seen = g_announced;
        pthread_mutex_unlock(&g_announce_mutex);
        std::string pending;
        for (const auto& a : seen) {
            if (!settled(a)) pending += " " + a.name;
        }
        if (seen.size() == expected && pending.empty()) return;
        if (std::chrono::steady_clock::now() > deadline) {
            target::report("error: threads not settled (" + std::to_string(seen.size()) + "/" +
                           std::to_string(expected) + " announced; unsettled:" + pending + ")");
            std::exit(1);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

std::string ready_line(size_t thread_count) {
    std::string line =
        "ready pid=" + std::to_string(getpid()) + " threads=" + std::to_string(thread_count);
    for (const auto& a : g_announced) {
        if (a.name.rfind("idle-", 0) != 0) line += " " + a.name + "=" + std::to_string(a.tid);
    }
    return line;
}

}  // namespace stacks_target

int main(int argc, char** argv) {
    using namespace stacks_target;
    Options opt = parse_options(argc, argv);
    target::allow_any_tracer();
    if (pipe2(g_block_pipe, O_CLOEXEC) != 0) {
        std::perror("pipe2");
        return 1;
    }
    static const char* const kWorkerNames[] = {"worker-1", "worker-2", "worker-3"};
    static std::vector<std::string> idle_names;
    for (int i = 0; i < opt.idle_threads; ++i) idle_names.push_back("idle-" + std::to_string(i));

    pthread_t reader = spawn(reader_thread);
    spawn(condwait_thread);
    spawn(epoller_thread);
    spawn(sleeper_thread);
    if (opt.spinner) spawn(spinner_thread);
    spawn(recurser_thread);
    spawn(sorter_thread);
    spawn(sighandler_thread);
    spawn(inliner_thread);
    for (const char* name : kWorkerNames) spawn(worker_thread, const_cast<char*>(name));
    if (opt.dstate) spawn(vforker_thread);
    for (auto& name : idle_names) spawn(idle_thread_main, name.data());

    size_t expected = 11 + (opt.spinner ? 1 : 0) + (opt.dstate ? 1 : 0) + idle_names.size();
    wait_until_settled(expected);
    target::report(ready_line(expected + 1));
    if (opt.main_exits) pthread_exit(nullptr);  // leaves a zombie thread-group leader
    main_wait(reader);                          // @line:main_call
    return 0;
}
