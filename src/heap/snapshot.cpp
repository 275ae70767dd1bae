// take_heap_snapshot: the live path. Checks the allocator and glibc version before touching the
// target, stops every thread once (TraceSession::with_all_stopped), walks inside the stop through
// a block cache (the heap is copied with few process_vm_readv calls), resumes, and only then
// attributes types (ELF symbols, RTTI of read-only data that does not change). With reach, the
// live chunks, the roots and every thread's registers are copied in the same stop and analysed
// after the resume.
#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <thread>

#include "heap/cached_reader.h"
#include "pmprof/heap/heap.h"
#include "pmprof/heap/symbols.h"
#include "pmprof/os/clock.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/support/log.h"

namespace pmprof {

namespace {

// Walk cost inside the stop, measured on a 2-core VM (bench/README.md, heap stop): about 1 ms
// per MB of chunks walked; the reach copy adds about a fifth.
constexpr double kWalkMsPerMb = 1.0;
constexpr double kReachCopyShare = 0.2;
// How long a retry waits for the arena locks to read free before it stops the target again.
constexpr std::chrono::milliseconds kLockWait{200};

struct Preflight {
    std::vector<MemoryMap> maps;
    GlibcMallocLayout layout;
    std::optional<MallocRoots> roots;  // from symbols; scanned inside the stop otherwise
};

Result<Preflight> preflight(pid_t pid) {
    auto maps = read_maps(pid);
    if (!maps.ok()) return maps.error();
    if (auto ok = heap_detail::check_glibc_malloc(pid, *maps); !ok.ok()) return ok.error();
    const MemoryMap* libc = heap_detail::find_libc(*maps);
    auto version = heap_detail::read_glibc_version(pid, *libc);
    if (!version.ok()) return version.error();
    auto layout = glibc_layout_for(*version);
    if (!layout.ok()) return layout.error();
    Preflight p{std::move(*maps), std::move(*layout), std::nullopt};
    p.roots = heap_detail::roots_from_symbols(pid, p.maps);
    if (!p.roots) log_info("no symbols for main_arena/mp_ in libc; scanning libc's data instead");
    return p;
}

/// Every register of every stopped thread is a root: a pointer may live only in a register.
/// They come from the walk's own stop, so they agree with the memory copied there.
void register_roots(const std::vector<ThreadCapture>& regs, ReachInput& in) {
    for (const ThreadCapture& c : regs)
        if (c.ok)
            in.root_words.insert(in.root_words.end(), c.regs.dwarf.begin(), c.regs.dwarf.end());
}

/// Before the stop: a heap large enough to stop the target noticeably is said up front, with the
/// expected stop and its cap, since the walk cannot be split into shorter stops (WalkLimit).
void announce_stop(const Preflight& pre, const HeapOptions& opt) {
    const uint64_t bytes = estimate_heap_bytes(pre.maps, pre.layout.heap_max, uint64_t{1} << 50);
    constexpr uint64_t kAnnounceBytes = uint64_t{128} << 20;
    if (bytes < kAnnounceBytes) return;
    const double expect_ms =
        static_cast<double>(bytes) / 1e6 * kWalkMsPerMb * (opt.reach ? 1.0 + kReachCopyShare : 1.0);
    log_warn("heap: about {} MB of malloc heap to walk: all threads stay stopped for about "
             "{:.0f} ms{}",
             bytes >> 20, expect_ms,
             opt.max_stop.count() > 0
                 ? fmt::format(" (at most {} ms: --max-stop)", opt.max_stop.count())
                 : std::string(" (no --max-stop limit)"));
}

/// What the stop phase hands to the phase after the resume.
struct Stopped {
    HeapSnapshot snap;
    std::vector<MemoryMap> maps;  // as read inside the (last) stop
    std::optional<heap_detail::ReachCopy> reach;
};

/// Inside one stop of every thread: maps again, roots if symbols did not give them, the walk,
/// and with reach the copies of live chunks and roots. Sets `failure` when nothing can be walked.
void walk_inside_stop(pid_t pid, const HeapOptions& opt, const Preflight& pre,
                      const std::vector<ThreadCapture>& regs, TraceSession& session,
                      std::optional<MallocRoots>& roots, Stopped& out,
                      std::optional<Error>& failure) {
    auto t0 = std::chrono::steady_clock::now();
    // Maps again, inside the stop: a new arena or mmapped chunk may have appeared.
    if (auto m = read_maps(pid); m.ok()) out.maps = std::move(*m);
    ProcessMemory mem(pid);
    // Should process_vm_readv and /proc/PID/mem be denied, a stopped thread can still be read
    // word by word.
    for (const ThreadCapture& c : regs)
        if (c.ok) {
            mem.allow_peek(c.tid);
            break;
        }
    if (!roots) {
        auto scanned = heap_detail::roots_by_scan(mem, out.maps, pre.layout);
        if (!scanned.ok()) {
            failure = scanned.error();
            return;
        }
        roots = *scanned;
    }
    WalkLimit limit;
    limit.honor_stop_request = true;
    if (opt.max_stop.count() > 0) {
        limit.limit_ms = static_cast<uint64_t>(opt.max_stop.count());
        limit.deadline_ns =
            static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      (t0 + opt.max_stop).time_since_epoch())
                                      .count());
    }
    out.snap = walk_glibc_heap(mem, out.maps, pre.layout, *roots, limit);
    if (out.reach && !out.snap.cut_short.empty()) {
        // An incomplete walk has no complete list of chunks to scan: nothing is copied.
        out.reach->skipped = "reachability not analysed: the walk was cut short";
    } else if (out.reach) {
        heap_detail::copy_for_reach(*out.reach, pid, mem, out.maps, out.snap, session.threads(),
                                    opt.reach_max_bytes);
        register_roots(regs, out.reach->input);
    }
    log_debug(
        "heap: {:.2f} ms inside the stop (walk {:.2f} ms)",
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
        static_cast<double>(out.snap.walk_ns) / 1e6);
}

