// Reading another process's memory: an interface so walkers and unwinders can be tested on fakes.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "pmprof/support/error.h"
#include "pmprof/support/fd.h"

namespace pmprof {

class MemoryReader {
  public:
    virtual ~MemoryReader() = default;
    /// Copies up to `len` bytes at `address` into `out`; returns how many were copied (a short
    /// read stops at the first unreadable page). 0 with an Error only when nothing was read.
    virtual Result<size_t> read(uint64_t address, void* out, size_t len) = 0;

    /// Reads exactly sizeof(T) bytes; false if any is missing.
    template <typename T> bool read_value(uint64_t address, T* out) {
        auto r = read(address, out, sizeof(T));
        return r.ok() && *r == sizeof(T);
    }
};

/// The ways to read another process's memory, fastest first. Each is tried only when the one
/// before is denied (EPERM or ENOSYS: a seccomp filter on pmprof, a kernel without
/// CONFIG_CROSS_MEMORY_ATTACH, an LSM), and the choice is made once per target process.
enum class MemoryMethod {
    VmReadv,   // process_vm_readv(2)
    ProcMem,   // pread of /proc/PID/mem
    PeekData,  // PTRACE_PEEKDATA, a word per call: only while a thread is stopped by pmprof
};
const char* memory_method_name(MemoryMethod m);
/// The method in use for `pid` now (VmReadv until a read is denied). PMPROF_MEMORY=vm|mem|peek
/// sets the first one tried (for tests).
MemoryMethod memory_method(pid_t pid);

/// Reads `len` bytes of process `pid` at `address` through its thread `tid` (by tid: a zombie
/// leader has no memory map, its live threads do), with memory_method(pid), moving to the next
/// method when this one is denied (said once at -v). `stopped`: `tid` is in a ptrace-stop of
/// the calling thread, so PTRACE_PEEKDATA may be used. Short reads as MemoryReader::read.
Result<size_t> read_process_memory(pid_t pid, pid_t tid, uint64_t address, void* out, size_t len,
                                   bool stopped);

/// Whether process_vm_readv may be called (a seccomp filter on pmprof denies it): a read of
/// pmprof's own memory. 0 when allowed, else the errno.
int probe_vm_readv_syscall();

/// A live process, read with read_process_memory.
class ProcessMemory final : public MemoryReader {
  public:
    explicit ProcessMemory(pid_t pid) : pid_(pid) {}
    Result<size_t> read(uint64_t address, void* out, size_t len) override;
    /// `tid` is stopped by the calling thread (a heap walk inside with_all_stopped) until this
    /// reader is discarded: PTRACE_PEEKDATA becomes the last resort.
    void allow_peek(pid_t tid) { peek_tid_ = tid; }

  private:
    pid_t pid_;
    pid_t peek_tid_ = 0;
};

/// Memory assembled from byte ranges, for tests.
class FakeMemory final : public MemoryReader {
  public:
    /// Adds a readable range at `address` (ranges must not overlap).
    void add(uint64_t address, std::vector<uint8_t> bytes);
    Result<size_t> read(uint64_t address, void* out, size_t len) override;

  private:
    std::map<uint64_t, std::vector<uint8_t>> ranges_;
};

}  // namespace pmprof
