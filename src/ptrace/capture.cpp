// Stop rounds and what is done inside a stop: PTRACE_GETREGS and one read of the stack top
// (process_vm_readv, or its fallbacks in src/ptrace/memory.cpp), nothing else (docs/design.md §1.2:
// copy, resume, then think).
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/log.h"
#include "ptrace/session_core.h"

namespace pmprof {

namespace {

// The stack copied with PTRACE_PEEKDATA (about 1 us a word): 1024 calls at most per stop.
constexpr uint64_t kPeekStackBytes = 8 * 1024;
// Upper bound on one sleep while waiting for stops: only matters when SIGCHLD is taken by
// another thread of pmprof, as SIGCHLD wakes the wait otherwise (wait_for_event raises it to
// 2 ms). Sleeps grow from kFirstWaitCap to kWaitCap.
constexpr std::chrono::microseconds kWaitCap{1000};
constexpr std::chrono::microseconds kFirstWaitCap{20};
// A windowed member still runnable at its timeout gets this many timeouts in all.
constexpr uint64_t kRunnableGraceFactor = 10;

}  // namespace

bool read_registers(pid_t tid, Registers* regs, long* eintr_syscall, long* broken_syscall,
                    long* in_syscall) {
    user_regs_struct u{};
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &u) != 0) return false;
    // Stopped on the way out of a system call the stop interrupted: rax already holds what the
    // call returns. -ERESTART* is restarted invisibly after the resume; -EINTR is what the
    // thread sees (epoll_wait, sigtimedwait, semop, recv with SO_RCVTIMEO: docs/facts.md).
    // include/linux/errno.h: the restart codes are kernel-internal, not in the uapi headers.
    constexpr long kErestartsys = 512, kErestartnointr = 513, kErestartnohand = 514,
                   kErestartRestartblock = 516;
    const auto nr = static_cast<long>(u.orig_rax);
    const auto rax = static_cast<long>(u.rax);
    const bool stopped_in_syscall = nr >= 0;
    if (in_syscall != nullptr) *in_syscall = stopped_in_syscall ? nr : -1;
    if (eintr_syscall != nullptr) *eintr_syscall = stopped_in_syscall && rax == -EINTR ? nr : -1;
    if (broken_syscall != nullptr)
        *broken_syscall =
            stopped_in_syscall &&
                    (rax == -EINTR || rax == -kErestartsys || rax == -kErestartnointr ||
                     rax == -kErestartnohand || rax == -kErestartRestartblock)
                ? nr
                : -1;
    // DWARF register numbers, x86_64 psABI figure 3.36.
    regs->dwarf = {u.rax, u.rdx, u.rcx, u.rbx, u.rsi, u.rdi, u.rbp, u.rsp, u.r8,
                   u.r9,  u.r10, u.r11, u.r12, u.r13, u.r14, u.r15, u.rip};
    regs->fs_base = u.fs_base;
    return true;
}

// ---- StopRound ----------------------------------------------------------------------------

StopRound::StopRound(SessionCore& impl, const std::vector<pid_t>& tids, size_t max_in_flight,
                     std::chrono::nanoseconds member_timeout)
    : impl_(impl), max_in_flight_(std::max<size_t>(1, max_in_flight)),
      member_timeout_ns_(static_cast<uint64_t>(std::max<int64_t>(0, member_timeout.count()))) {
    members_.reserve(tids.size());
    in_flight_.reserve(std::min(tids.size(), max_in_flight_));
    for (pid_t tid : tids) {
        Member& m = members_.emplace_back();
        m.tid = tid;
        auto it = impl_.threads.find(tid);
        if (it == impl_.threads.end() || it->second.state == TraceState::Gone ||
            it->second.foreign) {
            m.outcome = Outcome::NotTraced;
            m.sent = true;
        }
    }
    refill();
}

StopRound::~StopRound() {
    try {
        resume_all();
    } catch (...) {
        // resume_all only fails allocating a log line; the threads were resumed before that.
    }
}

