// uprobes through perf_event_open (include/pmprof/os/perf_events.h): the uprobe PMU takes the path
// of the file in config1 and the file offset of the probed instruction in config2
// (kernel/events/core.c perf_uprobe_event_init, kernel/trace/trace_event_perf.c perf_uprobe_init;
// tools/perf util/probe-file.c does the same with tracefs). The probe belongs to the event: it is
// unregistered when the event's last descriptor closes, which the kernel also does for a
// killed process. Per-task events only arm the breakpoint in that task's mm.
#include <fmt/format.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "pmprof/os/perf_events.h"

namespace pmprof::perf {

int uprobe_pmu_type(std::string* why) {
    auto text = read_file("/sys/bus/event_source/devices/uprobe/type");
    if (!text.ok() || text->empty()) {
        if (why)
            *why = "this kernel has no uprobe PMU (/sys/bus/event_source/devices/uprobe; needs "
                   "CONFIG_UPROBE_EVENTS, Linux 4.17+)";
        return -1;
    }
    return std::atoi(text->c_str());
}

int uprobe_retprobe_bit() {
    auto text = read_file("/sys/bus/event_source/devices/uprobe/format/retprobe");
    if (!text.ok()) return 0;
    const size_t colon = text->find(':');
    return colon == std::string::npos ? 0 : std::atoi(text->c_str() + colon + 1);
}

Result<UniqueFd> open_uprobe(pid_t tid, int cpu, int pmu_type, const std::string& path,
                             uint64_t offset, bool ret, uint32_t stack_bytes,
                             const EventConfig& cfg) {
    static const int ret_bit = uprobe_retprobe_bit();
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = static_cast<uint32_t>(pmu_type);
    attr.config = ret ? (uint64_t{1} << ret_bit) : 0;
    attr.config1 = reinterpret_cast<uint64_t>(path.c_str());  // uprobe_path
    attr.config2 = offset;                                    // probe_offset
    attr.sample_period = 1;
    attr.disabled = 1;  // enabled together (PERF_EVENT_IOC_ENABLE) once all are in place
    attr.sample_type = sample_type_of(cfg);
    attr.sample_regs_user = kRegsMask;
    attr.sample_stack_user = stack_bytes;
    attr.exclude_hv = 1;
    attr.exclude_callchain_user = 1;
    attr.inherit = cfg.inherit ? 1 : 0;
    attr.sample_id_all = 1;
    attr.use_clockid = 1;  // times comparable with clock_gettime (records are put in order)
    attr.clockid = CLOCK_MONOTONIC;
    if (cfg.watermark > 0) {
        attr.watermark = 1;
        attr.wakeup_watermark = static_cast<uint32_t>(cfg.watermark);
    } else {
        attr.wakeup_events = 1;
    }
    const long fd = syscall(SYS_perf_event_open, &attr, tid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        return Error::from_errno(fmt::format("perf_event_open(uprobe{} {}+{:#x}) on tid {}",
                                             ret ? " return" : "", path, offset, tid),
                                 errno);
    return UniqueFd(static_cast<int>(fd));
}

}  // namespace pmprof::perf
