// The overhead guard of a --sites window: what the probes cost the target, estimated as the
// window runs, and the decision to end the window early when that exceeds the budget
// (AllocSitesOptions::max_overhead). Private to the sites module (src/sites/window.cpp runs it;
// the unit tests feed it readings).
//
// Every allocator call traps into the kernel (a uprobe is a breakpoint), sampled or not: the
// byte sampling is decided in pmprof after the kernel has recorded the call, so the sample rate
// does not lower this cost (docs/heap-sites.md). The trap is spent in the target's own kernel
// time, so the cost is estimated two ways over the last second and the larger kept:
//   - probe hits x kMinHitNs, a lower bound of one trap on any machine (exact count, no noise);
//   - the target's kernel time beyond its kernel share without probes (measured while the
//     events were being opened, disabled), which catches the real per-hit cost of this machine
//     (2-10 us here) once there is enough kernel time to tell it from the tick accounting.
// The cost can never exceed the target's cpu time; its share of that cpu time is what the
// budget limits (a share p means the target's work runs 1 / (1 - p) times slower).
#pragma once

#include <cstdint>
#include <deque>

namespace pmprof::sites {

constexpr double kMinHitNs = 1000;               // one uprobe hit costs at least 1 us
constexpr int64_t kGuardSpanNs = 1'000'000'000;  // judged over the last second
constexpr int64_t kGuardFirstNs = 200'000'000;   // first judgement this long into the window
constexpr uint64_t kGuardMinCpuNs = 5'000'000;   // a span with less target cpu is not judged
constexpr uint64_t kGuardMinSysNs = 20'000'000;  // kernel time below this is tick noise
constexpr int64_t kGuardCheckNs = 100'000'000;   // a reading every 100 ms

/// The target and the probes, cumulative since the window opened (the events were enabled).
struct CostReading {
    int64_t time_ns = 0;  // since the window opened
    uint64_t cpu_ns = 0;  // the target's user + system time
    uint64_t sys_ns = 0;  // of which system
    uint64_t hits = 0;    // probe hits: records read plus records the kernel dropped
};

/// The probes' cost over one span.
struct CostEstimate {
    double span_ns = 0;
    double cpu_ns = 0;              // the target's cpu time in the span
    double cost_ns = 0;             // of which the probes' (<= cpu_ns)
    double share = 0;               // cost / cpu, 0 when there was no cpu time
    bool from_kernel_time = false;  // the kernel-time estimate was the larger
};

/// The cost of the probes between readings `a` and `b` (a earlier), with `base_sys_share` the
/// target's kernel share of its cpu time without probes.
CostEstimate estimate_cost(const CostReading& a, const CostReading& b, double base_sys_share);

class OverheadGuard {
  public:
    /// `budget`: the largest share of the target's cpu time the probes may take (0.05: 5 %);
    /// 1 or more: never ends the window.
    OverheadGuard(double budget, double base_sys_share) : budget_(budget), base_(base_sys_share) {}
    /// Adds a reading (time_ns increasing); true when the window must end: over the last
    /// second (or since the window opened, if younger), the probes took more than the budget
    /// of the target's cpu time, judged from kGuardFirstNs on and only on spans where the
    /// target used at least kGuardMinCpuNs of cpu.
    bool over(const CostReading& r);
    /// The span that was judged last (the one that ended the window, when one did).
    const CostEstimate& last() const { return last_; }
    /// Over the whole window up to the last reading (the summary's figure).
    CostEstimate whole() const;
    double base_sys_share() const { return base_; }

  private:
    double budget_, base_;
    CostReading first_{}, latest_{};
    std::deque<CostReading> recent_;  // readings of the last span, oldest first
    CostEstimate last_;
};

}  // namespace pmprof::sites
