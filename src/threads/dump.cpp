// ThreadDump: seize, snapshot every thread in one short stop, detach, then unwind and symbolize
// the copies. Nothing but register and stack copies happens while the target is stopped.
#include "pmprof/threads/dump.h"

#include <sys/syscall.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "pmprof/elf/image.h"
#include "pmprof/os/clock.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/tracer_priority.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/log.h"
#include "pmprof/threads/kernel_stack.h"

namespace pmprof {
namespace {

/// State, syscall and wchan of one thread, read from /proc without stopping it.
void read_thread_info(pid_t pid, ThreadEntry& t, bool kernel_stack) {
    if (auto st = read_task_stat(pid, t.tid); st.ok()) {
        t.name = st->comm;
        t.state = st->state;
    }
    if (t.state != ThreadState::Running) {
        if (auto sc = read_syscall(pid, t.tid); sc.ok() && !sc->running && sc->nr >= 0) {
            t.syscall_nr = sc->nr;
            t.syscall = syscall_name(sc->nr);
            t.syscall_args = sc->args;
        }
        t.wchan = read_wchan(pid, t.tid);
        // Read here, with the state: after pmprof's own stop a thread may still be on its way
        // back from it (ptrace_stop, get_signal) instead of in its syscall.
        if (kernel_stack && (t.syscall_nr >= 0 || t.state == ThreadState::DiskSleep))
            t.kernel_frames = read_kernel_stack(pid, t.tid);
    }
}

/// Serves a finished dump's symbolized frames to ProfileBuilder (which symbolizes by pc).
class DumpSymbols final : public Symbolizer {
  public:
    explicit DumpSymbols(const ThreadDump& dump) {
        for (const ThreadEntry& t : dump.threads)
            for (size_t i = 0; i < t.frames.size() && i < t.stack.frames.size(); ++i)
                by_frame_.emplace(key(t.stack.frames[i]), &t.frames[i]);
    }
    const SymbolizedPc& symbolize(const RawFrame& frame) override {
        auto it = by_frame_.find(key(frame));
        if (it != by_frame_.end()) return *it->second;
        unknown_.pc = frame.pc;
        return unknown_;
    }