void StopRound::send(size_t i) {
    Member& m = members_[i];
    m.sent = true;
    if (m.outcome != Outcome::Pending) return;
    auto it = impl_.threads.find(m.tid);
    if (it == impl_.threads.end()) {  // reaped since the round began (an exit event)
        m.outcome = Outcome::Exited;
        return;
    }
    TracedThread& t = it->second;
    t.want_stop = true;
    m.interrupt_ns = monotonic_ns();
    if (member_timeout_ns_ > 0) m.deadline_ns = m.interrupt_ns + member_timeout_ns_;
    if (first_interrupt_ns_ == 0) first_interrupt_ns_ = m.interrupt_ns;
    in_flight_.push_back(i);
    if (t.state == TraceState::Trapped) return;  // already stopped: wait() takes it
    // A Listening (group-stopped) thread is stopped already; the interrupt only re-traps it
    // so its registers can be read, and it is left with PTRACE_LISTEN again.
    if (::ptrace(PTRACE_INTERRUPT, m.tid, nullptr, nullptr) == 0) t.interrupt_sent = true;
    // ESRCH: the thread is exiting; wait() reaps its exit.
}

void StopRound::refill() {
    while (next_unsent_ < members_.size() && in_flight_.size() + held_ < max_in_flight_) {
        const size_t i = next_unsent_++;
        if (!members_[i].sent) send(i);
    }
    peak_in_flight_ = std::max(peak_in_flight_, in_flight_.size() + held_);
}

void StopRound::poll() {
    // A waitpid per member in flight costs one short syscall each; poll_all's waitpid over
    // every traced thread (twice at least) cost 8 ms a pass at 4000 threads, and each pass
    // added that to the stop of every member already stopped. Then one peek for anything else
    // waitable (a clone child's first stop, an exit), so no other thread waits for the round.
    constexpr size_t kPollEachMax = 256;
    if (in_flight_.size() > kPollEachMax) {
        impl_.poll_all();
        return;
    }
    for (size_t i : in_flight_)
        for (int n = 0; n < 16 && impl_.poll_one(members_[i].tid); ++n) {
        }
    for (int guard = 0; guard < 10000; ++guard) {
        siginfo_t si{};
        const int rc = ::waitid(P_ALL, 0, &si, WEXITED | WSTOPPED | WNOHANG | WNOWAIT | __WALL);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0 || si.si_pid == 0) return;
        const pid_t tid = si.si_pid;
        const bool ours =
            impl_.threads.contains(tid) ||
            (tid != impl_.pid &&
             ::access(fmt::format("/proc/{}/task/{}", impl_.pid, tid).c_str(), F_OK) == 0);
        // An event of another child of pmprof: left to its owner; ours are reaped next pass.
        if (!ours || !impl_.poll_one(tid)) return;
    }
}

void StopRound::settle(size_t i, uint64_t seen_ns) {
    Member& m = members_[i];
    auto it = impl_.threads.find(m.tid);
    if (it == impl_.threads.end()) {
        m.outcome = Outcome::Exited;
        return;
    }
    if (it->second.state == TraceState::Trapped) {
        m.outcome = Outcome::Stopped;
        m.held = true;
        ++held_;
        // A member Trapped before the round began has been stopped since its interrupt at most.
        m.stopped_ns = std::max(seen_ns, m.interrupt_ns);
    }
}

void StopRound::give_up(Member& m, Outcome why) {
    m.outcome = why;
    if (why == Outcome::TimedOut) ++impl_.counters.stop_timeouts;
    // Its stop may still come (a thread in D state stops when it leaves the kernel): with
    // want_stop cleared, the dispatcher resumes it whenever that is.
    auto it = impl_.threads.find(m.tid);
    if (it != impl_.threads.end()) it->second.want_stop = false;
}

void StopRound::expire(Member& m) {
    // Runnable: the interrupt woke it and it waits for a cpu to reach its stop (thousands of
    // woken threads on a loaded machine), so it gets more time, once. Blocked in the kernel
    // (D state, a vfork parent) it answers only when it leaves: one wait is all it costs.
    if (!m.extended) {
        auto st = read_task_stat(impl_.pid, m.tid);
        if (st.ok() && st->state == ThreadState::Running) {
            m.extended = true;
            m.deadline_ns = m.interrupt_ns + kRunnableGraceFactor * member_timeout_ns_;
            return;
        }
    }
    give_up(m, Outcome::TimedOut);
}

