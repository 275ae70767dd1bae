// The tracee event dispatcher: every waitpid status of every traced thread goes through
// SessionCore::dispatch, whichever wait reaped it (ptrace(2), "Stopped states").
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include <fmt/format.h>

#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/support/log.h"
#include "ptrace/session_core.h"

namespace pmprof {

namespace {

bool is_stop_signal(int sig) {
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

// waitpid(tid, __WALL | WNOHANG), EINTR retried: a non-blocking reap never strands a thread.
pid_t wait_nohang(pid_t tid, int* status) {
    for (;;) {
        pid_t r = ::waitpid(tid, status, __WALL | WNOHANG);
        if (r >= 0 || errno != EINTR) return r;
    }
}

bool task_dir_exists(pid_t pid, pid_t tid) {
    std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
    return ::access(path.c_str(), F_OK) == 0;
}

}  // namespace

bool SessionCore::poll_one(pid_t tid) {
    int status = 0;
    pid_t r = wait_nohang(tid, &status);
    if (r == tid) {
        dispatch(tid, status);
        return true;
    }
    if (r < 0 && errno == ECHILD) {
        // Not waitable by us any more: a thread that vanished in an exec de-thread (its tid is
        // gone without an exit report, ptrace(2) "execve(2) under ptrace"), or already reaped.
        auto it = threads.find(tid);
        if (it != threads.end()) {
            fail_capture(tid, "exited");
            threads.erase(it);
            if (tid == pid && !exit.exited) {
                exit.exited = true;  // how it ended is unknown: someone else reaped it
                while (!outstanding.empty()) fail_capture(outstanding.begin()->first, "exited");
                threads.clear();
            }
            return true;
        }
    }
    return false;
}

void SessionCore::poll_all() {
    if (detached || !on_tracer_thread("poll_events")) return;
    // Peek (WNOWAIT) at the first waitable child: one syscall when nothing is pending, which is
    // the common case on every sampler tick.
    for (int guard = 0; guard < 100000; ++guard) {
        siginfo_t si{};
        int rc = ::waitid(P_ALL, 0, &si, WEXITED | WSTOPPED | WNOHANG | WNOWAIT | __WALL);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0 || si.si_pid == 0) return;  // ECHILD: no children; 0: nothing pending
        pid_t tid = si.si_pid;
        bool ours = threads.contains(tid) || (tid != pid && task_dir_exists(pid, tid));
        if (ours && poll_one(tid)) continue;
        break;  // an event of another child of pmprof (not ours to reap): poll ours one by one
    }
    for (bool progress = true; progress;) {
        progress = false;
        std::vector<pid_t> tids;
        tids.reserve(threads.size());
        for (const auto& [tid, t] : threads) tids.push_back(tid);
        for (pid_t tid : tids) progress |= poll_one(tid);
    }
}

bool SessionCore::on_tracer_thread(const char* what) const {
    // Asked several times per sample: the tid of the calling thread never changes.
    static thread_local const auto self = static_cast<pid_t>(::gettid());
    if (self == tracer_tid) return true;
    log_warn("TraceSession::{} called on thread {}, but pid {} is traced by thread {}: ignored",
             what, self, pid, tracer_tid);
    return false;
}

void SessionCore::track_clone(pid_t child) {
    if (threads.contains(child)) return;  // its first stop came first and added it
    if (task_dir_exists(pid, child)) {
        threads.emplace(child, TracedThread{});
        return;
    }
    // Not in our thread group: either a clone that made another process (traced by us, to be
    // let go), or a thread that already exited and was reaped before its parent's event was.
    int status = 0;
    pid_t r = wait_nohang(child, &status);
    if (r < 0) return;  // ECHILD: reaped already, nothing to track
    threads.emplace(child, TracedThread{}).first->second.foreign = true;
    if (r == child) dispatch(child, status);
}

void SessionCore::note_exit(int status) {
    while (!outstanding.empty()) fail_capture(outstanding.begin()->first, "exited");
    exit.exited = true;
    exit.signaled = WIFSIGNALED(status);
    exit.status = exit.signaled ? WTERMSIG(status) : WEXITSTATUS(status);
    threads.clear();
}

SessionCore::ThreadMap::iterator SessionCore::find_or_adopt(pid_t tid) {
    auto it = threads.find(tid);
    if (it != threads.end()) return it;
    // A thread auto-attached by PTRACE_O_TRACECLONE whose first stop arrived before its
    // parent's PTRACE_EVENT_CLONE (ptrace(2) allows either order).
    it = threads.emplace(tid, TracedThread{}).first;
    it->second.foreign = !task_dir_exists(pid, tid);
    return it;
}

void SessionCore::drop_exited(ThreadMap::iterator it, int status) {
    const pid_t tid = it->first;
    fail_capture(tid, "exited");
    threads.erase(it);
    ++counters.threads_exited;
    // The leader's exit is reported only once the whole group is gone (ptrace(2)).
    if (tid == pid) {
        note_exit(status);
    } else if (threads.empty() && !task_dir_exists(pid, pid)) {
        exit.exited = true;  // the leader was a zombie we could not seize: status unknown
    }
}

void SessionCore::enter_stop(pid_t tid, TracedThread& t, int status) {
    // A group-stopped (Listening) thread reports a stop again in two cases: our interrupt
    // re-trapped it within the same group-stop, or SIGCONT woke it and a new stop signal came
    // before it ran, and the kernel reports the two as one trap with the stop signal
    // (do_jobctl_trap: SIGTRAP only when no group-stop is in progress). Only the first is not a
    // new group-stop.
    const bool retrap = t.state == TraceState::Listening && t.interrupt_sent;
    // Any ptrace-stop consumes a pending PTRACE_INTERRUPT (kernel ptrace_stop: "any trap clears
    // pending STOP trap"), so this stop is the one a stop round waits for, whatever its kind.
    t.state = TraceState::Trapped;
    t.interrupt_sent = false;
    t.group_stop = false;
    t.pending_signal = 0;
    const int sig = WSTOPSIG(status);
    switch (status >> 16) {
    case PTRACE_EVENT_STOP:
        // SIGTRAP: our interrupt, a new thread's first stop, or the end of a group-stop
        // (SIGCONT). A stop signal: group-stop, to be answered with PTRACE_LISTEN so the
        // process stays job-control stopped (docs/facts.md).
        if (is_stop_signal(sig)) {
            t.group_stop = true;
            if (!retrap) ++counters.group_stops;
        }
        break;
    case PTRACE_EVENT_CLONE: {
        unsigned long new_tid = 0;
        if (::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &new_tid) == 0 && new_tid != 0) {
            ++counters.threads_added;
            track_clone(static_cast<pid_t>(new_tid));
        }
        break;
    }
    case PTRACE_EVENT_EXEC:
        // execve collapses the group to the leader's tid; the other tids report their death
        // or vanish (ECHILD); the old mappings and symbols are void.
        counters.exec_seen = true;
        maps.clear();
        for (auto& [other, ot] : threads)
            if (other != tid) ot.state = TraceState::Gone;
        if (hold_at_exec && tid == pid) {  // launch(): held until release_exec_hold()
            hold_at_exec = false;
            exec_held = true;
            t.want_stop = true;
        }
        break;
    case 0:
        // Signal-delivery-stop: never swallow the signal (docs/facts.md: CONT with 0 loses it).
        t.pending_signal = sig;
        break;
    default:
        break;  // an event we did not ask for: just resume
    }
}

