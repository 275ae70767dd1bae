// The allocation-site recorder (include/pmprof/sites/sites.h). For every thread and
// online cpu, one uprobe event per allocator entry point and one uretprobe per allocating
// function, with inherit (threads created later carry them), all of a cpu writing into that
// cpu's ring (PERF_EVENT_IOC_SET_OUTPUT), as the cpu mode's perf backend does. Each record says
// which probe fired (PERF_SAMPLE_ID) and holds the user registers; allocation entries also the
// top of the user stack. Records are read in two steps: as they are drained, an allocation entry
// is sampled by bytes (per thread, Go's exponential spacing) and only a sampled one's stack is
// copied and unwound; then the batch is put in time order across the rings and replayed:
#include <algorithm>
#include <cstring>

#include "pmprof/os/procfs.h"
#include "sites/recorder.h"

namespace pmprof::sites {

int64_t SitesRecorder::next_gap() {
    if (opt_.sample_rate <= 1) return 0;
    std::exponential_distribution<double> d(1.0 / static_cast<double>(opt_.sample_rate));
    return static_cast<int64_t>(d(rng_)) + 1;
}

uint32_t SitesRecorder::intern(const RawStack& st) {
    std::string key(reinterpret_cast<const char*>(st.frames.data()),
                    st.frames.size() * sizeof(RawFrame));
    auto [it, fresh] = stack_ids_.emplace(std::move(key), static_cast<uint32_t>(stacks_.size()));
    if (fresh) stacks_.push_back(st);
    return it->second;
}

bool SitesRecorder::is_trampoline(uint64_t address) {
    if (tramp_hi_ == 0 && image_->find_map(address) == nullptr) {
        // The kernel maps [uprobes] at the first hit: look for it when an address is unknown.
        if (auto maps = read_maps(pid_); maps.ok())
            for (const MemoryMap& m : *maps)
                if (m.path == "[uprobes]") {
                    tramp_lo_ = m.start;
                    tramp_hi_ = m.end;
                }
    }
    return address >= tramp_lo_ && address < tramp_hi_;
}

void SitesRecorder::first_step(const perf::Sample& s, const ThreadCapture& cap) {
    ++stats_.records;
    if (s.pid != pid_ || !s.user_regs) return;
    auto it = by_id_.find(s.id);
    if (it == by_id_.end()) return;
    ++hits_by_probe_[it->second.probe];
    Hit h;
    h.time = s.time;
    h.tid = s.tid;
    h.fn = it->second.probe->fn;
    h.ret = it->second.ret;
    const auto& r = cap.regs.dwarf;  // DWARF numbering: rax 0, rdx 1, rsi 4, rdi 5
    const uint64_t args[3] = {r[5], r[4], r[1]};
    ThreadState& t = first_[s.tid];
    h.sp = cap.regs.sp();
    auto sp_of = [](const std::pair<uint64_t, uint64_t>& c) { return c.first; };
    auto time_of = [](const std::pair<uint64_t, uint64_t>& c) { return c.second; };
    if (h.ret) {
        h.a0 = r[0];
        drop_finished(t.calls, h.sp - 9, 0, sp_of, time_of);  // deeper ones lost returns
        if (!t.calls.empty() && t.calls.back().first == h.sp - 8) t.calls.pop_back();
        if (h.fn->kind == AllocKind::PosixMemalign && !t.memptrs.empty()) {
            // *memptr, from the stack copy of the return when it lies there (it usually does)
            const uint64_t memptr = t.memptrs.back(), sp = cap.regs.sp();
            t.memptrs.pop_back();
            if (s.stack_data != nullptr && memptr >= sp && memptr + 8 <= sp + s.stack_size) {
                std::memcpy(&h.memptr_value, s.stack_data + (memptr - sp), 8);
                h.memptr_known = true;
            }
        }
        batch_.push_back(h);
        return;
    }
    if (h.fn->kind == AllocKind::Free) {
        h.a1 = args[0];
        drop_finished(t.calls, h.sp, s.time, sp_of, time_of);
        h.nested = !t.calls.empty();
        batch_.push_back(h);
        return;
    }
    // A tail call from a probed function (jmp _Znwm) finds its return address already
    // replaced by the outer call's uretprobe trampoline: the same call, not a new one.
    uint64_t ret_word = 0;
    if (s.stack_data != nullptr && s.stack_size >= 8) std::memcpy(&ret_word, s.stack_data, 8);
    h.tail = ret_word != 0 && is_trampoline(ret_word);
    drop_finished(t.calls, h.tail ? h.sp - 1 : h.sp, s.time, sp_of, time_of);
    h.nested = !t.calls.empty();
    t.calls.emplace_back(h.sp, s.time);
    switch (h.fn->kind) {
    case AllocKind::Calloc:
        h.a0 = args[0] * args[1];
        break;
    case AllocKind::Realloc:
        h.a0 = args[1];
        h.a1 = args[0];
        break;
    case AllocKind::PosixMemalign:
        h.a0 = args[2];
        h.a1 = args[0];
        t.memptrs.push_back(args[0]);
        break;
    default:
        h.a0 = args[h.fn->size_arg];
        break;
    }
    if (!h.nested && h.a0 > 0) {
        if (t.until_sample == 0 && opt_.sample_rate > 1) t.until_sample = next_gap();
        t.until_sample -= static_cast<int64_t>(h.a0);
        if (t.until_sample <= 0) {
            t.until_sample = next_gap();
            h.sampled = true;
            cap_.tid = cap.tid;
            cap_.ok = true;
            cap_.regs = cap.regs;
            cap_.stack.base = cap.stack.base;
            cap_.stack.bytes.assign(s.stack_data, s.stack_data + s.stack_size);
            RawStack st = unwinder_->unwind(cap_, opt_.max_depth);
            if (st.truncated) ++stats_.unwind_truncated;
            h.stack = intern(st);
        }
    }
    batch_.push_back(h);
}

void SitesRecorder::add_sample(uint32_t stack, uint64_t size, uint64_t ptr) {
    Sampled smp;
    smp.stack = stack;
    smp.size = size;
    smp.ptr = ptr;
    smp.scale = sites::sample_scale(size, opt_.sample_rate);
    ++stats_.samples;
    stats_.sampled_bytes += size;
    if (ptr == 0) smp.live = false;
    samples_.push_back(std::move(smp));
    if (ptr != 0) live_[ptr] = samples_.size() - 1;
}

void SitesRecorder::remove_live(uint64_t ptr) {
    auto it = live_.find(ptr);
    if (it == live_.end()) return;
    samples_[it->second].live = false;
    ++stats_.sampled_freed;
    live_.erase(it);
}

/// Second step, in time order: entries matched to returns, frees to sampled pointers.
void SitesRecorder::replay(const Hit& h) {
    ThreadState& t = second_[h.tid];
    auto sp_of = [](const Pending& p) { return p.sp; };
    auto time_of = [](const Pending& p) { return p.time; };
    const uint64_t below = h.ret ? h.sp - 9 : h.tail ? h.sp - 1 : h.sp;
    stats_.unmatched += drop_finished(t.pending, below, h.ret ? 0 : h.time, sp_of, time_of);
    if (h.fn->kind == AllocKind::Free) {
        if (!t.pending.empty()) return;  // realloc's own free of the old block
        ++stats_.frees;
        if (h.a1 != 0) remove_live(h.a1);
        return;
    }
    if (!h.ret) {
        Pending p;
        p.fn = h.fn;
        p.size = h.a0;
        p.ptr = h.a1;
        p.sampled = h.sampled;
        p.nested = !t.pending.empty();
        p.stack = h.stack;
        p.time = h.time;
        p.sp = h.sp;
        t.pending.push_back(p);
        return;
    }
    if (t.pending.empty() || t.pending.back().sp != h.sp - 8) {
        ++stats_.unmatched;
        return;
    }
    const Pending p = t.pending.back();
    t.pending.pop_back();
    if (p.nested) {
        ++stats_.nested;
        return;
    }
    uint64_t result = h.a0;
    if (p.fn->kind == AllocKind::PosixMemalign) {
        result = 0;
        if (h.a0 == 0) {  // success: the pointer is in *memptr
            uint64_t v = h.memptr_value;
            if (!h.memptr_known)
                if (auto rr = memory_.read(p.ptr, &v, 8); !rr.ok() || *rr != 8) v = 0;
            result = v;
        }
    }
    if (p.fn->kind == AllocKind::Realloc && p.ptr != 0 && (result != 0 || p.size == 0)) {
        ++stats_.frees;
        remove_live(p.ptr);
    }
    if (result == 0) return;  // failed (or realloc(p, 0))
    ++stats_.allocs;
    stats_.alloc_bytes += p.size;
    if (p.sampled) add_sample(p.stack, p.size, result);
}

void SitesRecorder::drain(bool final) {
    const uint64_t cutoff = final ? UINT64_MAX : static_cast<uint64_t>(mono_ns() - kSettle);
    perf::RecordSink sink;
    sink.sample = [this](const perf::Sample& s, const ThreadCapture& c) { first_step(s, c); };
    sink.lost = [this](uint64_t n) { stats_.lost += n; };
    sink.throttle = [this] { ++stats_.throttled; };
    batch_.swap(held_);  // what waited from the last round comes first
    for (perf::Ring& r : rings_) r.drain(cfg_, sink);
    std::stable_sort(batch_.begin(), batch_.end(),
                     [](const Hit& a, const Hit& b) { return a.time < b.time; });
    held_.clear();
    for (Hit& h : batch_) {
        if (h.time > cutoff)
            held_.push_back(h);
        else
            replay(h);
    }
    batch_.clear();
}

}  // namespace pmprof::sites
