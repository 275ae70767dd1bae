// probe_traceable: can `serve` trace its target? Answered by really seizing it, from a thread
// that exits at once: the kernel detaches the tracees of an exiting tracer without stopping
// them (ptrace(2): "If the tracer dies, all tracees are automatically detached"), so nothing is
// stopped and no system call of the target is interrupted. And the permission explanation.
#include <sys/ptrace.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "pmprof/os/access.h"
#include "pmprof/os/procfs.h"
#include "pmprof/ptrace/session.h"
#include "ptrace/session_core.h"

namespace pmprof {

Error permission_error(pid_t pid, int err) {
    Error e = Error::from_errno(fmt::format("PTRACE_SEIZE pid {}", pid), err);
    e.message += "; " + explain_trace_permission(inspect_trace_access(pid));
    return e;
}

int probe_ptrace_syscall() {
    // PTRACE_GETREGS of a process we do not trace: ESRCH from ptrace itself.
    if (::ptrace(PTRACE_GETREGS, ::getpid(), nullptr, nullptr) == 0) return 0;
    return errno == ESRCH ? 0 : errno;
}

Result<void> probe_traceable(pid_t pid) {
    if (auto ok = check_traceable(pid); !ok.ok()) return ok.error();
    // The leader, or the first live thread when the leader is a zombie.
    pid_t tid = pid;
    if (auto st = read_task_stat(pid, pid); st.ok() && st->state == ThreadState::Zombie) {
        if (auto tids = list_tasks(pid); tids.ok())
            for (pid_t t : *tids)
                if (auto ts = read_task_stat(pid, t); ts.ok() && ts->state != ThreadState::Zombie) {
                    tid = t;
                    break;
                }
    }
    int err = 0;
    bool seized = false;
    // No options: no event of the target stops it in the microseconds it is traced.
    std::thread probe([&] {
        if (::ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) == 0)
            seized = true;
        else
            err = errno;
    });
    probe.join();
    if (seized) {
        // The join returns when the thread has released its memory; the detach follows in its
        // exit_notify. Wait for it (microseconds), bounded.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        while (std::chrono::steady_clock::now() < deadline) {
            auto st = read_task_status(pid, tid);
            if (!st.ok() || st->tracer_pid == 0) break;
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
        return {};
    }
    if (err == ESRCH) return Error{fmt::format("no process with pid {}", pid), ESRCH};
    if (err == EPERM || err == ENOSYS) return permission_error(pid, err);
    return Error::from_errno(fmt::format("PTRACE_SEIZE pid {}", pid), err);
}

}  // namespace pmprof
