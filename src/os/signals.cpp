// The stop flag: the only mutable global pmprof has (docs/design.md §3).
#include "pmprof/os/signals.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <csignal>

namespace pmprof {

namespace {

// Written from a signal handler: only volatile sig_atomic_t is async-signal-safe to store
// (C11 7.14.1.1p5, signal-safety(7)).
volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_stop_requested = 0;

extern "C" void on_stop_signal(int sig) {
    g_stop_signal = sig;
    g_stop_requested = 1;
}

void install(int sig, void (*handler)(int)) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    // No SA_RESTART: a waitpid/poll/read blocked when the user presses ^C returns EINTR, so the
    // loop around it sees the flag, resumes every stopped thread and leaves (docs/design.md §1.1).
    sa.sa_flags = 0;
    ::sigaction(sig, &sa, nullptr);
}

}  // namespace

void install_stop_signal_handlers() {
    install(SIGINT, on_stop_signal);
    install(SIGTERM, on_stop_signal);
    install(SIGHUP, on_stop_signal);
    // A closed stdout/socket must give EPIPE, not kill pmprof while target threads are stopped.
    install(SIGPIPE, SIG_IGN);
}

bool stop_requested() { return g_stop_requested != 0; }

int stop_signal() { return g_stop_signal; }

void request_stop() { g_stop_requested = 1; }

void clear_stop_request() {
    g_stop_requested = 0;
    g_stop_signal = 0;
}

sigset_t signal_set(std::initializer_list<int> signals) {
    sigset_t set;
    sigemptyset(&set);
    for (int s : signals) sigaddset(&set, s);
    return set;
}

int wait_for_signal(const sigset_t& set, int64_t timeout_ns, siginfo_t* info) {
    if (timeout_ns < 0) timeout_ns = 0;
    const timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
                      static_cast<long>(timeout_ns % 1'000'000'000)};
    return ::sigtimedwait(&set, info, &ts);
}

SignalBlock::SignalBlock(std::initializer_list<int> signals) : set_(signal_set(signals)) {
    sigset_t old;
    ::pthread_sigmask(SIG_BLOCK, &set_, &old);
    sigemptyset(&added_);
    for (int s : signals)
        if (sigismember(&old, s) == 0) sigaddset(&added_, s);
}

SignalBlock::~SignalBlock() { ::pthread_sigmask(SIG_UNBLOCK, &added_, nullptr); }

}  // namespace pmprof
