// The floor of one ptrace sample on this machine, for bench/README.md: PTRACE_INTERRUPT, wait,
// GETREGS, one 4 KiB process_vm_readv, PTRACE_CONT, on -c busy children (interrupted together,
// then collected, as pmprof does), -n rounds, -i µs apart. Prints the tracer's cpu, wall time,
// voluntary context switches per sample and the children's loop rate against an untraced second
// before (the target's cost). Variants, to find where the time goes:
//   -w block     waitpid(tid, __WALL) per child, blocking (the tracer sleeps until each stop)
//   -w sigfd     signalfd(SIGCHLD) + ppoll + read, then waitpid WNOHANG (pmprof until the
//   asynchronous sampler) -w sigwait   waitpid WNOHANG, then sigwaitinfo(SIGCHLD)
//   (src/ptrace/events.cpp now) -w spin      waitid(P_ALL, WNOHANG) spun for up to -s µs, then as
//   sigfd -r getregset PTRACE_GETREGSET (NT_PRSTATUS) instead of PTRACE_GETREGS -p NICE      tracer
//   nice value; -f: tracer SCHED_FIFO 1; -b N: N untraced busy processes -x           tracer pinned
//   to cpu 0, traced children to cpu 1 (the scheduler's wake-affine
//                placement otherwise often puts a resumed child on the tracer's cpu)
// Build: g++ -O2 -o ptrace_floor bench/ptrace_floor.cpp. Run as is (tracer and children on any
// cpu) and under `taskset -c 0` (one cpu).
#include <elf.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

