// TracerPriorityBoost: setpriority(2) and sched_setscheduler(2) on the calling thread only
// (PRIO_PROCESS with a tid, and pid 0, are per thread on Linux).
#include "pmprof/os/tracer_priority.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

namespace pmprof {

TracerPriorityBoost::TracerPriorityBoost(Kind kind) : tid_(static_cast<pid_t>(::gettid())) {
    if (kind == Kind::Realtime && ::sched_getscheduler(0) == SCHED_OTHER) {
        sched_param param{};
        param.sched_priority = kRealtimePriority;
        // SCHED_RESET_ON_FORK: a thread or child started meanwhile (libdw's, a debuginfod
        // helper) runs as a normal thread, never inherits the realtime policy.
        if (::sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &param) == 0) {
            realtime_ = true;
            return;
        }
    }
    errno = 0;  // getpriority may legitimately return -1
    const int old = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid_));
    if (errno != 0 || old <= kBoostedNice) return;
    if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid_), kBoostedNice) == 0) {
        old_nice_ = old;
        nice_raised_ = true;
    }
}

TracerPriorityBoost::~TracerPriorityBoost() { end(); }

void TracerPriorityBoost::end() {
    if (realtime_) {
        // Back to SCHED_OTHER: sched_setscheduler keeps the thread's nice value, which the
        // realtime policy never changed.
        sched_param param{};
        ::sched_setscheduler(0, SCHED_OTHER, &param);
        realtime_ = false;
    }
    if (nice_raised_) {
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid_), old_nice_);
        nice_raised_ = false;
    }
}

}  // namespace pmprof