void StopRound::wait(SteadyClock::time_point deadline,
                     const std::function<void(size_t)>& on_stopped, bool honor_stop_request) {
    SignalBlock block({SIGCHLD});  // before the first waitpid: a stop reported after it wakes ppoll
    std::chrono::microseconds cap = kFirstWaitCap;
    bool abandoned = false;
    for (;;) {
        // Stamped before the events are reaped: a stop found now happened before this instant
        // or during the reaping, so the pause measured from here is not an underestimate of the
        // time the tracer has known about it.
        const uint64_t seen_ns = monotonic_ns();
        poll();
        // Only the members in flight are looked at: a pass costs O(window), not O(members).
        uint64_t earliest_deadline = UINT64_MAX;
        bool any_pending = false;
        for (size_t k = 0; k < in_flight_.size();) {
            const size_t i = in_flight_[k];
            Member& m = members_[i];
            settle(i, seen_ns);
            if (m.outcome == Outcome::Pending && m.deadline_ns != 0 && seen_ns >= m.deadline_ns)
                expire(m);
            if (m.outcome == Outcome::Pending) {
                any_pending = true;
                if (m.deadline_ns != 0)
                    earliest_deadline = std::min(earliest_deadline, m.deadline_ns);
                ++k;
                continue;
            }
            in_flight_[k] = in_flight_.back();
            in_flight_.pop_back();
            if (m.outcome == Outcome::Stopped && on_stopped) on_stopped(i);
        }
        refill();
        if (in_flight_.empty() && next_unsent_ < members_.size()) {
            // The window is full of members on_stopped did not release: the round cannot
            // move on without holding more threads, so the rest are interrupted now.
            max_in_flight_ = SIZE_MAX;
            refill();
        }
        if (in_flight_.empty() && next_unsent_ >= members_.size()) return;
        // Just refilled: poll the new members at once, they may be stopped already.
        if (!any_pending) continue;
        // On ^C, stop waiting for the rest; what stopped is resumed by resume_all all the same.
        if (honor_stop_request && stop_requested()) {
            abandoned = true;
            break;
        }
        const auto now = SteadyClock::now();
        if (now >= deadline) break;
        auto until = deadline;
        if (earliest_deadline != UINT64_MAX) {
            const uint64_t mono = monotonic_ns();
            until =
                std::min(until, now + std::chrono::nanoseconds(
                                          earliest_deadline > mono ? earliest_deadline - mono : 0));
        }
        impl_.wait_for_event(until, cap);
        cap = std::min(cap * 2, kWaitCap);
    }
    for (size_t i : in_flight_)
        give_up(members_[i], abandoned ? Outcome::Abandoned : Outcome::TimedOut);
    in_flight_.clear();
    // Never interrupted: nothing to cancel.
    for (; next_unsent_ < members_.size(); ++next_unsent_) {
        Member& m = members_[next_unsent_];
        if (m.sent) continue;
        m.sent = true;
        if (m.outcome == Outcome::Pending)
            m.outcome = abandoned ? Outcome::Abandoned : Outcome::TimedOut;
    }
}

void StopRound::release(size_t i, bool detach) {
    Member& m = members_[i];
    if (m.released || m.outcome == Outcome::NotTraced) return;
    if (m.held) {  // its slot in the window is free, whatever becomes of it
        m.held = false;
        --held_;
    }
    auto it = impl_.threads.find(m.tid);
    if (it == impl_.threads.end()) return;
    it->second.want_stop = false;
    if (it->second.state != TraceState::Trapped) return;
    if (detach)
        impl_.detach_now(m.tid, it->second);
    else
        impl_.resume(m.tid, it->second);
    m.released = true;
    m.resume_ns = monotonic_ns();
    last_resume_ns_ = std::max(last_resume_ns_, m.resume_ns);
}

void StopRound::resume_all(bool detach) {
    if (resumed_) return;
    resumed_ = true;
    for (size_t i = 0; i < members_.size(); ++i) release(i, detach);
}

// ---- captures -----------------------------------------------------------------------------