/// After a stop that found an arena lock held: lets the target run until no arena's lock reads
/// held (read from outside while it runs; nothing is stopped) or `limit` passes, handling its
/// events meanwhile (a signal to it waits in a signal-delivery-stop until re-injected). The
/// thread inside malloc needs a cpu to leave it: stopping again at once, on a loaded machine,
/// finds it where it was. A lock free now may be taken again by the next stop; what the next
/// walk finds is what counts.
void await_free_arenas(pid_t pid, TraceSession& session, const HeapSnapshot& snap,
                       const GlibcMallocLayout& layout, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    ProcessMemory mem(pid);
    for (;;) {
        session.poll_events();
        bool held = false, unreadable = false;
        for (const ArenaSummary& a : snap.arenas) {
            uint32_t mutex = 0;
            auto r = mem.read(a.address + layout.arena_mutex, &mutex, sizeof mutex);
            if (!r.ok() || *r != sizeof mutex) {
                unreadable = true;  // no reads while it runs (no process_vm_readv): just wait
                break;
            }
            if (mutex != 0) {
                held = true;
                break;
            }
        }
        if (!held && !unreadable) return;
        if (std::chrono::steady_clock::now() >= deadline || stop_requested()) return;
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
}

/// The stop phase, on a tracer thread of its own (its exit detaches without a stop what the
/// walk's stop could not reach: a thread in D state with our interrupt pending,
/// src/ptrace/tracer_thread.cpp): seize, stop every thread and walk, again while an arena lock
/// was held (up to opt.lock_retries times), detach.
Result<void> stop_and_walk(pid_t pid, const HeapOptions& opt, const Preflight& pre, Stopped& out) {
    std::optional<MallocRoots> roots = pre.roots;
    std::optional<Error> failure;
    run_on_tracer_thread([&] {
        auto session = TraceSession::seize(pid);
        if (!session.ok()) {
            failure = session.error();
            return;
        }
        for (int attempt = 0; attempt <= opt.lock_retries; ++attempt) {
            failure.reset();
            auto window = (*session)->with_all_stopped(
                [&](const std::vector<ThreadCapture>& regs) {
                    walk_inside_stop(pid, opt, pre, regs, **session, roots, out, failure);
                },
                opt.stop_timeout);
            if (!window.ok()) {
                failure = window.error();
                return;
            }
            if (failure) return;
            out.snap.stop_window_ns = *window;
            // Another stop would be cut the same way (or the user asked to stop).
            if (out.snap.locked_arenas == 0 || !out.snap.cut_short.empty()) break;
            if (attempt == opt.lock_retries) break;
            log_info("attempt {}: {} arena locks held; stopping again once none is", attempt + 1,
                     out.snap.locked_arenas);
            await_free_arenas(pid, **session, out.snap, pre.layout, kLockWait);
        }
        (*session)->detach_all();
    });
    if (failure) return *failure;
    return {};
}

/// With the target running again: C++ types (ELF symbols, RTTI in read-only data) and the
/// reachability analysis of what the stop copied.
void analyze_after_resume(pid_t pid, const HeapOptions& opt, Stopped& st) {
    HeapSnapshot& snap = st.snap;
    if (opt.types) {
        ProcessMemory mem(pid);
        attribute_types(snap, heap_detail::load_vtables(pid, st.maps), &mem, st.maps);
    }
    if (st.reach && !st.reach->skipped.empty()) {
        snap.problems.push_back(st.reach->skipped);
    } else if (st.reach) {
        analyze_reach(snap, st.reach->contents, st.reach->input);
        snap.reach.copy_ns = st.reach->copy_ns;
    }
}

}  // namespace

