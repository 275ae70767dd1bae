// UniqueFd: an owned file descriptor, closed exactly once.
#pragma once

#include <string>

#include "pmprof/support/error.h"

namespace pmprof {

class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    /// Gives up ownership and returns the descriptor.
    int release();
    /// Closes the current descriptor (if any) and takes `fd`.
    void reset(int fd = -1);

  private:
    int fd_ = -1;
};

/// Opens `path` read-only with O_CLOEXEC.
Result<UniqueFd> open_readonly(const std::string& path);
/// Reads a whole (proc) file; files in /proc report size 0, so this reads until EOF.
Result<std::string> read_file(const std::string& path);
/// Re-reads a file already open (pread from offset 0): cheap for /proc files read every tick.
Result<std::string> pread_all(const UniqueFd& fd);

}  // namespace pmprof