namespace {

// Inside the stop: registers, then one process_vm_readv of [sp - 128, mapping end) capped at
// max_stack_bytes, into `buf` (allocated before the stop, so no page is zeroed in the window).
// Returns the bytes copied; cap.stack.base is set, cap.stack.bytes is left to the caller.
size_t copy_into(SessionCore& impl, ThreadCapture& cap, const CaptureOptions& opt, uint8_t* buf,
                 size_t buf_len) {
    if (!read_registers(cap.tid, &cap.regs, &cap.eintr_syscall, &cap.broken_syscall,
                        &cap.in_syscall)) {
        cap.error = Error::from_errno(fmt::format("PTRACE_GETREGS tid {}", cap.tid), errno).message;
        return 0;
    }
    cap.ok = true;
    const uint64_t sp = cap.regs.sp();
    cap.stack.base = sp;
    if (!opt.copy_stack) return 0;
    const MemoryMap* map = impl.map_containing(sp);
    if (map == nullptr) {
        impl.refresh_maps();  // rare: the stack of a thread created since the last read
        map = impl.map_containing(sp);
    }
    // No mapping: registers are still worth having (frame 0 is the pc); the unwinder stops at
    // once on the empty copy and marks the stack truncated.
    if (map == nullptr) return 0;
    const uint64_t lo = std::max(sp - std::min(sp, kRedZone), map->start);
    uint64_t len = std::min<uint64_t>({map->end - lo, opt.max_stack_bytes, buf_len});
    // A word per ptrace call when both faster ways are denied: the copy is cut short so the
    // thread is not held for 8192 calls.
    if (memory_method(impl.pid) == MemoryMethod::PeekData) len = std::min(len, kPeekStackBytes);
    // By tid, not pid: a zombie leader has no mm, every live thread has the process's. The
    // thread is stopped by this thread: PTRACE_PEEKDATA is allowed as the last resort.
    auto n = read_process_memory(impl.pid, cap.tid, lo, buf, len, /*stopped=*/true);
    if (!n.ok()) {
        cap.ok = false;
        cap.error = fmt::format("tid {}: {}", cap.tid, n.error().message);
        return 0;
    }
    cap.stack.base = lo;
    if (opt.at_stop) opt.at_stop(cap);
    return *n;
}

// copy_into the capture's own buffer, sized by the caller before the stop.
void copy_thread(SessionCore& impl, ThreadCapture& cap, const CaptureOptions& opt) {
    const size_t n = copy_into(impl, cap, opt, cap.stack.bytes.data(), cap.stack.bytes.size());
    cap.stack.bytes.resize(n);  // shrinking: no writes
}

std::string outcome_error(const SessionCore& impl, const StopRound::Member& m,
                          const CaptureOptions& opt) {
    using Outcome = StopRound::Outcome;
    switch (m.outcome) {
    case Outcome::Exited:
        return fmt::format("tid {} exited", m.tid);
    case Outcome::TimedOut:
        // By name, with its state and wchan: a thread in D state (a vfork parent) answers the
        // interrupt only when it leaves the kernel.
        return describe_unstoppable(
            impl.pid, m.tid, fmt::format("not stopped within {} ms", opt.stop_timeout.count()));
    case Outcome::Abandoned:
        return fmt::format("stop requested before tid {} stopped", m.tid);
    case Outcome::NotTraced:
        return fmt::format("tid {} is not traced", m.tid);
    default:
        return fmt::format("tid {} not stopped", m.tid);
    }
}

std::vector<ThreadCapture> capture_threads(SessionCore& impl, const std::vector<pid_t>& tids,
                                           const CaptureOptions& opt, SnapshotStats* stats) {
    std::vector<ThreadCapture> out(tids.size());
    for (size_t i = 0; i < tids.size(); ++i) out[i].tid = tids[i];
    // One buffer for every copy, allocated before the stops and never zero-filled: a buffer of
    // 64 KiB per thread, zeroed, cost more page faults than the whole rest of a 21-thread dump.
    const size_t buf_len = opt.copy_stack ? opt.max_stack_bytes + kRedZone : 0;
    const auto buf = std::make_unique_for_overwrite<uint8_t[]>(buf_len);
    const bool windowed = opt.release_each && opt.max_in_flight > 0;
    StopRound round(impl, tids, windowed ? opt.max_in_flight : SIZE_MAX,
                    windowed ? opt.stop_timeout : std::chrono::milliseconds{0});
    const auto deadline =
        windowed ? SteadyClock::time_point::max() : SteadyClock::now() + opt.stop_timeout;
    round.wait(deadline, [&](size_t i) {
        const size_t n = copy_into(impl, out[i], opt, buf.get(), buf_len);
        if (opt.release_each) round.release(i, opt.detach);
        // After the release (when each is released): only the bytes copied, out of the buffer.
        out[i].stack.bytes.assign(buf.get(), buf.get() + n);
    });
    round.resume_all(opt.detach);
    if (opt.detach) impl.drop_detached();

    size_t captured = 0;
    uint64_t longest = 0;
    SnapshotStats why;
    for (size_t i = 0; i < out.size(); ++i) {
        const StopRound::Member& m = round.members()[i];
        ThreadCapture& cap = out[i];
        why.threads_exited += m.outcome == StopRound::Outcome::Exited ? 1 : 0;
        why.threads_timed_out += m.outcome == StopRound::Outcome::TimedOut ? 1 : 0;
        why.threads_abandoned += m.outcome == StopRound::Outcome::Abandoned ? 1 : 0;
        if (m.outcome == StopRound::Outcome::Stopped) {
            ++impl.counters.stops;
            if (cap.eintr_syscall >= 0) ++impl.counters.eintr_stops;
            cap.pause_ns = m.resume_ns > m.stopped_ns ? m.resume_ns - m.stopped_ns : 0;
            cap.stop_wait_ns = m.stopped_ns > m.interrupt_ns ? m.stopped_ns - m.interrupt_ns : 0;
            longest = std::max(longest, cap.pause_ns);
        } else {
            cap.error = outcome_error(impl, m, opt);
        }
        if (!cap.ok) cap.stack.bytes.clear();
        captured += cap.ok ? 1 : 0;
    }
    if (stats != nullptr) {
        stats->stop_window_ns = round.last_resume_ns() > round.first_interrupt_ns()
                                    ? round.last_resume_ns() - round.first_interrupt_ns()
                                    : 0;
        stats->longest_stop_ns = longest;
        stats->threads_captured = captured;
        stats->threads_skipped = out.size() - captured;
        stats->threads_exited = why.threads_exited;
        stats->threads_timed_out = why.threads_timed_out;
        stats->threads_abandoned = why.threads_abandoned;
        stats->max_in_flight = round.peak_in_flight();
    }
    return out;
}

// What a call from a thread other than the tracer gets: ptrace(2) would answer ESRCH anyway.
std::vector<ThreadCapture> refused(const std::vector<pid_t>& tids, SnapshotStats* stats) {
    std::vector<ThreadCapture> out(tids.size());
    for (size_t i = 0; i < tids.size(); ++i) {
        out[i].tid = tids[i];
        out[i].error = "not called on the tracer thread";
    }
    if (stats != nullptr) {
        *stats = SnapshotStats{};
        stats->threads_skipped = out.size();
    }
    return out;
}

}  // namespace

