// /proc parsers (pure functions over text, unit-tested on literal strings) and thin readers.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pmprof/support/error.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/types.h"

namespace pmprof {

/// /proc/PID/task/TID/stat. `comm` may hold spaces and parentheses: it ends at the last ')'.
struct TaskStat {
    pid_t tid = 0;
    std::string comm;
    ThreadState state = ThreadState::Unknown;
    pid_t ppid = 0;
    uint64_t utime_ticks = 0;
    uint64_t stime_ticks = 0;
    int64_t num_threads = 0;
    uint64_t start_time_ticks = 0;  // since boot: with the pid, identifies a process (pid reuse)
    int processor = -1;
};

/// /proc/PID/status (the fields pmprof uses).
struct TaskStatus {
    std::string name;
    ThreadState state = ThreadState::Unknown;
    pid_t tgid = 0;
    pid_t pid = 0;
    pid_t ppid = 0;
    pid_t tracer_pid = 0;
    uid_t uid_real = 0, uid_effective = 0;
    int64_t threads = 0;
    uint64_t voluntary_ctxt_switches = 0;
    uint64_t nonvoluntary_ctxt_switches = 0;
    uint64_t vm_rss_kb = 0;
    uint64_t cap_eff = 0;
    int seccomp = -1;  // Seccomp: 0 none, 1 strict, 2 filter; -1 when the kernel has no field
};

/// /proc/PID/task/TID/schedstat: time on cpu, time waiting to run, timeslices.
struct SchedStat {
    uint64_t run_ns = 0;
    uint64_t wait_ns = 0;
    uint64_t timeslices = 0;
};

/// /proc/PID/task/TID/syscall: "running", "-1 sp pc" (stopped outside a syscall) or
/// "nr a0 a1 a2 a3 a4 a5 sp pc".
struct SyscallState {
    bool running = false;  // the thread was on cpu: nothing else is valid
    long nr = -1;          // -1: not in a syscall
    std::array<uint64_t, 6> args{};
    uint64_t sp = 0;
    uint64_t pc = 0;
};

Result<TaskStat> parse_stat(std::string_view text);
Result<TaskStatus> parse_status(std::string_view text);
Result<SchedStat> parse_schedstat(std::string_view text);
/// /proc/PID/task/TID/sched (CONFIG_SCHED_DEBUG), field se.exec_start: the run-queue clock, in
/// nanoseconds, when the thread last started on a cpu or was last charged for running; for a
/// thread off its cpu, when it left it. __schedule() charges the thread that leaves a cpu and
/// starts the one that takes it with one clock reading, so the two read equal until either runs
/// again (docs/facts.md).
Result<int64_t> parse_sched_exec_start(std::string_view text);
Result<SyscallState> parse_syscall(std::string_view text);
/// Parses one maps line; nullopt for a malformed one.
std::optional<MemoryMap> parse_maps_line(std::string_view line);
/// Parses a whole maps file, skipping malformed lines.
std::vector<MemoryMap> parse_maps(std::string_view text);
/// Name of an x86_64 syscall number ("epoll_wait"), or "syscall_<nr>" when unknown.
std::string syscall_name(long nr);

// Readers: "/proc/<pid>/..." and "/proc/<pid>/task/<tid>/...".
Result<TaskStat> read_task_stat(pid_t pid, pid_t tid);
Result<TaskStatus> read_status(pid_t pid);
Result<TaskStatus> read_task_status(pid_t pid, pid_t tid);
Result<SchedStat> read_schedstat(pid_t pid, pid_t tid);
/// Re-reads a kept-open schedstat file (pread at offset 0) without allocating: the sampler reads
/// thousands a second. Errors as pread_all (ESRCH once the thread has exited).
Result<SchedStat> read_schedstat(const UniqueFd& fd);
/// parse_sched_exec_start of a kept-open sched file (one pread, no allocation).
Result<int64_t> read_sched_exec_start(const UniqueFd& fd);
Result<SyscallState> read_syscall(pid_t pid, pid_t tid);
Result<std::vector<MemoryMap>> read_maps(pid_t pid);
/// /proc/PID/map_files/<lo>-<hi>: the very file mapping `m` maps, also when it was deleted or
/// replaced or lives in another mount namespace (opening it needs CAP_SYS_ADMIN).
std::string map_files_path(pid_t pid, const MemoryMap& m);
/// Kernel function the thread sleeps in ("do_epoll_wait"), "" when running or hidden.
std::string read_wchan(pid_t pid, pid_t tid);
/// The thread ids in /proc/PID/task, sorted.
Result<std::vector<pid_t>> list_tasks(pid_t pid);
/// Whether a thread passes a --thread filter: an empty filter passes every thread, otherwise
/// one entry must be the thread's name (its comm) or its tid in decimal.
bool thread_selected(const std::vector<std::string>& filter, pid_t tid, std::string_view name);
/// argv joined by spaces ("" for a zombie or kernel thread).
std::string read_cmdline(pid_t pid);
/// /proc/sys/kernel/yama/ptrace_scope as an integer, -1 when the file does not exist (no Yama).
int read_ptrace_scope();
/// The start time of process `pid` (field 22 of its stat: with the pid, it names one process
/// across pid reuse); 0 when it is gone.
uint64_t process_start_ticks(pid_t pid);
/// Whether process `pid`, started at `start_ticks` (0: any), still has a thread that is not a
/// zombie: false once it exited, or when the pid is another process's now.
bool process_running(pid_t pid, uint64_t start_ticks);

/// One process, named across pid reuse by its start time: taken at the start of a verb, it
/// tells later whether that process has exited since, so an error caused by its exit (an open
/// under /proc/N/root reads like a missing file) can say so. A process that was not running
/// when taken (gone, or a zombie leader) never "exits during" anything.
class ProcessLife {
  public:
    explicit ProcessLife(pid_t pid);
    /// Was running when taken and is not now (or its pid names another process).
    bool exited() const;
    /// `e`, or "pid N exited during WHAT" (ESRCH) when the exit is why it failed.
    Error explain(Error e, std::string_view what) const;

  private:
    pid_t pid_;
    uint64_t start_ticks_;  // 0: not running when taken
};

}  // namespace pmprof
