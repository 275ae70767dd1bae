// The allocation-site recorder's state (src/sites/records.cpp: records to samples;
// src/sites/window.cpp: the events and the window). Not an interface.
#pragma once

#include <time.h>

#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pmprof/os/perf_events.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/fd.h"
#include "pmprof/unwind/unwind.h"
#include "sites/internal.h"
#include "sites/probes.h"

namespace pmprof::sites {

constexpr int64_t kMs = 1000000;
constexpr size_t kRingBytes = 64u << 20;  // per cpu; halved when the mlock limit says so
constexpr int64_t kSettle = 2 * kMs;      // records newer than drain start - this wait a round
constexpr uint64_t kStale = 1000 * kMs;   // no allocator call takes this long: a lost return
constexpr uint32_t kRetStackBytes = 512;  // posix_memalign's return: *memptr is usually there

inline int64_t mono_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

/// One probe hit, after the first step.
struct Hit {
    uint64_t time = 0;
    pid_t tid = 0;
    const AllocFunction* fn = nullptr;
    bool ret = false;
    uint64_t a0 = 0, a1 = 0;  // entry: size (or rdi*rsi) and the pointer argument; ret: rax
    uint64_t sp = 0;          // entry: sp at the first instruction; ret: that sp + 8
    bool sampled = false;
    bool nested = false;  // entry made inside another allocator call of the thread
    bool tail = false;    // entered by a tail call from a probed function (jemalloc's _Znam)
    uint32_t stack = 0;
    uint64_t memptr_value = 0;  // posix_memalign's return: *memptr from the stack copy
    bool memptr_known = false;
};

/// An entry waiting for its return.
struct Pending {
    const AllocFunction* fn = nullptr;
    uint64_t size = 0, ptr = 0;  // ptr: realloc's old pointer, posix_memalign's memptr
    bool sampled = false, nested = false;
    uint32_t stack = 0;
    uint64_t time = 0, sp = 0;
};

/// Drops from a call stack (entry sp, time; innermost last) the calls that cannot be in
/// progress at a hit with stack pointer `sp` (an entry: sp is its entry sp) at `time`.
/// `time` 0: a return, which a slow call (descheduled, mapping memory) may take long to reach.
template <typename V, typename SpOf, typename TimeOf>
size_t drop_finished(V& calls, uint64_t sp, uint64_t time, SpOf sp_of, TimeOf time_of) {
    size_t dropped = 0;
    while (!calls.empty() &&
           (sp_of(calls.back()) <= sp || (time != 0 && time > time_of(calls.back()) + kStale))) {
        calls.pop_back();
        ++dropped;
    }
    return dropped;
}

struct ThreadState {
    int64_t until_sample = 0;  // bytes left until the next sample
    // Allocator calls in progress (first step's view): (entry sp, time). A return's sp is its
    // entry's + 8; an entry at the same or a higher sp means the calls below have returned.
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    std::vector<uint64_t> memptrs;  // posix_memalign calls in progress
    std::vector<Pending> pending;
};

class SitesRecorder {
  public:
    SitesRecorder(pid_t pid, const AllocSitesOptions& opt) : pid_(pid), opt_(opt), memory_(pid) {
        cfg_.inherit = true;
        cfg_.side_band = false;
        cfg_.sample_id = true;
        cfg_.lazy_stack = true;
        cfg_.watermark = kRingBytes / 8;
    }
    Result<AllocSitesResult> run();

  private:
    Result<void> open_thread(pid_t tid);
    Result<void> open_events();
    void remove_probes();
    void drain(bool final);
    void first_step(const perf::Sample& s, const ThreadCapture& cap);
    void replay(const Hit& h);
    void add_sample(uint32_t stack, uint64_t size, uint64_t ptr);
    void remove_live(uint64_t ptr);
    uint32_t intern(const RawStack& st);
    bool is_trampoline(uint64_t address);
    int64_t next_gap();

    const pid_t pid_;
    const AllocSitesOptions& opt_;
    ProcessMemory memory_;
    perf::EventConfig cfg_;
    int pmu_ = -1;
    std::vector<int> cpus_;
    AllocatorPlan plan_;
    struct ProbeRef {
        const AllocProbe* probe;
        bool ret;
    };
    std::vector<std::pair<const AllocProbe*, bool>> events_wanted_;
    std::unordered_map<uint64_t, ProbeRef> by_id_;
    std::vector<perf::Ring> rings_;
    std::vector<UniqueFd> events_;
    // The probe of each of events_ and rings_ (the ring's own event), and the hits per probe:
    // closing goes hottest breakpoint first (src/sites/window.cpp).
    std::vector<const AllocProbe*> event_probe_, ring_probe_;
    std::unordered_map<const AllocProbe*, uint64_t> hits_by_probe_;
    std::set<pid_t> opened_;
    std::vector<int> ret_fds_, entry_fds_;  // to enable: returns first
    std::unique_ptr<ProcessImage> image_;
    std::unique_ptr<Unwinder> unwinder_;
    ThreadCapture cap_;
    std::unordered_map<pid_t, ThreadState> first_, second_;
    std::vector<Hit> batch_, held_;
    std::vector<RawStack> stacks_;
    std::unordered_map<std::string, uint32_t> stack_ids_;
    std::vector<Sampled> samples_;
    std::unordered_map<uint64_t, size_t> live_;  // sampled pointer -> index into samples_
    uint64_t tramp_lo_ = 0, tramp_hi_ = 0;       // the [uprobes] mapping (uretprobe trampoline)
    std::mt19937_64 rng_{std::random_device{}()};
    AllocSitesStats stats_;
};

}  // namespace pmprof::sites
