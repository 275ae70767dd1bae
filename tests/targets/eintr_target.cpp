// Target for "detach without a stop": one thread each blocked in a call that fails
// with EINTR when its thread is stopped by a tracer (docs/facts.md): epoll_wait, semop,
// sigtimedwait and recv on a socket with SO_RCVTIMEO. Each counts the EINTRs it sees. Every signal
// is blocked in those threads, so only a ptrace stop can make their calls fail.
//
//   --semid ID   the SysV semaphore set to wait on (created and removed by the test, so a killed
//                target leaves nothing behind); without it, no semop thread.
//
// Reports "ready pid=P epoll=TID semop=TID sigwait=TID recv=TID" on the harness pipe, then
// "counts epoll=N semop=N sigwait=N recv=N" on SIGUSR2 (taken by sigtimedwait in main).
#include <signal.h>
#include <sys/epoll.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

namespace {

std::atomic<long> g_epoll{0}, g_semop{0}, g_sigwait{0}, g_recv{0};
std::atomic<pid_t> g_tid_epoll{0}, g_tid_semop{0}, g_tid_sigwait{0}, g_tid_recv{0};
std::atomic<int> g_started{0};

void started(const char* name, std::atomic<pid_t>& tid) {
    target::name_thread(name);
    tid = target::current_tid();
    ++g_started;
}

void epoll_thread() {
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev);
    started("blk-epoll", g_tid_epoll);
    for (;;) {
        epoll_event out{};
        if (epoll_wait(ep, &out, 1, -1) < 0 && errno == EINTR) ++g_epoll;
    }
}

void semop_thread(int semid) {
    started("blk-semop", g_tid_semop);
    for (;;) {
        sembuf op{0, -1, 0};  // the value stays 0: waits forever
        if (semop(semid, &op, 1) < 0) {
            if (errno == EINTR) ++g_semop;
            if (errno == EIDRM || errno == EINVAL) pause();  // removed by the test: done
        }
    }
}

void sigwait_thread() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 3);  // never sent
    started("blk-sigwait", g_tid_sigwait);
    for (;;) {
        timespec ts{3600, 0};
        if (sigtimedwait(&set, nullptr, &ts) < 0 && errno == EINTR) ++g_sigwait;
    }
}

void recv_thread() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    // A receive timeout turns the kernel's restartable wait into EINTR (sock_intr_errno).
    timeval tv{600, 0};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    started("blk-recv", g_tid_recv);
    for (;;) {
        char c;
        if (recv(sv[0], &c, 1, 0) < 0 && errno == EINTR) ++g_recv;
    }
}

}  // namespace

int main(int argc, char** argv) {
    target::allow_any_tracer();
    int semid = -1;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--semid") == 0) semid = std::atoi(argv[i + 1]);
    // Every signal blocked in every thread; main takes its commands with sigtimedwait.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    std::vector<std::thread> threads;
    threads.emplace_back(epoll_thread);
    threads.emplace_back(sigwait_thread);
    threads.emplace_back(recv_thread);
    if (semid >= 0) threads.emplace_back(semop_thread, semid);
    const int expected = semid >= 0 ? 4 : 3;
    while (g_started.load() < expected) usleep(1000);
    // Each one is in its call before "ready" (state S in /proc).
    for (pid_t tid :
         {g_tid_epoll.load(), g_tid_sigwait.load(), g_tid_recv.load(), g_tid_semop.load()})
        while (tid != 0 && target::thread_state(tid) != 'S') usleep(1000);
    target::name_thread("main");
    target::report("ready pid=" + std::to_string(getpid()) +
                   " epoll=" + std::to_string(g_tid_epoll.load()) +
                   " semop=" + std::to_string(g_tid_semop.load()) +
                   " sigwait=" + std::to_string(g_tid_sigwait.load()) +
                   " recv=" + std::to_string(g_tid_recv.load()));
    sigset_t cmds;
    sigemptyset(&cmds);
    sigaddset(&cmds, SIGUSR2);
    sigaddset(&cmds, SIGTERM);
    for (;;) {
        const int sig = sigwaitinfo(&cmds, nullptr);  // EINTR after a ptrace stop: retry
        if (sig == SIGTERM) _exit(0);
        if (sig != SIGUSR2) continue;
        char buf[160];
        std::snprintf(buf, sizeof buf, "counts epoll=%ld semop=%ld sigwait=%ld recv=%ld",
                      g_epoll.load(), g_semop.load(), g_sigwait.load(), g_recv.load());
        target::report(buf);
    }
}
