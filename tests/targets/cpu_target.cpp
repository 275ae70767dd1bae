// Where cpu time goes, for cpu mode's shares: the cases a wall-clock tick weighted by
// cpu time gets wrong. Used by tests/integration/test_cpu_shares.cpp and `make bench` (shares).
//   --case bursty     one thread "burst": burst_compute() ~8 ms of cpu, then sleeps ~2 ms
//   --case server     "server" answers "client" over loopback TCP: server_work() ~150 us per
//                     request between recv and send, client_work() ~50 us between requests
//   --case oversub    2 x ncpus threads "spin-N", each over_seventy() 70 % and over_thirty() 30 %
//   --case phases     "phase" runs phase_one() until SIGUSR1, then phase_two(); "sleeper" sleeps
//                     in nanosleep (for `pmprof top`, whose hot function must move)
// `--threads N` overrides the oversub thread count. Prints "ready PID" when running.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

namespace {

volatile uint64_t g_sink;

int64_t thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

uint64_t g_iters_per_us = 100;  // calibrate() sets it

/// `n` rounds of an LCG: work counted in instructions, not read off a clock, so the shares are
/// known whatever the machine's load (a clock-timed spin is not: time-sliced or stolen time
/// counts differently in different clocks). Always inlined: each case's cpu time is the self
/// time of its own function (burst_compute, server_work, ...).
__attribute__((always_inline)) inline void spin_rounds(uint64_t n) {
    uint64_t x = g_sink;
    for (uint64_t i = 0; i < n; ++i) x = x * 6364136223846793005u + 1442695040888963407u;
    g_sink = x;
}

/// About `ns` of cpu time on an idle cpu.
__attribute__((always_inline)) inline void spin_cpu(int64_t ns) {
    spin_rounds(g_iters_per_us * static_cast<uint64_t>(ns) / 1000);
}

/// Rounds per microsecond of this thread's cpu time, measured once at start.
void calibrate() {
    const uint64_t n = 2'000'000;
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 5; ++i) {
        const int64_t t0 = thread_cpu_ns();
        spin_rounds(n);
        best = std::min<uint64_t>(best, static_cast<uint64_t>(thread_cpu_ns() - t0));
    }
    g_iters_per_us = std::max<uint64_t>(1, n * 1000 / std::max<uint64_t>(1, best));
}

TARGET_NOINLINE void burst_compute() {
    spin_cpu(8'000'000);
    target::no_tail_call();
}

[[noreturn]] void bursty_main() {
    target::name_thread("burst");
    while (true) {
        burst_compute();
        timespec ts{0, 2'000'000};
        nanosleep(&ts, nullptr);
    }
}

TARGET_NOINLINE void server_work() {
    spin_cpu(150'000);
    target::no_tail_call();
}

TARGET_NOINLINE void client_work() {
    spin_cpu(50'000);
    target::no_tail_call();
}

bool read_full(int fd, char* buf, size_t n) {
    while (n > 0) {
        const ssize_t r = recv(fd, buf, n, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return false;
        }
        buf += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

void server_main(int listener) {
    target::name_thread("server");
    const int fd = accept(listener, nullptr, nullptr);
    char req[64];
    while (read_full(fd, req, sizeof req)) {
        server_work();
        if (send(fd, req, sizeof req, MSG_NOSIGNAL) < 0 && errno != EINTR) break;
    }
}

void client_main(int port) {
    target::name_thread("client");
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    char req[64] = "request";
    while (true) {
        client_work();
        if (send(fd, req, sizeof req, MSG_NOSIGNAL) < 0 && errno != EINTR) break;
        if (!read_full(fd, req, sizeof req)) break;
    }
}

TARGET_NOINLINE void over_seventy() {
    spin_cpu(700'000);
    target::no_tail_call();
}

TARGET_NOINLINE void over_thirty() {
    spin_cpu(300'000);
    target::no_tail_call();
}

[[noreturn]] void spin_main(int i) {
    target::name_thread(("spin-" + std::to_string(i)).c_str());
    while (true) {
        over_seventy();
        over_thirty();
    }
}

volatile sig_atomic_t g_phase = 1;

TARGET_NOINLINE void phase_one() {
    while (g_phase == 1) spin_rounds(10000);
    target::no_tail_call();
}

TARGET_NOINLINE void phase_two() {
    while (true) spin_rounds(10000);
}

[[noreturn]] void phases_main() {
    target::name_thread("phase");
    phase_one();
    phase_two();
    __builtin_unreachable();
}

[[noreturn]] void sleeper_main() {
    target::name_thread("sleeper");
    while (true) {
        timespec ts{1, 0};
        nanosleep(&ts, nullptr);
    }
}

}  // namespace

int main(int argc, char** argv) {
    target::allow_any_tracer();
    std::string kind = "bursty";
    int threads = 2 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--case") kind = argv[i + 1];
        if (a == "--threads") threads = std::atoi(argv[i + 1]);
    }
    calibrate();
    std::vector<std::thread> ts;
    if (kind == "bursty") {
        ts.emplace_back(bursty_main);
    } else if (kind == "server") {
        const int listener = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            listen(listener, 1) != 0 ||
            getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
            std::perror("listen");
            return 2;
        }
        ts.emplace_back(server_main, listener);
        ts.emplace_back(client_main, ntohs(a.sin_port));
    } else if (kind == "phases") {
        std::signal(SIGUSR1, [](int) { g_phase = 2; });
        ts.emplace_back(phases_main);
        ts.emplace_back(sleeper_main);
    } else if (kind == "oversub") {
        for (int i = 0; i < threads; ++i) ts.emplace_back(spin_main, i);
    } else {
        std::fprintf(stderr, "unknown --case %s\n", kind.c_str());
        return 2;
    }
    target::report("ready " + std::to_string(getpid()));
    for (std::thread& t : ts) t.join();
    return 0;
}