std::vector<ThreadCapture> TraceSession::snapshot(const std::vector<pid_t>& tids,
                                                  const CaptureOptions& opt, SnapshotStats* stats) {
    if (!impl_->on_tracer_thread("snapshot"))
        return refused(tids.empty() ? threads() : tids, stats);
    impl_->poll_all();  // learn new threads and collect pending stops before choosing
    impl_->refresh_maps();
    std::vector<ThreadCapture> out =
        capture_threads(*impl_, tids.empty() ? threads() : tids, opt, stats);
    impl_->poll_all();
    return out;
}

// ---- asynchronous captures ------------------------------------------------------------------

void SessionCore::complete_capture(pid_t tid) {
    auto it = outstanding.find(tid);
    if (it == outstanding.end()) return;
    ThreadCapture& cap = completed.emplace_back();
    cap.tid = tid;
    copy_seen_ns = monotonic_ns();
    // A queued capture (it->second 0) whose thread stopped before its interrupt: no wait.
    cap.stop_wait_ns = it->second != 0 && copy_seen_ns > it->second ? copy_seen_ns - it->second : 0;
    outstanding.erase(it);
    if (scratch.size() < async_opt.max_stack_bytes + kRedZone)
        scratch.resize(async_opt.max_stack_bytes + kRedZone);
    scratch_used = copy_into(*this, cap, async_opt, scratch.data(), scratch.size());
    ++counters.stops;
    if (cap.eintr_syscall >= 0) ++counters.eintr_stops;
    copy_pending = true;
}

