// Reading another process's memory: an interface so walkers and unwinders can be tested on fakes.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "pmprof/error.h"
#include "pmprof/fd.h"

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

/// A live process: process_vm_readv, falling back to /proc/PID/mem when that is refused.
class ProcessMemory final : public MemoryReader {
  public:
    explicit ProcessMemory(pid_t pid) : pid_(pid) {}
    Result<size_t> read(uint64_t address, void* out, size_t len) override;

  private:
    Result<size_t> read_proc_mem(uint64_t address, void* out, size_t len);
    pid_t pid_;
    UniqueFd mem_fd_;
    bool vm_readv_works_ = true;
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
