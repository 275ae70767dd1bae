// perf_event_open, the per-cpu ring buffers and their records (include/pmprof/os/perf_events.h).
// The record layouts are the kernel's (include/uapi/linux/perf_event.h, "struct perf_event_header"
// and the PERF_RECORD_SAMPLE field order), as tools/perf/util/evsel.c parses them.
#include "pmprof/os/perf_events.h"

#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>

#include "pmprof/os/procfs.h"

namespace pmprof::perf {
namespace {

constexpr uint64_t kContextMax = static_cast<uint64_t>(-4095);  // PERF_CONTEXT_MAX

/// perf_regs.h order (ax bx cx dx si di bp sp ip, r8-r15) to DWARF numbering
/// (include/pmprof/support/types.h).
constexpr int kDwarfOfPerf[] = {0, 3, 2, 1, 4, 5, 6, 7, 16, 8, 9, 10, 11, 12, 13, 14, 15};

struct Reader {
    const uint8_t* p;
    size_t n;
    size_t off = 0;
    bool get(void* out, size_t len) {
        if (len > n - off) return false;
        std::memcpy(out, p + off, len);
        off += len;
        return true;
    }
    bool u64(uint64_t* v) { return get(v, 8); }
};

std::string read_small_file(const char* path) {
    auto text = read_file(path);
    return text.ok() ? *text : std::string();
}

}  // namespace

uint64_t sample_type_of(const EventConfig& cfg) {
    uint64_t t = PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_PERIOD | PERF_SAMPLE_REGS_USER |
                 PERF_SAMPLE_STACK_USER;
    if (cfg.kernel_callchain) t |= PERF_SAMPLE_CALLCHAIN;
    if (cfg.sample_id) t |= PERF_SAMPLE_ID;
    return t;
}

Result<UniqueFd> open_task_clock(pid_t tid, int cpu, const EventConfig& cfg) {
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.freq = 1;  // task-clock: the kernel makes it a fixed period of 1e9/freq ns
    attr.sample_freq = static_cast<uint64_t>(std::max(1.0, cfg.rate_hz));
    attr.sample_type = sample_type_of(cfg);
    attr.sample_regs_user = kRegsMask;
    attr.sample_stack_user = cfg.stack_bytes;
    attr.exclude_kernel = cfg.kernel_time ? 0 : 1;
    attr.exclude_hv = 1;
    attr.exclude_callchain_user = 1;  // the user part comes from our own unwind of the copy
    attr.inherit = cfg.inherit ? 1 : 0;
    attr.comm = cfg.side_band ? 1 : 0;
    attr.comm_exec = cfg.side_band ? 1 : 0;
    attr.task = cfg.side_band ? 1 : 0;
    attr.sample_id_all = 1;
    if (cfg.watermark > 0) {
        attr.watermark = 1;
        attr.wakeup_watermark = static_cast<uint32_t>(cfg.watermark);
    } else {
        attr.wakeup_events = 1;
    }
    const long fd = syscall(SYS_perf_event_open, &attr, tid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        return Error::from_errno("perf_event_open(task-clock) on tid " + std::to_string(tid),
                                 errno);
    return UniqueFd(static_cast<int>(fd));
}

Result<void> open_for_every_thread(pid_t pid, const std::set<pid_t>& opened,
                                   const std::function<Result<void>(pid_t tid)>& open_thread) {
    for (int pass = 0; pass < 100; ++pass) {
        auto tids = list_tasks(pid);
        if (!tids.ok()) return tids.error();
        bool any_new = false;
        for (pid_t tid : *tids) {
            if (opened.contains(tid)) continue;
            any_new = true;
            if (auto r = open_thread(tid); !r.ok()) {
                if (r.error().errno_value == ESRCH) continue;  // exited meanwhile
                return r.error();
            }
        }
        if (!any_new) break;
    }
    return {};
}

std::vector<int> online_cpus() {
    std::vector<int> cpus;
    const std::string text = read_small_file("/sys/devices/system/cpu/online");
    size_t i = 0;
    while (i < text.size()) {
        char* end = nullptr;
        const long lo = std::strtol(text.c_str() + i, &end, 10);
        if (end == text.c_str() + i) break;
        long hi = lo;
        i = static_cast<size_t>(end - text.c_str());
        if (i < text.size() && text[i] == '-') {
            hi = std::strtol(text.c_str() + i + 1, &end, 10);
            i = static_cast<size_t>(end - text.c_str());
        }
        for (long c = lo; c <= hi && c < 4096; ++c) cpus.push_back(static_cast<int>(c));
        if (i < text.size() && text[i] == ',')
            ++i;
        else
            break;
    }
    if (cpus.empty()) {
        const long n = sysconf(_SC_NPROCESSORS_ONLN);
        for (long c = 0; c < std::max(1L, n); ++c) cpus.push_back(static_cast<int>(c));
    }
    return cpus;
}

int read_paranoid() {
    const std::string t = read_small_file("/proc/sys/kernel/perf_event_paranoid");
    return t.empty() ? 2 : std::atoi(t.c_str());
}

int read_max_sample_rate() {
    const std::string t = read_small_file("/proc/sys/kernel/perf_event_max_sample_rate");
    return t.empty() ? 0 : std::atoi(t.c_str());
}

bool has_capability(int cap) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capget, &hdr, data) != 0) return false;
    return (data[cap / 32].effective >> (cap % 32)) & 1u;
}

Ring::Ring(Ring&& o) noexcept
    : fd_(std::move(o.fd_)), base_(o.base_), map_size_(o.map_size_), data_size_(o.data_size_) {
    o.base_ = nullptr;
    o.map_size_ = 0;
}