void SessionCore::finish_capture() {
    if (!copy_pending) return;
    copy_pending = false;
    // After the resume: the pause was the copy above, and moving the bytes out of the scratch
    // buffer is no part of it.
    ThreadCapture& cap = completed.back();
    const uint64_t now = monotonic_ns();
    cap.pause_ns = now > copy_seen_ns ? now - copy_seen_ns : 0;
    cap.stack.bytes.assign(scratch.begin(),
                           scratch.begin() + static_cast<std::ptrdiff_t>(scratch_used));
}

void SessionCore::fail_capture(pid_t tid, const char* why) {
    auto it = outstanding.find(tid);
    if (it == outstanding.end()) return;
    ThreadCapture& cap = completed.emplace_back();
    cap.tid = tid;
    cap.error = fmt::format("tid {} {}", tid, why);
    outstanding.erase(it);
}

void SessionCore::send_capture(pid_t tid) {
    auto it = threads.find(tid);
    if (it == threads.end() || it->second.state == TraceState::Gone) {
        fail_capture(tid, "exited");  // its exit was reaped while it waited in the queue
        return;
    }
    TracedThread& t = it->second;
    outstanding[tid] = static_cast<uint64_t>(monotonic_ns());
    if (t.state == TraceState::Trapped) {  // held by a stop round: copy, not resume
        complete_capture(tid);
        finish_capture();
        return;
    }
    // A Listening thread (a group-stopped process) is stopped already: the interrupt re-traps
    // it, and the dispatcher copies it and re-LISTENs.
    if (async_opt.before_interrupt) async_opt.before_interrupt(tid);
    if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
        fail_capture(tid, "exited");  // ESRCH: exiting; its exit event follows
        return;
    }
    t.interrupt_sent = true;
    // Still listed from an earlier capture that refill_captures has not pruned yet.
    if (std::find(capture_window.begin(), capture_window.end(), tid) == capture_window.end())
        capture_window.push_back(tid);
    counters.captures_peak_in_flight =
        std::max<uint64_t>(counters.captures_peak_in_flight, capture_window.size());
}

void SessionCore::refill_captures() {
    if (capture_window.empty() && capture_queue.empty()) return;
    const uint64_t now = static_cast<uint64_t>(monotonic_ns());
    const auto timeout_ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(async_opt.stop_timeout).count());
    std::erase_if(capture_window, [&](pid_t tid) {
        auto it = outstanding.find(tid);
        return it == outstanding.end() || now - it->second >= timeout_ns;
    });
    const size_t window = async_opt.max_in_flight > 0 ? async_opt.max_in_flight : SIZE_MAX;
    while (!capture_queue.empty() && capture_window.size() < window) {
        const pid_t tid = capture_queue.front();
        capture_queue.pop_front();
        // Stopped meanwhile for another reason (a signal, a clone event): copied then already.
        auto it = outstanding.find(tid);
        if (it != outstanding.end() && it->second == 0) send_capture(tid);
    }
}

void SessionCore::pump_captures() {
    std::vector<pid_t> polled;
    for (bool progress = true; progress && !capture_window.empty();) {
        progress = false;
        polled = capture_window;
        for (pid_t tid : polled)
            while (outstanding.contains(tid) && poll_one(tid)) progress = true;
        refill_captures();
    }
}

void TraceSession::request_captures(const std::vector<pid_t>& tids, const CaptureOptions& opt) {
    Impl& d = *impl_;
    if (!d.on_tracer_thread("request_captures")) return;
    if (d.maps.empty()) d.refresh_maps();
    d.async_opt = opt;
    // Interrupted a window at a time, the next as earlier ones are copied: interrupted all at
    // once, thousands of threads stop together and the last waits stopped for the tracer to
    // copy every one before it (docs/design.md, the stop window).
    for (pid_t tid : tids) {
        if (d.outstanding.contains(tid)) continue;  // its stop is still on the way
        auto it = d.threads.find(tid);
        if (it == d.threads.end() || it->second.state == TraceState::Gone || it->second.foreign) {
            ThreadCapture& cap = d.completed.emplace_back();
            cap.tid = tid;
            cap.error = fmt::format("tid {} is not traced", tid);
            continue;
        }
        d.outstanding.emplace(tid, 0);
        d.capture_queue.push_back(tid);
    }
    d.refill_captures();
    d.pump_captures();  // the threads already on a cpu stop within microseconds
    d.poll_all();
}