  private:
    static std::pair<uint64_t, bool> key(const RawFrame& f) { return {f.pc, f.exact}; }
    std::map<std::pair<uint64_t, bool>, const SymbolizedPc*> by_frame_;
    SymbolizedPc unknown_;
};

}  // namespace

namespace {

/// Phase 1, before any stop: every thread's state, syscall and wchan from /proc. Read before
/// seizing: once seized, a job-control-stopped thread shows as "tracing stop", and the dump must
/// describe the target, not pmprof's own trace.
std::unordered_map<pid_t, ThreadEntry> read_threads_before(pid_t pid, const DumpOptions& opt) {
    std::unordered_map<pid_t, ThreadEntry> before;
    if (auto tasks = list_tasks(pid); tasks.ok()) {
        for (pid_t tid : *tasks) {
            ThreadEntry t;
            t.tid = tid;
            read_thread_info(pid, t, opt.kernel_stacks);
            before.emplace(tid, std::move(t));
        }
    }
    return before;
}

/// The entries of the threads the session traces (those born after the listing read now),
/// keeping those --thread asks for.
void collect_entries(pid_t pid, const DumpOptions& opt, TraceSession& ts,
                     std::unordered_map<pid_t, ThreadEntry>& before, ThreadDump& dump) {
    for (pid_t tid : ts.threads()) {
        ThreadEntry t;
        if (auto it = before.find(tid); it != before.end()) {
            t = std::move(it->second);
        } else {  // born between the listing and the seize
            t.tid = tid;
            read_thread_info(pid, t, opt.kernel_stacks);
        }
        if (thread_selected(opt.thread_filter, t.tid, t.name)) dump.threads.push_back(std::move(t));
    }
}

/// Interrupted in this order: running threads first. One on a cpu stops at once (the interrupt
/// kicks its cpu) and so frees that cpu for the sleeping threads the next interrupts wake, which
/// must run briefly to reach their stop; woken first, they would queue behind the busy threads
/// instead.
std::vector<pid_t> stop_order(const ThreadDump& dump) {
    std::vector<pid_t> wanted;
    for (bool running : {true, false})
        for (const ThreadEntry& t : dump.threads)
            if ((t.state == ThreadState::Running) == running) wanted.push_back(t.tid);
    return wanted;
}

/// Phase 2, the only one that stops the target: seize (unless borrowing a session), copy every
/// wanted thread's registers and stack top (TraceSession::snapshot), detach. Runs on the tracer
/// thread. Fills dump.threads, stats, maps and target_exited; returns the copies.
Result<std::vector<ThreadCapture>> stop_and_copy(pid_t pid, const DumpOptions& opt,
                                                 const ProcessLife& life,
                                                 std::unordered_map<pid_t, ThreadEntry>& before,
                                                 const std::function<bool(pid_t)>& want,
                                                 ThreadDump& dump) {
    // Until the last detach, every stopped thread waits for the tracer to run: to send the
    // interrupts, then to notice, copy and detach each stop. At normal priority the tracer
    // lost its cpu for whole time slices (4 ms ticks) to the target's busy threads in the
    // middle of that (sched trace of a 21-thread snapshot; nice -10 does not help when the
    // target is in another autogroup, as a process started from another session is).
    // Realtime for this short phase only, in which the tracer mostly sleeps waiting for
    // stops: from the seize to the last detach.
    std::optional<TracerPriorityBoost> boost;
    if (opt.session == nullptr) boost.emplace(TracerPriorityBoost::Kind::Realtime);
    std::unique_ptr<TraceSession> own;
    if (opt.session == nullptr) {
        auto session = TraceSession::seize(pid, want);
        if (!session.ok()) return life.explain(session.error(), "the dump");
        own = std::move(*session);
    }
    TraceSession& ts = own ? *own : *opt.session;
    collect_entries(pid, opt, ts, before, dump);
    if (dump.threads.empty())
        return Error{opt.thread_filter.empty()
                         ? "process " + std::to_string(pid) + " has no threads to trace"
                         : "no thread of process " + std::to_string(pid) + " matches --thread"};
    const std::vector<pid_t> wanted = stop_order(dump);
    dump.time_nanos = realtime_ns();
    CaptureOptions capture = opt.capture;
    // One stop per thread: the snapshot's resume is the detach (a borrowed session stays).
    capture.detach = own != nullptr;
    capture.release_each = !opt.consistent;
    std::vector<ThreadCapture> captures = ts.snapshot(wanted, capture, &dump.stats);
    if (own) own->detach_all();
    // The maps the snapshot read right before its stops (and again inside one, if a stack
    // was in none of them); a second read and parse of /proc/PID/maps here only repeated
    // that.
    dump.maps = ts.maps();
    dump.target_exited = ts.process_exited() || life.exited();
    return captures;
}

/// Phase 3, with the target running again: unwind and symbolize the copies, then the locks.
Result<void> unwind_and_symbolize(pid_t pid, const DumpOptions& opt, const ProcessLife& life,
                                  const std::vector<ThreadCapture>& captures, ThreadDump& dump) {
    auto image = ProcessImage::open(pid, dump.maps);
    if (!image.ok()) return life.explain(image.error(), "the dump");
    ProcessMemory memory(pid);
    auto unwinder = make_unwinder(opt.unwinder, **image, memory);
    auto symbolizer = make_symbolizer(**image, opt.symbolize);

    std::unordered_map<pid_t, const ThreadCapture*> by_tid;
    for (const ThreadCapture& c : captures) by_tid[c.tid] = &c;
    for (ThreadEntry& t : dump.threads) {
        auto it = by_tid.find(t.tid);
        if (it == by_tid.end()) {
            t.error = "thread exited before the snapshot";
            continue;
        }
        const ThreadCapture& cap = *it->second;
        if (!cap.ok) {
            t.error = cap.error;
            continue;
        }
        t.captured = true;
        t.regs = cap.regs;
        if (cap.eintr_syscall >= 0) t.eintr_syscall = syscall_name(cap.eintr_syscall);
        t.stack = unwinder->unwind(cap, opt.max_depth);
        if (t.stack.truncated) ++dump.unwind_failures;
        t.frames.reserve(t.stack.frames.size());
        for (const RawFrame& f : t.stack.frames) t.frames.push_back(symbolizer->symbolize(f));
    }
    // The locks: read with the target running, from what /proc said before the stop (the futex
    // address) and the copies; a few reads per blocked thread.
    for (ThreadEntry& t : dump.threads)
        if (t.syscall_nr == SYS_restart_syscall) t.restarts = restarted_syscall(t);
    if (opt.locks) analyze_locks(dump, **image, memory);
    return {};
}

}  // namespace

Result<ThreadDump> take_thread_dump(pid_t pid, const DumpOptions& opt) {
    const auto started = std::chrono::steady_clock::now();
    ThreadDump dump;
    dump.pid = pid;
    dump.command = read_cmdline(pid);
    // 0 unless running now: only a process that was alive can exit "during" anything.
    const ProcessLife life(pid);
    std::unordered_map<pid_t, ThreadEntry> before = read_threads_before(pid, opt);

    // With --thread, only the matching threads are seized: the others are never stopped, not
    // even to be detached.
    std::function<bool(pid_t)> want;
    if (!opt.thread_filter.empty())
        want = [&](pid_t tid) {
            auto it = before.find(tid);
            if (it != before.end()) return thread_selected(opt.thread_filter, tid, it->second.name);
            ThreadEntry t;  // born after the listing
            t.tid = tid;
            read_thread_info(pid, t, opt.kernel_stacks);
            return thread_selected(opt.thread_filter, t.tid, t.name);
        };
    if (want &&
        std::none_of(before.begin(), before.end(), [&](const auto& e) { return want(e.first); }))
        return Error{"no thread of process " + std::to_string(pid) + " matches --thread"};

    // The tracing runs on a thread of its own, whose exit detaches what the snapshot did not
    // (a thread in D state with our interrupt still pending) without stopping it.
    std::optional<Result<std::vector<ThreadCapture>>> captures;
    auto trace = [&] { captures.emplace(stop_and_copy(pid, opt, life, before, want, dump)); };
    if (opt.session != nullptr)
        trace();
    else
        run_on_tracer_thread(trace);
    if (!captures) return Error{"the tracer thread did not run"};
    if (!captures->ok()) return captures->error();
    if (dump.maps.empty())
        return life.explain(Error{"cannot read the memory maps of process " + std::to_string(pid)},
                            "the dump");

    if (auto done = unwind_and_symbolize(pid, opt, life, **captures, dump); !done.ok())
        return done.error();
    // Gone by the end (the unwinder read its memory meanwhile): say so as well.
    dump.target_exited = dump.target_exited || life.exited();
    dump.wall_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::steady_clock::now() - started)
                                             .count());
    return dump;
}

