// What one sample is made of (src/sampler/loop.h): stopping a group of threads together and
// recording each capture as it arrives, the /proc/.../syscall fast path for blocked threads,
// unwinding, and the merged samples of stacks that did not change.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "pmprof/os/signals.h"
#include "pmprof/support/log.h"
#include "sampler/loop.h"

namespace pmprof::sampling {
namespace {

/// Functions where a complete unwind ends (glibc x86_64): a fast-path unwind that ends anywhere
/// else probably followed a wrong frame pointer and is not trusted.
bool is_root_function(const std::string& name) {
    static const std::set<std::string> kRoots = {"_start",
                                                 "clone",
                                                 "clone3",
                                                 "__clone",
                                                 "__clone3",
                                                 "__GI___clone",
                                                 "__GI___clone3",
                                                 "start_thread",
                                                 "__libc_start_main",
                                                 "__libc_start_call_main",
                                                 "_dl_start_user"};
    return kRoots.contains(name);
}

}  // namespace

/// The group is interrupted a window at a time (CaptureOptions::max_in_flight); each thread is
/// copied and resumed the moment its stop is reported (TraceSession::request_captures), and
/// unwound after. The tick waits a short while for them: a thread on a cpu stops within
/// microseconds, one waiting for a cpu stops when it gets one, and the rest of a large group
/// are interrupted as the window drains, possibly ticks later; each is collected then, never
/// held meanwhile.
void Sampler::capture_group(const std::vector<ThreadSlot*>& group, int64_t now) {
    std::vector<pid_t> tids;
    tids.reserve(group.size());
    for (ThreadSlot* t : group) {
        tids.push_back(t->tid);
        t->capture_outstanding = true;
        t->have_at_interrupt = t->have_at_stop = false;
        t->left_cpu_at_interrupt = -1;
    }
    session_.request_captures(tids, capture_opt_);
    const int64_t wait_ns = std::min<int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(opt_.capture.stop_timeout).count(),
        std::max<int64_t>(kMs, nominal_ns_ / 4));
    session_.wait_captures(std::chrono::nanoseconds(wait_ns));
    collect_captures(now);
}

void Sampler::collect_captures(int64_t now) {
    size_t unwound = 0;
    for (const ThreadCapture& cap : session_.take_captures()) {
        // Each unwind takes tens of microseconds: the window's stopped threads are served
        // between them, not after hundreds of them.
        if (++unwound % 8 == 0) session_.service_captures();
        auto it = threads_.find(cap.tid);
        if (it == threads_.end() || !it->second.capture_outstanding) continue;
        it->second.capture_outstanding = false;
        record_capture(it->second, cap, now);
    }
}

void Sampler::note_unstoppable(int64_t now) {
    const int64_t limit =
        std::chrono::duration_cast<std::chrono::nanoseconds>(opt_.capture.stop_timeout).count();
    for (auto& [tid, t] : threads_) {
        if (!t.capture_outstanding || t.reported_unstoppable) continue;
        // From its own interrupt: a capture waiting for room in the window has not been asked.
        const int64_t sent = session_.capture_sent_ns(tid);
        if (sent == 0 || now - sent <= limit) continue;
        t.reported_unstoppable = true;
        std::string why = describe_unstoppable(
            pid_, tid, fmt::format("not stopped within {} ms", opt_.capture.stop_timeout.count()));
        log_info("{}: its sample waits until it leaves the kernel", why);
        if (stats_.unstoppable.size() < 100) stats_.unstoppable.push_back(std::move(why));
    }
}

void Sampler::record_capture(ThreadSlot& t, const ThreadCapture& cap, int64_t now) {
    ++stats_.stops;
    ++t.stops;
    if (cap.ok && cap.eintr_syscall >= 0) {
        ++t.eintr_stops;
        ++stats_.eintr_stops;
    }
    if (cap.ok) stop_waits_.add(cap.stop_wait_ns);
    if (cap.pause_ns > 0) {
        t.pause_ns += cap.pause_ns;
        pauses_.add(cap.pause_ns);
        budget_.record_stop(cap.pause_ns);
    }
    if (!cap.ok) {
        // A thread that exited meanwhile (churn) or a ^C during the wait is no failure; a thread
        // that did not stop in time (D state) or could not be read is.
        observe(t);
        const bool gone =
            !t.alive || t.state == ThreadState::Zombie || t.state == ThreadState::Dead;
        if (!gone && !stop_requested()) ++stats_.capture_failures;
        log_debug("tid {}: {} (state now {}, wait {} us)", t.tid, cap.error,
                  thread_state_name(t.state), cap.stop_wait_ns / 1000);
        return;
    }
    t.regs = cap.regs;
    t.have_regs = true;
    const int64_t weight = sample_weight(t, now);
    if (opt_.mode == SampleMode::Cpu && waited_at_syscall_return(t, cap)) {
        charge_off_cpu(t, weight);
        return;
    }
    RawStack stack = unwind_capture(cap);
    // A blocked thread ran only because we stopped it: its baseline is taken after the stop, so
    // the next tick does not mistake our own wake-up for work (docs/design.md §1.3). A running
    // thread keeps the pre-stop reading, so none of its cpu time goes uncounted.
    t.baseline = t.sched;
    if (is_blocked_state(t.state)) {
        if (auto p = read_schedstat(t.schedstat_fd); p.ok()) {
            t.baseline = *p;
            t.last_seen = *p;
        }
    }
    t.have_baseline = true;
    add_sample(t, stack, is_blocked_state(t.state) ? t.tick_syscall : std::string(), weight, now);
}

