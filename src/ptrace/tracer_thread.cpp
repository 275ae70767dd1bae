// Ending a trace without a stop. PTRACE_DETACH needs the tracee in a ptrace-stop, so
// detaching a running thread used to cost one more PTRACE_INTERRUPT, which a thread blocked in
// epoll_wait, sigtimedwait, semop or a recv with SO_RCVTIMEO sees as EINTR, and which a thread
// in D state (a vfork parent) answers only when the D state ends. The kernel has a detach that
// needs no stop: when the tracer *thread* exits, exit_ptrace() unlinks every tracee
// (__ptrace_unlink clears its pending traps, so an unanswered interrupt is cancelled, and wakes
// one in a ptrace-stop with its signal). So the verbs trace from a thread of their own, and its
// exit is the detach.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <exception>
#include <thread>

#include <fmt/format.h>

#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/support/log.h"
#include "ptrace/session_core.h"

namespace pmprof {

namespace {

thread_local bool t_exit_detaches = false;

// pthread_join returns once the kernel cleared the thread's tid (exit_mm), which comes before
// exit_notify() and its exit_ptrace(); /proc/self/task/TID goes away only at release_task(),
// after it. Waiting for that makes "nothing traced by pmprof" hold when we return.
void wait_task_released(pid_t tid) {
    const std::string path = fmt::format("/proc/self/task/{}", tid);
    const auto deadline = SteadyClock::now() + std::chrono::seconds(2);
    while (::access(path.c_str(), F_OK) == 0 && SteadyClock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
}

}  // namespace

bool tracer_thread_exits() { return t_exit_detaches; }

void run_on_tracer_thread(const std::function<void()>& fn) {
    std::exception_ptr error;
    std::atomic<pid_t> tid{0};
    std::thread tracer([&] {
        tid = static_cast<pid_t>(::gettid());
        t_exit_detaches = true;
        try {
            fn();
        } catch (...) {
            error = std::current_exception();
        }
    });
    tracer.join();
    if (tid != 0) wait_task_released(tid);
    if (error) std::rethrow_exception(error);
}

std::string describe_unstoppable(pid_t pid, pid_t tid, const std::string& what) {
    auto st = read_task_stat(pid, tid);
    if (!st.ok()) return fmt::format("tid {} {} (it is gone)", tid, what);
    std::string out = fmt::format("tid {} ({}) {}: state {} ({})", tid, st->comm, what,
                                  static_cast<char>(st->state), thread_state_name(st->state));
    const std::string wchan = read_wchan(pid, tid);
    if (!wchan.empty()) out += ", wchan " + wchan;
    return out;
}

namespace {

/// Detaches every thread now in a ptrace-stop; from then on the dispatcher detaches each thread
/// at its next stop. Returns how many threads are still traced (running, or on their way to a
/// stop).
size_t detach_trapped(SessionCore& d) {
    d.detaching = true;
    d.poll_all();
    for (auto& [tid, t] : d.threads)
        if (t.state == TraceState::Trapped) d.detach_now(tid, t);
    d.drop_detached();
    size_t left = 0;
    for (const auto& [tid, t] : d.threads) left += t.state != TraceState::Gone ? 1 : 0;
    return left;
}

}  // namespace

void detach_stopped(SessionCore& d) {
    const size_t left = detach_trapped(d);
    while (!d.outstanding.empty()) d.fail_capture(d.outstanding.begin()->first, "detached");
    if (left > 0)
        log_debug("{} threads of pid {} left to the tracer thread's exit (detached without a stop)",
                  left, d.pid);
    d.threads.clear();
    d.detached = true;
}

void TraceSession::detach_during(const std::function<void()>& work) {
    Impl& d = *impl_;
    if (d.detached || !d.on_tracer_thread("detach_during")) {
        work();
        detach_all();
        return;
    }
    if (detach_trapped(d) == 0) {
        detach_all();
        work();
        return;
    }
    std::exception_ptr error;
    std::atomic<bool> done{false};
    {
        SignalBlock block({SIGCHLD});  // the helper inherits it: SIGCHLD stays for our sigtimedwait
        std::thread helper([&] {
            try {
                work();
            } catch (...) {
                error = std::current_exception();
            }
            done = true;
        });
        // Every stop reported meanwhile is answered with PTRACE_DETACH by the dispatcher.
        while (!done.load() && !d.exit.exited) {
            d.poll_all();
            d.wait_for_event(SteadyClock::now() + std::chrono::milliseconds(20),
                             std::chrono::milliseconds(20));
        }
        helper.join();
    }
    detach_all();
    if (error) std::rethrow_exception(error);
}

}  // namespace pmprof
