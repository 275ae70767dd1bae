// The floor of one ptrace sample on this machine, for bench/README.md: PTRACE_INTERRUPT, waitpid,
// GETREGS, one 4 KiB process_vm_readv, PTRACE_CONT on one busy child, N times; prints the
// tracer's cpu and wall time per sample. Run it as is (tracer and child on different cpus) and
// under `taskset -c 0` (one cpu). Build: g++ -O2 -o ptrace_floor bench/ptrace_floor.cpp
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/user.h>
#include <sys/uio.h>
#include <sys/resource.h>
#include <pthread.h>
#include <unistd.h>
#include <signal.h>
#include <cstdio>
#include <cstdlib>
#include <ctime>
int main(int argc, char** argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    pid_t child = fork();
    if (child == 0) { volatile unsigned long x = 0; for (;;) x++; }
    ptrace(PTRACE_SEIZE, child, 0, 0);
    char buf[4096];
    rusage r0, r1; getrusage(RUSAGE_SELF, &r0);
    timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        ptrace(PTRACE_INTERRUPT, child, 0, 0);
        int st; waitpid(child, &st, __WALL);
        user_regs_struct regs; ptrace(PTRACE_GETREGS, child, 0, &regs);
        iovec l{buf, sizeof buf}, rm{reinterpret_cast<void*>(regs.rsp & ~4095UL), sizeof buf};
        process_vm_readv(child, &l, 1, &rm, 1, 0);
        ptrace(PTRACE_CONT, child, 0, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1); getrusage(RUSAGE_SELF, &r1);
    double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1e6 + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec)
               + (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e6 + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
    double wall = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
    printf("%d samples: tracer cpu %.1f us/sample, wall %.1f us/sample\n", n, cpu / n, wall / n);
    kill(child, SIGKILL); waitpid(child, nullptr, 0);
}
