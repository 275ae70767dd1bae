// UniqueFd and whole-file reads for /proc.
#include "pmprof/support/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace pmprof {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
}

int UniqueFd::release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
}

void UniqueFd::reset(int fd) {
    if (fd_ >= 0 && fd_ != fd) {
        // close(2): do not retry on EINTR on Linux, the descriptor is released regardless.
        ::close(fd_);
    }
    fd_ = fd;
}

Result<UniqueFd> open_readonly(const std::string& path) {
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return Error::from_errno("open " + path, errno);
    return UniqueFd(fd);
}

namespace {

// Reads from `offset` until EOF; /proc files report st_size 0, so the size is never trusted.
// `what` names the call and the object for the error message ("read /proc/42/stat"); it is
// only called on failure, as the sampler reads /proc files thousands of times a second.
// With pread (only ever used on /proc files), a short read ends it: the kernel's seq_file
// fills the buffer until the records run out, so fewer bytes than asked means the end, and
// the extra pread that would return 0 is saved (it doubled the sampler's /proc reads).
template <typename What> Result<std::string> read_to_eof(int fd, bool use_pread, const What& what) {
    std::string out;
    char buf[4096];
    off_t offset = 0;
    for (;;) {
        ssize_t n = use_pread ? ::pread(fd, buf, sizeof buf, offset) : ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return Error::from_errno(what(), errno);
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
        offset += n;
        if (use_pread && static_cast<size_t>(n) < sizeof buf) break;
    }
    return out;
}

}  // namespace

Result<std::string> read_file(const std::string& path) {
    auto fd = open_readonly(path);
    if (!fd) return fd.error();
    return read_to_eof(fd->get(), false, [&] { return "read " + path; });
}

Result<std::string> pread_all(const UniqueFd& fd) {
    if (!fd.valid()) return Error{"pread: no open file", EBADF};
    return read_to_eof(fd.get(), true, [&] { return "pread fd " + std::to_string(fd.get()); });
}

}  // namespace pmprof