double now_us() {
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

double cpu_us(const rusage& r) {
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

std::atomic<unsigned long>* g_loops;  // one counter per child, in shared memory

[[noreturn]] void busy(int i) {
    if (i >= 0)
        for (;;) g_loops[i].fetch_add(1, std::memory_order_relaxed);
    for (unsigned long x = 0;; ++x) asm volatile("" : "+r"(x));
}

unsigned long total_loops(int n) {
    unsigned long s = 0;
    for (int i = 0; i < n; ++i) s += g_loops[i].load();
    return s;
}

struct Opt {
    int rounds = 20000, children = 1, spin_us = 50, interval_us = 0, nice = 0, background = 0;
    std::string wait = "block", regs = "getregs";
    bool fifo = false, cross = false;
};

void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

// Reaps one stop of any child; false when none is pending (nonblocking) or on error.
bool reap_any(bool block, pid_t* tid) {
    int st = 0;
    pid_t r = waitpid(-1, &st, __WALL | (block ? 0 : WNOHANG));
    *tid = r;
    return r > 0;
}

}  // namespace

int main(int argc, char** argv) {
    Opt o;
    for (int c; (c = getopt(argc, argv, "n:c:w:s:i:r:p:fxb:")) != -1;) {
        // clang-format off
        switch (c) {
        case 'n': o.rounds = atoi(optarg); break;
        case 'c': o.children = atoi(optarg); break;
        case 'w': o.wait = optarg; break;
        case 's': o.spin_us = atoi(optarg); break;
        case 'i': o.interval_us = atoi(optarg); break;
        case 'r': o.regs = optarg; break;
        case 'p': o.nice = atoi(optarg); break;
        case 'f': o.fifo = true; break;
        case 'x': o.cross = true; break;
        case 'b': o.background = atoi(optarg); break;
        default: fprintf(stderr, "usage: see the comment at the top\n"); return 64;
        }
        // clang-format on
    }
    void* shm = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    g_loops = static_cast<std::atomic<unsigned long>*>(shm);
    std::vector<pid_t> kids, bg;
    for (int i = 0; i < o.children; ++i)
        if (pid_t p = fork(); p == 0) {
            if (o.cross) pin(1);
            busy(i);
        } else
            kids.push_back(p);
    for (int i = 0; i < o.background; ++i)
        if (pid_t p = fork(); p == 0)
            busy(-1);
        else
            bg.push_back(p);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, nullptr);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    // The untraced rate first: what the children do per second without us.
    usleep(200000);
    double b0 = now_us();
    unsigned long l0 = total_loops(o.children);
    usleep(1000000);
    double base_rate = static_cast<double>(total_loops(o.children) - l0) / (now_us() - b0);

    if (o.cross) pin(0);
    if (o.nice) setpriority(PRIO_PROCESS, 0, o.nice);
    if (o.fifo) {
        sched_param sp{1};
        sched_setscheduler(0, SCHED_FIFO, &sp);
    }
    for (pid_t k : kids) ptrace(PTRACE_SEIZE, k, 0, 0);
    char buf[4096];
    long spin_hits = 0, spin_polls = 0;
    double phase[5] = {};  // wall µs: interrupt, wait, regs, readv, cont
    rusage r0{}, r1{};
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now_us();
    unsigned long loops0 = total_loops(o.children);
    timespec next{};
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (int i = 0; i < o.rounds; ++i) {
        if (o.interval_us) {  // a sampler's tick: sleep to an absolute time
            next.tv_nsec += o.interval_us * 1000L;
            while (next.tv_nsec >= 1000000000L) next.tv_nsec -= 1000000000L, ++next.tv_sec;
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr);
        }
        double t = now_us();
        for (pid_t k : kids) ptrace(PTRACE_INTERRUPT, k, 0, 0);
        phase[0] += now_us() - t;
        for (int left = o.children; left > 0;) {
            pid_t tid = 0;
            t = now_us();
            if (o.wait == "block") {
                reap_any(true, &tid);
            } else {
                bool got = false;
                if (o.wait == "spin") {
                    double until = now_us() + o.spin_us;
                    do {
                        ++spin_polls;
                        got = reap_any(false, &tid);
                    } while (!got && now_us() < until);
                    spin_hits += got;
                }
                while (!got) {
                    if (!(got = reap_any(false, &tid)) && o.wait == "sigwait") {
                        sigwaitinfo(&chld, nullptr);
                    } else if (!got) {
                        pollfd p{sfd, POLLIN, 0};
                        ppoll(&p, 1, nullptr, nullptr);
                        signalfd_siginfo si[8];
                        while (read(sfd, si, sizeof si) > 0) {
                        }
                    }
                }
            }
            phase[1] += now_us() - t;
            t = now_us();
            user_regs_struct regs{};
            if (o.regs == "getregset") {
                iovec io{&regs, sizeof regs};
                ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, &io);
            } else {
                ptrace(PTRACE_GETREGS, tid, 0, &regs);
            }
            phase[2] += now_us() - t;
            t = now_us();
            iovec l{buf, sizeof buf}, rm{reinterpret_cast<void*>(regs.rsp & ~4095UL), sizeof buf};
            process_vm_readv(tid, &l, 1, &rm, 1, 0);
            phase[3] += now_us() - t;
            t = now_us();
            ptrace(PTRACE_CONT, tid, 0, 0);
            phase[4] += now_us() - t;
            --left;
        }
    }
    double wall = now_us() - t0;
    double rate = static_cast<double>(total_loops(o.children) - loops0) / wall;
    getrusage(RUSAGE_SELF, &r1);
    const double n = static_cast<double>(o.rounds) * o.children;
    printf("%s %s c=%d i=%d nice=%d%s%s b=%d: %.0f samples: tracer cpu %.1f us/sample, wall %.1f "
           "us/round, %.2f vol. switches/sample, children at %.1f %% of untraced",
           o.wait.c_str(), o.regs.c_str(), o.children, o.interval_us, o.nice, o.fifo ? " fifo" : "",
           o.cross ? " cross" : "", o.background, n, (cpu_us(r1) - cpu_us(r0)) / n, wall / o.rounds,
           static_cast<double>(r1.ru_nvcsw - r0.ru_nvcsw) / n, 100 * rate / base_rate);
    printf("\n  wall us/sample: interrupt %.1f, wait %.1f, regs %.1f, readv %.1f, cont %.1f",
           phase[0] / n, phase[1] / n, phase[2] / n, phase[3] / n, phase[4] / n);
    if (o.wait == "spin")
        printf(", spin found %.1f %% (%.1f polls/sample)", 100.0 * spin_hits / n, spin_polls / n);
    printf("\n");
    for (pid_t k : kids) kill(k, SIGKILL);
    for (pid_t k : bg) kill(k, SIGKILL);
    for (size_t i = 0; i < kids.size() + bg.size(); ++i) wait(nullptr);
}