/// Unwinds a blocked thread without stopping it: /proc/.../syscall gives its user sp and pc, the
/// stack below sp cannot change while it stays blocked, and registers come from its last stop
/// when sp and pc are the same (frame-pointer code needs rbp, docs/facts.md). Trusted only if the
/// thread did not run meanwhile and the unwind reaches a known root through code mappings.
bool Sampler::try_fast_path(ThreadSlot& t, std::string* syscall, RawStack* out) {
    if (!t.syscall_fd.valid()) return false;
    // Read by observe() after this tick's schedstat (t.sched), so the check below that the
    // thread has not run since t.sched covers it as it covers a fresh read.
    auto text = t.observed_syscall.empty() ? pread_all(t.syscall_fd)
                                           : Result<std::string>(std::move(t.observed_syscall));
    t.observed_syscall.clear();
    if (!text.ok()) return false;
    auto sc = parse_syscall(*text);
    if (!sc.ok() || sc->running || sc->sp <= kRedZone || sc->pc == 0) return false;
    if (sc->nr >= 0) *syscall = syscall_name(sc->nr);

    ThreadCapture& cap = fast_cap_;
    cap.tid = t.tid;
    cap.ok = true;
    if (t.have_regs && t.regs.sp() == sc->sp && t.regs.pc() == sc->pc) {
        cap.regs = t.regs;
    } else {
        cap.regs = Registers{};
        cap.regs.dwarf[Registers::kSp] = sc->sp;
        cap.regs.dwarf[Registers::kPc] = sc->pc;
        if (t.have_regs) cap.regs.fs_base = t.regs.fs_base;
    }
    cap.stack.base = sc->sp - kRedZone;
    cap.stack.bytes.resize(opt_.capture.max_stack_bytes);
    auto n = memory_.read(cap.stack.base, cap.stack.bytes.data(), cap.stack.bytes.size());
    if (!n.ok() || *n == 0) return false;
    cap.stack.bytes.resize(*n);

    // The copy is consistent only if the thread stayed blocked from the tick's reading until now.
    auto sched_now = read_schedstat(t.schedstat_fd);
    if (!sched_now.ok() || !has_not_run(*sched_now, t.sched)) return false;

    RawStack stack = unwinder_->unwind(cap, opt_.max_depth);
    if (stack.truncated || stack.frames.size() < 2) return false;
    for (const RawFrame& f : stack.frames) {
        const MemoryMap* m = image_->find_map(f.pc);
        if (m == nullptr || !m->executable()) return false;
    }
    const SymbolizedPc& root = root_symbols_->symbolize(stack.frames.back());
    if (root.frames.empty() || !is_root_function(root.frames.back().function)) return false;
    *out = std::move(stack);
    return true;
}

RawStack Sampler::unwind_capture(const ThreadCapture& cap) {
    RawStack stack = unwinder_->unwind(cap, opt_.max_depth);
    const bool unknown_pc =
        std::any_of(stack.frames.begin(), stack.frames.end(),
                    [&](const RawFrame& f) { return image_->find_map(f.pc) == nullptr; });
    if ((unknown_pc || stack.frames.empty()) && maybe_reload_image())
        stack = unwinder_->unwind(cap, opt_.max_depth);
    if (stack.truncated) ++stats_.unwind_failures;
    return stack;
}

void Sampler::add_sample(ThreadSlot& t, const RawStack& stack, const std::string& syscall,
                         int64_t weight, int64_t now) {
    flush_reuse(t);
    std::vector<Label> labels{{"thread_name", t.name, 0, ""},
                              {"tid", "", t.tid, ""},
                              {"state", std::string(thread_state_name(t.state)), 0, ""}};
    if (!syscall.empty()) labels.push_back({"syscall", syscall, 0, ""});
    builder_.add(stack, {1, std::max<int64_t>(0, weight)}, labels);
    ++stats_.samples;
    t.last_sample_ns = now;
    if (&stack != &t.stack) t.stack = stack;
    t.stack_labels = std::move(labels);
    t.have_stack = true;
}

bool Sampler::is_syscall_return(uint64_t pc) {
    auto site = syscall_sites_.find(pc);
    if (site == syscall_sites_.end()) {
        uint8_t insn[2] = {0, 0};
        const bool ok = pc >= 2 && memory_.read_value(pc - 2, &insn);
        site = syscall_sites_.emplace(pc, ok && insn[0] == 0x0f && insn[1] == 0x05).first;
    }
    return site->second;
}