Result<HeapSnapshot> take_heap_snapshot(pid_t pid, const HeapOptions& opt) {
    // The same one-line refusals as every verb (no such process, zombie, already traced, no
    // permission) before the allocator checks read anything from /proc.
    if (auto traceable = check_traceable(pid); !traceable.ok()) return traceable.error();
    // 0 unless running now: only a process that was alive can exit "during" anything.
    const ProcessLife life(pid);
    // A leader whose main thread exited (its other threads run on) has no /proc/N/root, maps
    // or memory of its own: every read below would fail as if a file were missing.
    if (auto leader = read_status(pid); leader.ok() && leader->state == ThreadState::Zombie)
        return Error{fmt::format("pid {} is a zombie: its main thread has exited while its other "
                                 "threads run, and a heap snapshot needs the main thread's "
                                 "memory map (pmprof stacks and attach still work)",
                                 pid),
                     ESRCH};
    auto pre = preflight(pid);
    if (!pre.ok()) return life.explain(pre.error(), "the heap snapshot");
    Stopped st;
    st.maps = pre->maps;
    if (opt.reach) {
        st.reach.emplace();
        st.reach->contents.reserve(
            estimate_heap_bytes(pre->maps, pre->layout.heap_max, opt.reach_max_bytes));
    }
    announce_stop(*pre, opt);
    if (auto walked = stop_and_walk(pid, opt, *pre, st); !walked.ok())
        return life.explain(walked.error(), "the heap snapshot");
    if (st.snap.stop_requested)
        return Error{fmt::format("heap snapshot of pid {} abandoned: {}; the target was detached "
                                 "and runs on",
                                 pid, st.snap.cut_short),
                     EINTR};

    HeapSnapshot& snap = st.snap;
    snap.pid = pid;
    snap.time_nanos = realtime_ns();
    analyze_after_resume(pid, opt, st);
    if (life.exited()) {
        // Reads that failed because the process went away are not a heap's problems.
        if (snap.partial() || snap.arenas.empty())
            return Error{fmt::format("pid {} exited during the heap snapshot", pid), ESRCH};
        snap.problems.push_back(fmt::format("pid {} exited after its snapshot was taken", pid));
    }
    return std::move(snap);
}

}  // namespace pmprof