Ring::~Ring() {
    if (base_ != nullptr) munmap(base_, map_size_);
}

Result<Ring> Ring::map(UniqueFd fd, size_t data_bytes) {
    const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_t data = std::max(std::bit_ceil(data_bytes), 16 * page);
    while (true) {
        void* p = mmap(nullptr, data + page, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
        if (p != MAP_FAILED) {
            Ring r;
            r.fd_ = std::move(fd);
            r.base_ = p;
            r.map_size_ = data + page;
            r.data_size_ = data;
            return r;
        }
        const int err = errno;
        if ((err != EPERM && err != ENOMEM) || data <= 16 * page)
            return Error::from_errno("mmap of the perf ring buffer", err);
        data /= 2;
    }
}

bool parse_sample(const uint8_t* p, size_t n, const EventConfig& cfg, Sample* s,
                  ThreadCapture* cap) {
    Reader r{p, n};
    uint32_t ids[2];
    if (!r.get(ids, sizeof ids) || !r.u64(&s->time)) return false;
    if (cfg.sample_id && !r.u64(&s->id)) return false;
    if (!r.u64(&s->period)) return false;
    s->pid = static_cast<pid_t>(ids[0]);
    s->tid = static_cast<pid_t>(ids[1]);
    s->kernel_ips.clear();
    if (cfg.kernel_callchain) {
        uint64_t nr = 0;
        if (!r.u64(&nr) || nr > (n - r.off) / 8) return false;
        for (uint64_t i = 0; i < nr; ++i) {
            uint64_t ip = 0;
            r.u64(&ip);
            if (ip < kContextMax) s->kernel_ips.push_back(ip);  // context markers left out
        }
    }
    uint64_t abi = 0;
    if (!r.u64(&abi)) return false;
    cap->tid = s->tid;
    cap->ok = false;
    cap->regs = Registers{};
    s->user_regs = abi != PERF_SAMPLE_REGS_ABI_NONE;
    if (s->user_regs) {
        for (int i = 0; i < std::popcount(kRegsMask); ++i) {
            uint64_t v = 0;
            if (!r.u64(&v)) return false;
            cap->regs.dwarf[static_cast<size_t>(kDwarfOfPerf[i])] = v;
        }
    }
    uint64_t size = 0;
    if (!r.u64(&size) || size > n - r.off) return false;
    const uint8_t* data = p + r.off;
    r.off += size;
    uint64_t dyn = 0;
    if (size > 0 && !r.u64(&dyn)) return false;
    dyn = std::min(dyn, size);
    cap->stack.base = cap->regs.sp();
    if (cfg.lazy_stack) {
        s->stack_data = data;
        s->stack_size = dyn;
        cap->stack.bytes.clear();
    } else {
        cap->stack.bytes.assign(data, data + dyn);
    }
    cap->ok = s->user_regs;
    return true;
}

size_t Ring::drain(const EventConfig& cfg, const RecordSink& sink) {
    auto* meta = static_cast<perf_event_mmap_page*>(base_);
    const uint8_t* data = static_cast<const uint8_t*>(base_) + (map_size_ - data_size_);
    const uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
    uint64_t tail = meta->data_tail;
    size_t records = 0;
    while (tail < head) {
        const size_t off = tail % data_size_;
        perf_event_header h;
        if (off + sizeof h <= data_size_) {
            std::memcpy(&h, data + off, sizeof h);
        } else {
            const size_t first = data_size_ - off;
            std::memcpy(&h, data + off, first);
            std::memcpy(reinterpret_cast<uint8_t*>(&h) + first, data, sizeof h - first);
        }
        if (h.size < sizeof h || tail + h.size > head) break;
        const uint8_t* rec = data + off;
        if (off + h.size > data_size_) {  // wraps: copy it out whole
            wrap_.resize(h.size);
            const size_t first = data_size_ - off;
            std::memcpy(wrap_.data(), data + off, first);
            std::memcpy(wrap_.data() + first, data, h.size - first);
            rec = wrap_.data();
        }
        const uint8_t* body = rec + sizeof h;
        const size_t len = h.size - sizeof h;
        switch (h.type) {
        case PERF_RECORD_SAMPLE:
            if (sink.sample && parse_sample(body, len, cfg, &sample_, &cap_))
                sink.sample(sample_, cap_);
            break;
        case PERF_RECORD_COMM:
            if (sink.comm && len > 8) {
                uint32_t ids[2];
                std::memcpy(ids, body, sizeof ids);
                const char* name = reinterpret_cast<const char*>(body + 8);
                sink.comm(static_cast<pid_t>(ids[0]), static_cast<pid_t>(ids[1]),
                          std::string(name, strnlen(name, len - 8)),
                          (h.misc & PERF_RECORD_MISC_COMM_EXEC) != 0);
            }
            break;
        case PERF_RECORD_LOST:
            if (sink.lost && len >= 16) {
                uint64_t lost = 0;
                std::memcpy(&lost, body + 8, 8);
                sink.lost(lost);
            }
            break;
        case PERF_RECORD_LOST_SAMPLES:
            if (sink.lost && len >= 8) {
                uint64_t lost = 0;
                std::memcpy(&lost, body, 8);
                sink.lost(lost);
            }
            break;
        case PERF_RECORD_THROTTLE:
            if (sink.throttle) sink.throttle();
            break;
        default:
            break;  // FORK, EXIT, UNTHROTTLE: threads are named by comm and by /proc
        }
        tail += h.size;
        ++records;
    }
    __atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
    return records;
}

}  // namespace pmprof::perf