/// cpu mode: a thread seen runnable (R) may not have been running when the interrupt took
/// effect: woken from a syscall and waiting for a cpu, or blocked since. Its stop then lands at
/// that syscall's return, which is not where its cpu time went. A stop in user code is where the
/// thread ran or was preempted (preemption comes at timer ticks, uniform in cpu time): unbiased.
/// A stop at a syscall return is no sample when the interrupt broke a wait (rax -ERESTART* or
/// -EINTR), or when schedstat counts an arrival on a cpu between the interrupt and the stop:
/// the thread was off its cpu when the interrupt came, and stopped on its way back. Real kernel
/// time of a call whose thread was also switched out (a send preempted at its exit by the peer
/// it woke) is lost to the pool that way; docs/cpu-mode.md measures that error.
bool Sampler::waited_at_syscall_return(const ThreadSlot& t, const ThreadCapture& cap) {
    if (cap.in_syscall < 0 || !is_syscall_return(cap.regs.pc())) return false;
    if (cap.broken_syscall >= 0) return true;
    if (!t.have_at_interrupt || !t.have_at_stop ||
        t.at_stop.timeslices <= t.at_interrupt.timeslices)
        return false;
    if (displaced_by_tracer(t)) {
        ++stats_.displaced_by_tracer;
        return false;
    }
    return true;
}

/// The tracer woke on a cpu where the thread ran, and took it: at a timer tick if the thread
/// was in user code, at its system call's exit if it was in one (a kernel that is not
/// preemptible lets it finish). The thread then stops where it was when the tick began, and is
/// sampled, in user code and at a syscall return alike: pooling only the returns put the
/// tracer's own arrivals on the user code (docs/cpu-mode.md, error (e)). __schedule() stamps
/// the thread that leaves a cpu and the one that takes it with one clock reading, so their
/// se.exec_start are equal until either runs again; the tracer's is read first thing in the
/// tick, the thread's just before its interrupt.
bool Sampler::displaced_by_tracer(const ThreadSlot& t) const {
    return tracer_on_cpu_since_ >= 0 && t.left_cpu_at_interrupt == tracer_on_cpu_since_;
}

void Sampler::charge_off_cpu(ThreadSlot& t, int64_t weight) {
    ++stats_.not_on_cpu;
    off_cpu_ns_[t.tid] += std::max<int64_t>(0, weight);
    t.baseline = t.sched;
    t.have_baseline = true;
}

void Sampler::add_sched_totals(const ThreadSlot& t) {
    if (!t.have_seen) return;
    stats_.threads_run_ns += t.last_seen.run_ns - std::min(t.last_seen.run_ns, t.first_seen.run_ns);
    stats_.threads_wait_ns +=
        t.last_seen.wait_ns - std::min(t.last_seen.wait_ns, t.first_seen.wait_ns);
}

void Sampler::share_out_pools(Profile& profile) const {
    if (off_cpu_ns_.empty() || profile.sample_types.size() < 2) return;
    std::map<int64_t, int64_t> sampled;  // tid -> cpu ns in its samples
    auto tid_of = [](const Sample& s) {
        for (const Label& l : s.labels)
            if (l.key == "tid") return l.num;
        return int64_t{0};
    };
    for (const Sample& s : profile.samples) sampled[tid_of(s)] += s.values[1];
    for (Sample& s : profile.samples) {
        const int64_t tid = tid_of(s);
        auto pool = off_cpu_ns_.find(static_cast<pid_t>(tid));
        const int64_t in_samples = sampled[tid];
        if (pool == off_cpu_ns_.end() || in_samples <= 0) continue;
        const double factor =
            1.0 + static_cast<double>(pool->second) / static_cast<double>(in_samples);
        s.values[1] = static_cast<int64_t>(static_cast<double>(s.values[1]) * factor);
    }
}

/// Adds the current unwinder's counters to the run's (an image reload replaces the unwinder).
void Sampler::note_unwinder_stats() {
    if (!unwinder_) return;
    const UnwindStats u = unwinder_->stats();
    stats_.unwinds += u.stacks;
    stats_.unwinds_cached += u.cached_walks;
}

void Sampler::add_reuse(ThreadSlot& t, int64_t weight, int64_t now) {
    ++t.reuse_count;
    t.reuse_weight += std::max<int64_t>(0, weight);
    ++stats_.samples;
    t.last_sample_ns = now;
}

/// The reused samples of `t` so far, as one sample of its kept stack (same stack, same labels).
void Sampler::flush_reuse(ThreadSlot& t) {
    if (t.reuse_count == 0 || !t.have_stack) return;
    builder_.add(t.stack, {t.reuse_count, t.reuse_weight}, t.stack_labels);
    t.reuse_count = 0;
    t.reuse_weight = 0;
}

/// The largest stopped-time fraction of a live thread that has been watched for a while (a
/// young thread's single stop would read as a huge fraction).
double Sampler::worst_pause_fraction(int64_t now) const {
    double worst = 0;
    for (const auto& [tid, t] : threads_) {
        const int64_t watched = now - t.first_seen_ns;
        if (t.pause_ns > 0 && watched >= 10 * nominal_ns_)
            worst = std::max(worst, static_cast<double>(t.pause_ns) / static_cast<double>(watched));
    }
    return worst;
}

}  // namespace pmprof::sampling