void SessionCore::answer_stop(pid_t tid, TracedThread& t) {
    // An asynchronous capture: copy now, and let the resume below follow at once.
    if (!outstanding.empty() && !t.foreign && !detaching) complete_capture(tid);
    if (t.foreign || detaching) {
        // A clone that is not a thread of the target is another process: let it go at once.
        detach_now(tid, t);
        threads.erase(tid);
        return;
    }
    if (!t.want_stop) resume(tid, t);
    finish_capture();
}

void SessionCore::dispatch(pid_t tid, int status) {
    auto it = find_or_adopt(tid);
    if (WIFEXITED(status) || WIFSIGNALED(status)) return drop_exited(it, status);
    if (!WIFSTOPPED(status)) return;
    enter_stop(tid, it->second, status);
    answer_stop(tid, it->second);
}

void SessionCore::resume(pid_t tid, TracedThread& t) {
    if (t.state != TraceState::Trapped) return;
    long rc;
    if (t.group_stop) {
        rc = ::ptrace(PTRACE_LISTEN, tid, nullptr, nullptr);
        t.state = TraceState::Listening;
    } else {
        rc = ::ptrace(PTRACE_CONT, tid, nullptr, t.pending_signal);
        if (rc == 0 && t.pending_signal != 0) ++counters.signals_reinjected;
        t.state = TraceState::Running;
    }
    if (rc != 0 && errno != ESRCH)  // ESRCH: killed meanwhile (SIGKILL); its exit follows
        log_warn("resuming tid {}: {}", tid, Error::from_errno("ptrace", errno).message);
    t.pending_signal = 0;
}

