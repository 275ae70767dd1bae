// Process trees, for --subprocesses (tests/integration/test_subprocesses.cpp).
//   tree_target master N     an nginx-like master: forks N workers, each burning cpu in
//                            worker_burn() (its comm "tree-worker"), while the master itself
//                            sleeps in master_wait(); prints "ready PID W1 W2 ..." once every
//                            worker runs; the workers die with the master (PR_SET_PDEATHSIG)
//   tree_target alpha SECS   burns cpu in alpha_burn() for SECS seconds, then exits 0
//   tree_target beta SECS    the same in beta_burn(): `sh -c 'tree_target alpha 2 | tree_target
//                            beta 2'` is a pipeline whose two children each have a hot function
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include <cstdint>
#include <string>
#include <vector>

#include "target_support.h"

namespace {

volatile uint64_t g_sink;

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

TARGET_NOINLINE void spin_round() {
    uint64_t x = g_sink;
    for (int i = 0; i < 100000; ++i) x = x * 6364136223846793005u + 1442695040888963407u;
    g_sink = x;
}

TARGET_NOINLINE void worker_burn() {
    while (true) spin_round();
}

// The two bodies differ (one more round, another constant): identical ones would be folded
// into one symbol by GCC's -fipa-icf at -O2, and a profile could not tell them apart.
TARGET_NOINLINE void alpha_burn(double secs) {
    const double end = now_s() + secs;
    while (now_s() < end) spin_round();
    g_sink = g_sink + 1;
    target::no_tail_call();
}

TARGET_NOINLINE void beta_burn(double secs) {
    const double end = now_s() + secs;
    while (now_s() < end) {
        spin_round();
        spin_round();
    }
    g_sink = g_sink ^ 0x5bd1e995u;
    target::no_tail_call();
}

TARGET_NOINLINE void master_wait() {
    while (true) pause();
}

int run_master(int workers) {
    target::allow_any_tracer();
    std::string ready = "ready " + std::to_string(getpid());
    for (int i = 0; i < workers; ++i) {
        const pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the master (the harness kills it)
            prctl(PR_SET_NAME, "tree-worker");
            target::allow_any_tracer();
            worker_burn();
            _exit(0);
        }
        ready += " " + std::to_string(pid);
    }
    target::report(ready);
    master_wait();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string what = argc > 1 ? argv[1] : "";
    const double arg = argc > 2 ? std::atof(argv[2]) : 1;
    if (what == "master") return run_master(static_cast<int>(arg));
    if (what == "alpha") {
        alpha_burn(arg);
        return 0;
    }
    if (what == "beta") {
        beta_burn(arg);
        return 0;
    }
    std::fprintf(stderr, "usage: tree_target master N | alpha SECS | beta SECS\n");
    return 64;
}