void TraceSession::wait_captures(std::chrono::nanoseconds timeout) {
    Impl& d = *impl_;
    if (!d.on_tracer_thread("wait_captures")) return;
    const auto deadline = SteadyClock::now() + timeout;
    SignalBlock block({SIGCHLD});
    std::chrono::microseconds cap = kFirstWaitCap;
    std::vector<pid_t> waiting;
    for (;;) {
        // Only the threads still awaited: one waitpid each. A wait for one pid costs the same
        // however many threads are traced; poll_all's waitid(P_ALL) walks all of them (8 us a
        // call at 1000 threads, a third of the tracer's cpu there). Other events (signals to
        // re-inject) are handled by the caller's next poll_events.
        waiting.clear();
        for (const auto& [tid, sent_ns] : d.outstanding)
            if (sent_ns != 0) waiting.push_back(tid);
        for (pid_t tid : waiting)
            while (d.outstanding.contains(tid) && d.poll_one(tid)) {
            }
        d.refill_captures();
        d.pump_captures();
        if (d.outstanding.empty() || d.exit.exited || stop_requested()) return;
        if (SteadyClock::now() >= deadline) return;
        d.wait_for_event(deadline, cap);
        cap = std::min(cap * 2, kWaitCap);
    }
}

std::vector<ThreadCapture> TraceSession::take_captures() {
    std::vector<ThreadCapture> out;
    out.swap(impl_->completed);
    return out;
}

size_t TraceSession::captures_outstanding() const { return impl_->outstanding.size(); }

int64_t TraceSession::capture_sent_ns(pid_t tid) const {
    auto it = impl_->outstanding.find(tid);
    return it == impl_->outstanding.end() ? 0 : static_cast<int64_t>(it->second);
}

Result<uint64_t>
TraceSession::with_all_stopped(const std::function<void(const std::vector<ThreadCapture>&)>& fn,
                               std::chrono::milliseconds stop_timeout) {
    if (!impl_->on_tracer_thread("with_all_stopped"))
        return Error{"TraceSession::with_all_stopped: not called on the tracer thread", 0};
    impl_->poll_all();
    if (impl_->exit.exited) return Error{fmt::format("process {} exited", impl_->pid), 0};
    std::optional<Error> failure;
    uint64_t window = 0;
    {
        const std::vector<pid_t> tids = threads();
        std::vector<ThreadCapture> regs(tids.size());
        for (size_t i = 0; i < tids.size(); ++i) regs[i].tid = tids[i];
        CaptureOptions only_regs;
        only_regs.copy_stack = false;
        only_regs.stop_timeout = stop_timeout;
        StopRound round(*impl_, tids);
        // Registers as each thread stops: fn gets them from the same stop it works in.
        round.wait(SteadyClock::now() + stop_timeout,
                   [&](size_t i) { copy_thread(*impl_, regs[i], only_regs); });
        for (size_t i = 0; i < regs.size(); ++i) {
            const StopRound::Member& m = round.members()[i];
            if (m.outcome == StopRound::Outcome::Stopped) {
                ++impl_->counters.stops;
                if (regs[i].eintr_syscall >= 0) ++impl_->counters.eintr_stops;
            }
            if (m.outcome != StopRound::Outcome::Stopped) {
                regs[i].ok = false;
                regs[i].error = outcome_error(*impl_, m, only_regs);
            }
            if (m.outcome == StopRound::Outcome::TimedOut)
                log_warn("{}: it is not running user code", regs[i].error);
        }
        try {
            fn(regs);
        } catch (const std::exception& e) {
            failure = Error{e.what(), 0};
        } catch (...) {
            failure = Error{"unknown exception while the threads were stopped", 0};
        }
        round.resume_all();
        if (round.last_resume_ns() > round.first_interrupt_ns())
            window = round.last_resume_ns() - round.first_interrupt_ns();
    }
    impl_->poll_all();
    if (failure) return *failure;
    return window;
}

}  // namespace pmprof