void SessionCore::detach_now(pid_t tid, TracedThread& t) {
    if (t.state != TraceState::Trapped) return;
    const int sig = t.group_stop ? 0 : t.pending_signal;
    if (::ptrace(PTRACE_DETACH, tid, nullptr, sig) == 0) {
        if (sig != 0) ++counters.signals_reinjected;
    } else if (errno != ESRCH) {
        log_warn("{}", Error::from_errno(fmt::format("PTRACE_DETACH tid {}", tid), errno).message);
    }
    t.released = true;
    t.state = TraceState::Running;
}

void SessionCore::drop_detached() {
    std::erase_if(threads, [](const auto& entry) { return entry.second.released; });
}

void SessionCore::wait_for_event(SteadyClock::time_point deadline, std::chrono::microseconds cap) {
    auto now = SteadyClock::now();
    if (now >= deadline) return;
    // A reported stop wakes the wait at once (SIGCHLD); the cap only covers a SIGCHLD taken by a
    // thread that does not block it (main blocks it before any thread starts, so none should),
    // and short caps would only add wake-ups: at least 2 ms. Measured on a loaded 2-core VM,
    // waking on SIGCHLD instead of an adaptive 20 us..1 ms sleep-poll: a busy thread's capture
    // pause 26 us (median) against 100-500 us; 21-thread snapshot windows 3-24 ms against 77-99.
    cap = std::max(cap, std::chrono::microseconds(2000));
    auto left = std::min<SteadyClock::duration>(deadline - now, cap);
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    // The caller blocked SIGCHLD (a SignalBlock) before its last waitpid, so a stop reported
    // since then is pending here and the wait returns at once: no lost wakeup. sigtimedwait
    // takes the pending SIGCHLD in the same call (one syscall per wake-up, where ppoll on a
    // signalfd and draining it took three); SIGCHLD is not queued, so one take empties it.
    wait_for_signal(signal_set({SIGCHLD}), ns);  // SIGCHLD, timeout or EINTR: the caller re-checks
}

void SessionCore::refresh_maps() {
    auto m = read_maps(pid);
    if (m.ok() && !m->empty()) {
        maps = std::move(*m);
        return;
    }
    // A zombie leader (its main thread exited) has no mm and an empty maps file; any live
    // thread shows the same address space (proc(5): /proc/TID is reachable for every thread).
    for (const auto& [tid, t] : threads) {
        if (tid == pid || t.state == TraceState::Gone || t.foreign) continue;
        auto tm = read_maps(tid);
        if (tm.ok() && !tm->empty()) {
            maps = std::move(*tm);
            return;
        }
    }
}

const MemoryMap* SessionCore::map_containing(uint64_t address) const {
    return find_mapping(maps, address);  // the kernel lists VMAs in address order
}

}  // namespace pmprof
