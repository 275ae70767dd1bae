// The overhead guard (src/sites/guard.h): the probes' cost from hit counts and kernel time.
#include "sites/guard.h"

#include <algorithm>

namespace pmprof::sites {

CostEstimate estimate_cost(const CostReading& a, const CostReading& b, double base_sys_share) {
    CostEstimate e;
    e.span_ns = static_cast<double>(b.time_ns - a.time_ns);
    e.cpu_ns = b.cpu_ns > a.cpu_ns ? static_cast<double>(b.cpu_ns - a.cpu_ns) : 0;
    const double sys = b.sys_ns > a.sys_ns ? static_cast<double>(b.sys_ns - a.sys_ns) : 0;
    const double hits = b.hits > a.hits ? static_cast<double>(b.hits - a.hits) : 0;
    const double by_hits = hits * kMinHitNs;
    // /proc's utime/stime split is sampled at the tick: below a few ticks it is noise.
    const double by_kernel = sys >= static_cast<double>(kGuardMinSysNs)
                                 ? std::max(0.0, sys - base_sys_share * e.cpu_ns)
                                 : 0;
    e.from_kernel_time = by_kernel > by_hits;
    e.cost_ns = std::min(e.cpu_ns, std::max(by_hits, by_kernel));
    e.share = e.cpu_ns > 0 ? e.cost_ns / e.cpu_ns : 0;
    return e;
}

bool OverheadGuard::over(const CostReading& r) {
    latest_ = r;
    recent_.push_back(r);
    // Keep one reading at or before the start of the span, and everything after it.
    while (recent_.size() > 1 && recent_[1].time_ns <= r.time_ns - kGuardSpanNs)
        recent_.pop_front();
    const CostReading& from =
        recent_.front().time_ns <= r.time_ns - kGuardSpanNs ? recent_.front() : first_;
    CostEstimate e = estimate_cost(from, r, base_);
    if (r.time_ns < kGuardFirstNs || e.cpu_ns < static_cast<double>(kGuardMinCpuNs)) return false;
    last_ = e;
    return budget_ < 1 && e.share > budget_;
}

CostEstimate OverheadGuard::whole() const { return estimate_cost(first_, latest_, base_); }

}  // namespace pmprof::sites
