// perf_event_open for the kernel-sampled cpu mode (src/sampler/perf.cpp): task-clock sampling
// events with user registers and the top of the user stack, one mmap ring buffer per cpu that
// every event of that cpu writes into (PERF_EVENT_IOC_SET_OUTPUT), and the parsing of the
// records read from it. Not an interface: only src/perf_*.cpp include it.
#pragma once

#include <linux/perf_event.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "pmprof/support/error.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/types.h"

namespace pmprof::perf {

/// x86_64 user registers the unwinder needs (perf_regs.h numbering): ax bx cx dx si di bp sp ip
/// and r8-r15. The kernel writes them in bit order.
constexpr uint64_t kRegsMask = 0x1ff | (0xffull << 16);

struct EventConfig {
    double rate_hz = 99;
    uint32_t stack_bytes = 32 * 1024;  // sample_stack_user: copied from the user sp upwards
    bool kernel_time = true;           // false: exclude_kernel (perf_event_paranoid 2)
    bool kernel_callchain = false;     // PERF_SAMPLE_CALLCHAIN, kernel part only
    bool inherit = true;               // threads created later carry the event
    bool side_band = true;             // comm (thread names, exec) and task records
    size_t watermark = 0;              // wake poll() once this many bytes wait (0: every record)
    bool sample_id = false;            // PERF_SAMPLE_ID: which (parent) event wrote the sample
    bool lazy_stack = false;           // parse_sample leaves the stack copy in the record
};

/// The PERF_SAMPLE_* bits of events made with `cfg`.
uint64_t sample_type_of(const EventConfig& cfg);

/// perf_event_open(task-clock sampling) on `tid` for `cpu` (-1: any cpu; not with inherit and
/// a ring buffer). Enabled at once.
Result<UniqueFd> open_task_clock(pid_t tid, int cpu, const EventConfig& cfg);

/// Calls `open_thread(tid)` for every thread of `pid` that `opened` does not hold yet, re-listing
/// /proc/PID/task until a pass finds no new thread: a thread created by one that had no event yet
/// would not inherit one. `open_thread` adds what it opened to `opened`; its ESRCH (the thread
/// exited meanwhile) is skipped, any other error returned. At most 100 passes.
Result<void> open_for_every_thread(pid_t pid, const std::set<pid_t>& opened,
                                   const std::function<Result<void>(pid_t tid)>& open_thread);

/// The cpus that are online (/sys/devices/system/cpu/online).
std::vector<int> online_cpus();
int read_paranoid();           // perf_event_paranoid, 2 when unreadable
bool has_capability(int cap);  // effective set of this process
int read_max_sample_rate();    // perf_event_max_sample_rate, 0 when unreadable

/// One decoded PERF_RECORD_SAMPLE: `capture` holds the registers and stack copy in the form the
/// ptrace path hands the unwinder; `kernel_ips` the kernel callchain (innermost first).
struct Sample {
    pid_t pid = 0, tid = 0;
    uint64_t time = 0, period = 0;
    bool user_regs = false;  // false: no user state (kernel thread): nothing to unwind
    std::vector<uint64_t> kernel_ips;
    uint64_t id = 0;  // with EventConfig::sample_id: the id of the event opened (PERF_EVENT_IOC_ID)
    // With EventConfig::lazy_stack: the stack copy, valid during the sink's call only (the
    // capture's stack bytes are then left empty; copy them when the sample is wanted).
    const uint8_t* stack_data = nullptr;
    size_t stack_size = 0;
};

/// What the ring buffer holds besides samples.
struct RecordSink {
    std::function<void(const Sample&, const ThreadCapture&)> sample;
    std::function<void(pid_t pid, pid_t tid, const std::string& comm, bool exec)> comm;
    std::function<void(uint64_t lost)> lost;
    std::function<void()> throttle;
};

/// The ring buffer of one cpu: mmap'd data pages the kernel writes and we consume, never
/// blocking the kernel (a full buffer drops samples and says so with PERF_RECORD_LOST).
class Ring {
  public:
    Ring() = default;
    Ring(Ring&& o) noexcept;
    Ring& operator=(Ring&&) = delete;
    Ring(const Ring&) = delete;
    ~Ring();
    /// Maps `data_bytes` (a power-of-two number of pages) of `fd`, halving on EPERM/ENOMEM
    /// (perf_event_mlock_kb) down to 16 pages.
    static Result<Ring> map(UniqueFd fd, size_t data_bytes);
    int fd() const { return fd_.get(); }
    size_t data_bytes() const { return data_size_; }
    /// Decodes every record written so far and frees the space. `cfg` must be the events'.
    size_t drain(const EventConfig& cfg, const RecordSink& sink);

  private:
    UniqueFd fd_;
    void* base_ = nullptr;
    size_t map_size_ = 0, data_size_ = 0;
    std::vector<uint8_t> wrap_;  // a record that wraps around the end, made contiguous
    ThreadCapture cap_;          // reused: its stack buffer keeps its capacity
    Sample sample_;
};

/// A uprobe (or with `ret`, a uretprobe) on `path` at file offset `offset` for `tid` on `cpu`,
/// through the uprobe PMU (`pmu_type`: /sys/bus/event_source/devices/uprobe/type): every hit is
/// a sample (period 1) with the user registers and `stack_bytes` of user stack (0: none). It is
/// opened disabled (the breakpoint is placed at once; enable with PERF_EVENT_IOC_ENABLE). The
/// kernel removes the probe when the last descriptor closes, also when pmprof is killed.
Result<UniqueFd> open_uprobe(pid_t tid, int cpu, int pmu_type, const std::string& path,
                             uint64_t offset, bool ret, uint32_t stack_bytes,
                             const EventConfig& cfg);
/// The uprobe PMU's type, -1 when the kernel has none (and `why` says so).
int uprobe_pmu_type(std::string* why);
/// The retprobe bit of the uprobe PMU's config (format/retprobe: "config:0"), 0 when unreadable.
int uprobe_retprobe_bit();

/// Parses one PERF_RECORD_SAMPLE body (after the header) into `s` and `cap`; false if malformed.
bool parse_sample(const uint8_t* p, size_t n, const EventConfig& cfg, Sample* s,
                  ThreadCapture* cap);

}  // namespace pmprof::perf
