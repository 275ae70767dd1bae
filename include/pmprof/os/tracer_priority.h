// Scheduling priority of the tracer thread while target threads wait on it.
#pragma once

#include <sys/types.h>

namespace pmprof {

/// Raises the calling thread's scheduling priority for the object's lifetime, when allowed (root
/// or CAP_SYS_NICE; otherwise nothing changes), and restores it. A thread the tracer stopped
/// stays stopped until the tracer has run: if the tracer waits for a cpu behind the target's own
/// busy threads, so does the stopped thread. The tracer's cpu use does not grow with its
/// priority; it only runs sooner. Only the calling thread changes (Linux scheduling attributes
/// are per thread); threads it creates meanwhile do not inherit a realtime policy. Must be
/// destroyed on the thread that created it.
class TracerPriorityBoost {
  public:
    enum class Kind {
        /// nice -10. It only weighs against threads in the same task group: with autogroup
        /// (sched(7), on by default) a pmprof started in another session than the target's
        /// gains nothing on the target's threads.
        Nice,
        /// SCHED_FIFO priority 1 (falls back to Nice when refused): ahead of every normal
        /// thread whatever its group. Only for short, bounded phases in which the tracer
        /// mostly sleeps waiting for stops (a snapshot), never for a sampling loop.
        Realtime,
    };

    explicit TracerPriorityBoost(Kind kind = Kind::Nice);
    ~TracerPriorityBoost();
    TracerPriorityBoost(const TracerPriorityBoost&) = delete;
    TracerPriorityBoost& operator=(const TracerPriorityBoost&) = delete;

    /// Restores the previous priority now (the destructor then does nothing). Idempotent.
    void end();
    /// True while the priority is raised (nice or realtime).
    bool boosted() const { return nice_raised_ || realtime_; }
    /// True while the thread runs SCHED_FIFO because of this object.
    bool realtime() const { return realtime_; }

    static constexpr int kBoostedNice = -10;
    static constexpr int kRealtimePriority = 1;

  private:
    pid_t tid_;
    int old_nice_ = 0;
    bool nice_raised_ = false;
    bool realtime_ = false;
};

}  // namespace pmprof
