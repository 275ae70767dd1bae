// Reading a live process's memory (process_vm_readv(2), /proc/PID/mem as in proc(5)) and the
// FakeMemory used by tests.
#include "pmprof/memory.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace pmprof {

namespace {

constexpr uint64_t kPageSize = 4096; // x86_64; a smaller step than the real page is still correct

std::string describe(const char *call, pid_t pid, uint64_t address, size_t len) {
    return fmt::format("{} pid {} at {:#x} ({} bytes)", call, pid, address, len);
}

std::string describe_proc_mem(pid_t pid, uint64_t address, size_t len) {
    return fmt::format("pread /proc/{}/mem at {:#x} ({} bytes)", pid, address, len);
}

/// One process_vm_readv call: bytes copied, or -1 with errno.
ssize_t vm_read(pid_t pid, uint64_t address, void *out, size_t len) {
    iovec local{out, len};
    // The remote iovec takes the target's address as a pointer; it is never dereferenced here.
    iovec remote{reinterpret_cast<void *>(static_cast<uintptr_t>(address)), len};
    ssize_t n;
    do {
        n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
    } while (n < 0 && errno == EINTR);
    return n;
}

/// Reads page by page from `address` and stops at the first page that cannot be read, so a
/// request that ends in an unmapped page still returns its readable prefix. process_vm_readv(2):
/// a failure inside a single iovec may fail the whole call on some kernels.
size_t vm_read_by_page(pid_t pid, uint64_t address, uint8_t *out, size_t len) {
    size_t done = 0;
    while (done < len) {
        uint64_t cur = address + done;
        size_t chunk = std::min<uint64_t>(len - done, kPageSize - cur % kPageSize);
        ssize_t n = vm_read(pid, cur, out + done, chunk);
        if (n <= 0)
            break;
        done += static_cast<size_t>(n);
        if (static_cast<size_t>(n) < chunk)
            break;
    }
    return done;
}

} // namespace

Result<size_t> ProcessMemory::read(uint64_t address, void *out, size_t len) {
    if (len == 0)
        return size_t{0};
    if (!vm_readv_works_)
        return read_proc_mem(address, out, len);
    ssize_t n = vm_read(pid_, address, out, len);
    // A positive short count is the readable prefix (the kernel stops at the first bad page).
    if (n > 0)
        return static_cast<size_t>(n);
    if (n == 0)
        return Error{describe("process_vm_readv", pid_, address, len) + ": nothing read", EFAULT};
    int err = errno;
    if (err == ENOSYS || err == EPERM) {
        // Kernels without CONFIG_CROSS_MEMORY_ATTACH, or seccomp/LSM refusing the call: the
        // /proc/PID/mem path is governed by the same ptrace access check but may be allowed.
        vm_readv_works_ = false;
        return read_proc_mem(address, out, len);
    }
    bool multi_page = address / kPageSize != (address + len - 1) / kPageSize;
    if ((err == EFAULT || err == EIO) && multi_page) {
        size_t got = vm_read_by_page(pid_, address, static_cast<uint8_t *>(out), len);
        if (got > 0)
            return got;
    }
    return Error::from_errno(describe("process_vm_readv", pid_, address, len), err);
}

Result<size_t> ProcessMemory::read_proc_mem(uint64_t address, void *out, size_t len) {
    if (!mem_fd_.valid()) {
        auto fd = open_readonly("/proc/" + std::to_string(pid_) + "/mem");
        if (!fd)
            return fd.error();
        mem_fd_ = std::move(*fd);
    }
    // /proc/PID/mem copies page by page and returns the prefix it could read (EIO when none).
    auto *dst = static_cast<uint8_t *>(out);
    size_t done = 0;
    while (done < len) {
        ssize_t n =
            ::pread(mem_fd_.get(), dst + done, len - done, static_cast<off_t>(address + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (done > 0)
                break;
            return Error::from_errno(describe_proc_mem(pid_, address, len), errno);
        }
        if (n == 0)
            break;
        done += static_cast<size_t>(n);
    }
    if (done == 0)
        return Error{describe_proc_mem(pid_, address, len) + ": nothing read", EIO};
    return done;
}

void FakeMemory::add(uint64_t address, std::vector<uint8_t> bytes) {
    ranges_[address] = std::move(bytes);
}

Result<size_t> FakeMemory::read(uint64_t address, void *out, size_t len) {
    auto *dst = static_cast<uint8_t *>(out);
    size_t done = 0;
    // Adjacent ranges read as one, like adjacent mappings of a real process.
    while (done < len) {
        uint64_t cur = address + done;
        if (cur < address)
            break; // wrapped around the address space
        auto it = ranges_.upper_bound(cur);
        if (it == ranges_.begin())
            break;
        --it;
        uint64_t offset = cur - it->first;
        if (offset >= it->second.size())
            break;
        size_t n = std::min<uint64_t>(len - done, it->second.size() - offset);
        std::memcpy(dst + done, it->second.data() + offset, n);
        done += n;
    }
    if (done == 0 && len > 0)
        return Error{fmt::format("read fake memory at {:#x} ({} bytes): not mapped", address, len),
                     EFAULT};
    return done;
}

} // namespace pmprof
