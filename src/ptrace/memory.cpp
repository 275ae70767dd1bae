// Reading a live process's memory (process_vm_readv(2), /proc/PID/mem as in proc(5)) and the
// FakeMemory used by tests.
#include "pmprof/ptrace/memory.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "pmprof/os/procfs.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/support/log.h"

namespace pmprof {

namespace {

constexpr uint64_t kPageSize = 4096;  // x86_64; a smaller step than the real page is still correct

std::string describe(const char* call, pid_t pid, uint64_t address, size_t len) {
    return fmt::format("{} pid {} at {:#x} ({} bytes)", call, pid, address, len);
}

std::string describe_proc_mem(pid_t pid, uint64_t address, size_t len) {
    return fmt::format("pread /proc/{}/mem at {:#x} ({} bytes)", pid, address, len);
}

/// One process_vm_readv call: bytes copied, or -1 with errno.
ssize_t vm_read(pid_t pid, uint64_t address, void* out, size_t len) {
    iovec local{out, len};
    // The remote iovec takes the target's address as a pointer; it is never dereferenced here.
    iovec remote{reinterpret_cast<void*>(static_cast<uintptr_t>(address)), len};
    ssize_t n;
    do {
        n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
    } while (n < 0 && errno == EINTR);
    return n;
}

/// Reads page by page from `address` and stops at the first page that cannot be read, so a
/// request that ends in an unmapped page still returns its readable prefix. process_vm_readv(2):
/// a failure inside a single iovec may fail the whole call on some kernels.
size_t vm_read_by_page(pid_t pid, uint64_t address, uint8_t* out, size_t len) {
    size_t done = 0;
    while (done < len) {
        uint64_t cur = address + done;
        size_t chunk = std::min<uint64_t>(len - done, kPageSize - cur % kPageSize);
        ssize_t n = vm_read(pid, cur, out + done, chunk);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
        if (static_cast<size_t>(n) < chunk) break;
    }
    return done;
}

/// What is known about reading one target: the method, and /proc/PID/mem once opened. Shared
/// by every reader of the process (serve's jobs run on several threads). Entries are never
/// removed, so a reference stays valid.
struct TargetAccess {
    std::atomic<MemoryMethod> method{MemoryMethod::VmReadv};
    std::atomic<bool> announced{false};
    int mem_fd = -1;  // under g_access_mu; kept open for the process's life
};

std::mutex g_access_mu;
std::map<pid_t, TargetAccess> g_access;

MemoryMethod first_method() {
    const char* env = std::getenv("PMPROF_MEMORY");
    const std::string_view v = env != nullptr ? env : "";
    if (v == "mem") return MemoryMethod::ProcMem;
    if (v == "peek") return MemoryMethod::PeekData;
    return MemoryMethod::VmReadv;
}

TargetAccess& access_of(pid_t pid) {  // g_access_mu held
    auto [it, added] = g_access.try_emplace(pid);
    if (added) it->second.method = first_method();
    return it->second;
}

/// access_of without the lock for the pid this thread read last: every stack copy inside a
/// stop window comes through here, and a mutex and a map lookup per copy were work there.
TargetAccess& target_access(pid_t pid) {
    thread_local pid_t cached_pid = 0;
    thread_local TargetAccess* cached = nullptr;
    if (cached != nullptr && cached_pid == pid) return *cached;
    std::lock_guard<std::mutex> lock(g_access_mu);
    cached = &access_of(pid);
    cached_pid = pid;
    return *cached;
}

/// Why a denial happened, as far as pmprof can tell from its own side.
std::string denial_cause(int err) {
    if (err == ENOSYS) return "the kernel lacks the call or a seccomp filter refuses it";
    auto self = read_status(::getpid());
    if (self.ok() && self->seccomp == 2)
        return "pmprof runs under a seccomp filter (Seccomp: 2 in /proc/self/status), the likely "
               "cause";
    return "an LSM or the target's credentials refuse it";
}

/// Moves `pid` from `from` to the next method (once: concurrent readers agree) and says so.
MemoryMethod demote(pid_t pid, MemoryMethod from, int err) {
    MemoryMethod to =
        from == MemoryMethod::VmReadv ? MemoryMethod::ProcMem : MemoryMethod::PeekData;
    TargetAccess& a = target_access(pid);
    MemoryMethod expected = from;
    if (!a.method.compare_exchange_strong(expected, to)) return expected;  // moved already
    a.announced = true;
    const char* what = from == MemoryMethod::VmReadv ? "process_vm_readv" : "/proc/PID/mem";
    log_info("memory of pid {}: {} denied ({}: {}); reading it with {} instead", pid, what,
             std::strerror(err), denial_cause(err), memory_method_name(to));
    return to;
}

void announce(pid_t pid, MemoryMethod m) {
    if (target_access(pid).announced.exchange(true)) return;
    log_info("memory of pid {}: read with {}", pid, memory_method_name(m));
}

/// The /proc/TID/mem descriptor of `pid` (opened through `tid`), or -1 with errno.
int mem_fd_of(pid_t pid, pid_t tid) {
    std::lock_guard<std::mutex> lock(g_access_mu);
    TargetAccess& a = access_of(pid);
    if (a.mem_fd >= 0) return a.mem_fd;
    auto fd = open_readonly("/proc/" + std::to_string(tid) + "/mem");
    if (!fd) {
        errno = fd.error().errno_value;
        return -1;
    }
    a.mem_fd = fd->release();
    return a.mem_fd;
}

bool denied(int err) { return err == EPERM || err == ENOSYS || err == EACCES; }

Result<size_t> read_vm(pid_t pid, pid_t tid, uint64_t address, void* out, size_t len) {
    ssize_t n = vm_read(tid, address, out, len);
    // A positive short count is the readable prefix (the kernel stops at the first bad page).
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0)
        return Error{describe("process_vm_readv", pid, address, len) + ": nothing read", EFAULT};
    int err = errno;
    bool multi_page = address / kPageSize != (address + len - 1) / kPageSize;
    if ((err == EFAULT || err == EIO) && multi_page) {
        size_t got = vm_read_by_page(tid, address, static_cast<uint8_t*>(out), len);
        if (got > 0) return got;
    }
    return Error::from_errno(describe("process_vm_readv", pid, address, len), err);
}

Result<size_t> read_proc_mem(pid_t pid, pid_t tid, uint64_t address, void* out, size_t len) {
    const int fd = mem_fd_of(pid, tid);
    if (fd < 0) return Error::from_errno(fmt::format("open /proc/{}/mem", tid), errno);
    // /proc/PID/mem copies page by page and returns the prefix it could read (EIO when none).
    auto* dst = static_cast<uint8_t*>(out);
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::pread(fd, dst + done, len - done, static_cast<off_t>(address + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            if (done > 0) break;
            return Error::from_errno(describe_proc_mem(pid, address, len), errno);
        }
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    if (done == 0) return Error{describe_proc_mem(pid, address, len) + ": nothing read", EIO};
    return done;
}

}  // namespace

const char* memory_method_name(MemoryMethod m) {
    switch (m) {
    case MemoryMethod::VmReadv:
        return "process_vm_readv";
    case MemoryMethod::ProcMem:
        return "/proc/PID/mem";
    case MemoryMethod::PeekData:
        return "PTRACE_PEEKDATA";
    }
    return "?";
}

int probe_vm_readv_syscall() {
    static const uint64_t probe = 0x5eed;
    uint64_t copy = 0;
    return vm_read(::getpid(), reinterpret_cast<uintptr_t>(&probe), &copy, sizeof copy) ==
                   sizeof copy
               ? 0
               : errno;
}

MemoryMethod memory_method(pid_t pid) { return target_access(pid).method.load(); }

Result<size_t> read_process_memory(pid_t pid, pid_t tid, uint64_t address, void* out, size_t len,
                                   bool stopped) {
    if (len == 0) return size_t{0};
    MemoryMethod m = memory_method(pid);
    if (m == MemoryMethod::VmReadv) {
        auto r = read_vm(pid, tid, address, out, len);
        if (r.ok() || !denied(r.error().errno_value) || r.error().errno_value == EACCES) {
            if (r.ok()) announce(pid, m);
            return r;
        }
        m = demote(pid, m, r.error().errno_value);
    }
    if (m == MemoryMethod::ProcMem) {
        auto r = read_proc_mem(pid, tid, address, out, len);
        if (r.ok() || !denied(r.error().errno_value)) {
            if (r.ok()) announce(pid, m);
            return r;
        }
        m = demote(pid, m, r.error().errno_value);
    }
    if (!stopped)
        return Error{fmt::format("reading memory of pid {}: process_vm_readv and /proc/{}/mem "
                                 "are denied, and PTRACE_PEEKDATA needs a stopped thread",
                                 pid, pid),
                     EPERM};
    const size_t n = peek_memory(tid, address, out, len);
    if (n == 0) return Error::from_errno(describe("PTRACE_PEEKDATA", pid, address, len), errno);
    announce(pid, m);
    return n;
}

Result<size_t> ProcessMemory::read(uint64_t address, void* out, size_t len) {
    if (peek_tid_ != 0) return read_process_memory(pid_, peek_tid_, address, out, len, true);
    return read_process_memory(pid_, pid_, address, out, len, false);
}

void FakeMemory::add(uint64_t address, std::vector<uint8_t> bytes) {
    ranges_[address] = std::move(bytes);
}

Result<size_t> FakeMemory::read(uint64_t address, void* out, size_t len) {
    auto* dst = static_cast<uint8_t*>(out);
    size_t done = 0;
    // Adjacent ranges read as one, like adjacent mappings of a real process.
    while (done < len) {
        uint64_t cur = address + done;
        if (cur < address) break;  // wrapped around the address space
        auto it = ranges_.upper_bound(cur);
        if (it == ranges_.begin()) break;
        --it;
        uint64_t offset = cur - it->first;
        if (offset >= it->second.size()) break;
        size_t n = std::min<uint64_t>(len - done, it->second.size() - offset);
        std::memcpy(dst + done, it->second.data() + offset, n);
        done += n;
    }
    if (done == 0 && len > 0)
        return Error{fmt::format("read fake memory at {:#x} ({} bytes): not mapped", address, len),
                     EFAULT};
    return done;
}

}  // namespace pmprof
