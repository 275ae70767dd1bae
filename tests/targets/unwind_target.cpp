// unwind_target: one thread parked on a known stack, for the unwinder tests.
//
//   main -> uw_level1 -> uw_level2 -> uw_recurse x5 -> uw_level3 -> qsort (libc) -> uw_compare
//        -> uw_level4 -> uw_level5 -> raise(SIGUSR1) ... [signal frame] uw_on_signal
//        -> uw_handler_leaf -> uw_spin (forever)
//
// argv[1] "spin" (default): uw_spin busy-loops, so frame 0 is in our code at any instruction;
// "block": uw_spin blocks in pause(), so frame 0 is in libc. Writes "ready <pid>" when parked.
// Every call is followed by work on its result, so no call becomes a tail call.
#include <signal.h>

#include <cstdlib>
#include <cstring>

#include "target_support.h"

namespace {

volatile unsigned long g_spins = 0;
bool g_block = false;
int g_ready_fd = 1;

}  // namespace

TARGET_NOINLINE int uw_spin(int x) {
    // Only async-signal-safe calls here: we are inside a signal handler.
    char line[64];
    int n = 0;
    const char prefix[] = "ready ";
    std::memcpy(line, prefix, sizeof prefix - 1);
    n = sizeof prefix - 1;
    char digits[16];
    int d = 0;
    for (long pid = getpid(); pid > 0; pid /= 10) digits[d++] = static_cast<char>('0' + pid % 10);
    while (d > 0) line[n++] = digits[--d];
    line[n++] = '\n';
    ssize_t w = write(g_ready_fd, line, static_cast<size_t>(n));
    (void)w;
    for (;;) {
        if (g_block)
            pause();
        else
            g_spins = g_spins + static_cast<unsigned long>(x);
    }
}

TARGET_NOINLINE int uw_handler_leaf(int x) {
    int r = uw_spin(x + 1);
    target::escape(&r);
    return r + 1;
}

TARGET_NOINLINE void uw_on_signal(int sig) {
    int r = uw_handler_leaf(sig);
    target::escape(&r);
}

TARGET_NOINLINE int uw_level5(int x) {
    int r = raise(SIGUSR1) + x;
    target::escape(&r);
    return r + 1;
}

TARGET_NOINLINE int uw_level4(int x) {
    int r = uw_level5(x + 1);
    target::escape(&r);
    return r + 1;
}

TARGET_NOINLINE int uw_compare(const void* a, const void* b) {
    int r = uw_level4(*static_cast<const int*>(a) - *static_cast<const int*>(b));
    target::escape(&r);
    return r > 0 ? 1 : -1;
}

TARGET_NOINLINE int uw_level3(int x) {
    int values[2] = {x, x + 1};
    qsort(values, 2, sizeof values[0], uw_compare);
    target::escape(values);
    return values[0] + 1;
}

TARGET_NOINLINE int uw_recurse(int depth, int x) {
    int r = depth > 1 ? uw_recurse(depth - 1, x + 1) : uw_level3(x);
    target::escape(&r);
    return r + 1;
}

TARGET_NOINLINE int uw_level2(int x) {
    int r = uw_recurse(5, x + 1);
    target::escape(&r);
    return r + 1;
}

TARGET_NOINLINE int uw_level1(int x) {
    int r = uw_level2(x + 1);
    target::escape(&r);
    return r + 1;
}

int main(int argc, char** argv) {
    g_block = argc > 1 && std::strcmp(argv[1], "block") == 0;
    if (const char* fd = std::getenv("PMPROF_READY_FD")) g_ready_fd = std::atoi(fd);
    struct sigaction sa {};
    sa.sa_handler = uw_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, nullptr);
    target::name_thread("uw-main");
    return uw_level1(argc);
}
