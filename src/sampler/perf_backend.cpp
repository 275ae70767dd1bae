// Which backend samples cpu mode (include/pmprof/sampler/perf.h): what the kernel allows for the
// target, found by opening one sampling event on it, and auto's choice with its reason.
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "pmprof/os/perf_events.h"
#include "pmprof/sampler/perf.h"

namespace pmprof {
namespace {

constexpr int kCapSysAdmin = 21;
constexpr int kCapPerfmon = 38;

std::string privilege_text(bool privileged, int paranoid) {
    if (geteuid() == 0) return "root";
    if (privileged) return "CAP_PERFMON";
    return fmt::format("kernel.perf_event_paranoid = {}", paranoid);
}

}  // namespace

Result<CpuBackend> parse_cpu_backend(std::string_view name) {
    if (name == "auto") return CpuBackend::Auto;
    if (name == "ptrace") return CpuBackend::Ptrace;
    if (name == "perf") return CpuBackend::Perf;
    return Error{"unknown backend '" + std::string(name) + "' (expected auto, ptrace or perf)"};
}

const char* cpu_backend_name(CpuBackend b) {
    switch (b) {
    case CpuBackend::Auto:
        return "auto";
    case CpuBackend::Ptrace:
        return "ptrace";
    case CpuBackend::Perf:
        return "perf";
    }
    return "?";
}

PerfAccess probe_perf_access(pid_t pid) {
    PerfAccess a;
    a.paranoid = perf::read_paranoid();
    const bool privileged =
        geteuid() == 0 || perf::has_capability(kCapPerfmon) || perf::has_capability(kCapSysAdmin);
    // paranoid 2: user-space only for an unprivileged user; 3 and up (Debian): nothing at all.
    const bool want_kernel = privileged || a.paranoid <= 1;
    perf::EventConfig cfg;
    cfg.rate_hz = 1;
    cfg.kernel_time = want_kernel;
    cfg.inherit = false;
    cfg.side_band = false;
    auto fd = perf::open_task_clock(pid, -1, cfg);
    if (fd.ok()) {
        a.allowed = true;
        a.kernel = want_kernel;
        a.why = want_kernel ? "allowed (" + privilege_text(privileged, a.paranoid) + ")"
                            : fmt::format("allowed for user-space time only (kernel."
                                          "perf_event_paranoid = {}; 1 or CAP_PERFMON also counts "
                                          "time in syscalls)",
                                          a.paranoid);
        return a;
    }
    const int err = fd.error().errno_value;
    struct stat st {};
    const bool other_user =
        pid > 0 && ::stat(fmt::format("/proc/{}", pid).c_str(), &st) == 0 && st.st_uid != geteuid();
    if ((err == EACCES || err == EPERM) && !privileged && a.paranoid <= 2 && other_user) {
        a.why = fmt::format("perf_event_open on pid {} is not allowed: it runs as uid {} and perf "
                            "events on another user's process need root or CAP_PERFMON",
                            pid, st.st_uid);
    } else if (err == EACCES || err == EPERM) {
        a.why = fmt::format("perf_event_open is not allowed here (kernel.perf_event_paranoid = {}"
                            "; it needs a value <= 2 for user-space sampling of your own "
                            "processes, <= 1 to count kernel time, or CAP_PERFMON)",
                            a.paranoid);
    } else if (err == ESRCH) {
        a.why = fmt::format("no process {}", pid);
    } else if (err == ENOENT || err == ENODEV || err == EOPNOTSUPP || err == ENOSYS) {
        a.why = "this kernel has no task-clock sampling with user registers and stack "
                "(perf_event_open: " +
                fd.error().message + ")";
    } else {
        a.why = fd.error().message;
    }
    return a;
}

Result<BackendChoice> choose_backend(pid_t pid, const SamplerOptions& opt) {
    BackendChoice c;
    if (opt.mode == SampleMode::Wall) {
        if (opt.backend == CpuBackend::Perf)
            return Error{"--backend perf samples cpu time only: use it with --mode cpu (wall "
                         "mode needs every thread's stack, blocked or not, which only ptrace "
                         "gives)"};
        c.reason = "wall mode is ptrace-based";
        return c;
    }
    if (opt.backend == CpuBackend::Ptrace) {
        c.reason = "--backend ptrace";
        return c;
    }
    const PerfAccess a = probe_perf_access(pid);
    if (!a.allowed) {
        if (opt.backend == CpuBackend::Perf) return Error{"--backend perf: " + a.why};
        c.reason = "auto: " + a.why + "; ptrace instead";
        return c;
    }
    c.backend = CpuBackend::Perf;
    c.kernel_time = a.kernel;
    c.reason = std::string(opt.backend == CpuBackend::Auto ? "auto" : "--backend perf") +
               ": perf_event_open " + a.why;
    return c;
}

}  // namespace pmprof