std::vector<std::vector<size_t>> group_threads(const ThreadDump& dump) {
    // Key: the frames by pc plus truncation, so a truncated stack never merges with a whole one.
    std::map<std::pair<std::vector<uint64_t>, std::string>, std::vector<size_t>> groups;
    for (size_t i = 0; i < dump.threads.size(); ++i) {
        const ThreadEntry& t = dump.threads[i];
        std::vector<uint64_t> pcs;
        for (const RawFrame& f : t.stack.frames) pcs.push_back(f.pc);
        std::string extra =
            t.captured ? (t.stack.truncated ? "truncated" : "") : "error:" + t.error;
        // Threads waiting on different locks (or for different owners) are told apart: their
        // lock lines differ.
        if (t.lock.kind != LockKind::None)
            extra += " lock:" + std::to_string(t.lock.futex) + ":" + std::to_string(t.lock.owner);
        groups[{std::move(pcs), extra}].push_back(i);
    }
    std::vector<std::vector<size_t>> out;
    out.reserve(groups.size());
    for (auto& [key, members] : groups) out.push_back(std::move(members));
    std::sort(out.begin(), out.end(), [&](const auto& a, const auto& b) {
        if (a.size() != b.size()) return a.size() > b.size();
        return dump.threads[a.front()].tid < dump.threads[b.front()].tid;
    });
    return out;
}

Profile thread_dump_to_profile(const ThreadDump& dump) {
    ProfileBuilder builder({{"threads", "count"}}, {"threads", "count"}, 1);
    for (const ThreadEntry& t : dump.threads) {
        std::vector<Label> labels{{"thread_name", t.name, 0, ""},
                                  {"tid", "", t.tid, ""},
                                  {"state", std::string(thread_state_name(t.state)), 0, ""}};
        if (!t.syscall.empty()) labels.push_back({"syscall", t.syscall, 0, ""});
        if (t.captured)
            builder.add(t.stack, {1}, labels);
        else
            builder.add_synthetic({"[not captured: " + t.error + "]"}, {1}, labels);
    }
    DumpSymbols symbols(dump);
    Profile p = builder.build(symbols, dump.maps);
    p.time_nanos = dump.time_nanos;
    p.comments.push_back("pmprof stacks " + std::to_string(dump.pid) + ": " + dump.command);
    p.comments.push_back("target stopped " + std::to_string(dump.stats.stop_window_ns / 1000) +
                         " us; " + std::to_string(dump.unwind_failures) + " unwind failures");
    return p;
}

}  // namespace pmprof
