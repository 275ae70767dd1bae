// ProcessImage: the modules (ELF files) mapped into a process, as libdwfl sees them, for one
// /proc/PID/maps snapshot. Shared by the unwinder (CFI) and the symbolizer (symbols, lines).
// Binaries are opened through /proc/PID/map_files/<lo>-<hi> first, so deleted, replaced and
// other-mount-namespace files work; separate debug files come from /usr/lib/debug/.build-id,
// /proc/PID/root/usr/lib/debug, or debuginfod when DEBUGINFOD_URLS is set. Once opened, a module
// keeps working after the target exits.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "pmprof/support/error.h"
#include "pmprof/support/types.h"

namespace pmprof {

class ProcessImage {
  public:
    /// Reports every file-backed executable mapping of `maps` (and the vDSO) to libdwfl.
    static Result<std::unique_ptr<ProcessImage>> open(pid_t pid, std::vector<MemoryMap> maps);
    ~ProcessImage();
    ProcessImage(const ProcessImage&) = delete;
    ProcessImage& operator=(const ProcessImage&) = delete;

    pid_t pid() const;
    const std::vector<MemoryMap>& maps() const;
    /// The mapping that contains `pc`, or nullptr.
    const MemoryMap* find_map(uint64_t pc) const;

    struct Impl;  // libdwfl lives here (include/pmprof/elf/image_impl.h); not part of the public
                  // API
    Impl& impl();

  private:
    explicit ProcessImage(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace pmprof
