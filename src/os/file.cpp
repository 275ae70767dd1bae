// Output paths: resolved and checked before any work, written atomically or through
// (include/pmprof/os/file.h), and the one temp-file-and-rename of the code base.
#include "pmprof/os/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include <fmt/format.h>

#include "pmprof/support/fd.h"

namespace pmprof {
namespace {

std::string dir_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

/// "/dev/fd/N" or "/proc/self/fd/N": N, else -1.
int descriptor_path(const std::string& path) {
    for (const char* prefix : {"/dev/fd/", "/proc/self/fd/"}) {
        const std::string_view p = prefix;
        if (!path.starts_with(p) || path.size() == p.size() || path.size() > p.size() + 6) continue;
        const std::string digits = path.substr(p.size());
        if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
        return std::stoi(digits);
    }
    return -1;
}

/// Follows the last component of `path` while it is a symbolic link (the directories on the
/// way are resolved by the kernel at every open and rename). A dangling link gives the path it
/// points to, which is then created.
Result<std::string> follow_links(const std::string& path) {
    std::string cur = path;
    for (int hops = 0; hops < 40; ++hops) {
        // /proc/self/fd/N (where /dev/stdout leads) is a descriptor, not a path to follow.
        if (descriptor_path(cur) >= 0) return cur;
        struct stat st {};
        if (::lstat(cur.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
        char buf[PATH_MAX];
        const ssize_t n = ::readlink(cur.c_str(), buf, sizeof buf - 1);
        if (n < 0) return Error::from_errno("readlink", errno);
        std::string link(buf, static_cast<size_t>(n));
        cur = link.starts_with('/') ? link : dir_of(cur) + "/" + link;
    }
    return Error::from_errno("following symbolic links", ELOOP);
}

/// Whether this process may create a file in `dir`: an unnamed O_TMPFILE there (nothing is
/// left behind), or faccessat on a file system without O_TMPFILE. 0 or the errno.
int probe_directory(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ::close(fd);
        return 0;
    }
    const int err = errno;
    if (err != EOPNOTSUPP && err != EISDIR && err != EINVAL) return err;
    return ::faccessat(AT_FDCWD, dir.c_str(), W_OK | X_OK, AT_EACCESS) == 0 ? 0 : errno;
}

FileIdentity identity_of(const struct stat& st) {
    FileIdentity id;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.size = static_cast<uint64_t>(st.st_size);
    id.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    return id;
}

}  // namespace

std::string OutputPath::display() const {
    return is_stdout() && (user_path.empty() || user_path == "-") ? "stdout" : user_path;
}

Result<OutputPath> check_output(const std::string& path) {
    OutputPath out;
    out.user_path = path;
    const auto fail = [&](const std::string& why, int err) {
        return Error{fmt::format("cannot write {}: {}", path, why), err};
    };
    const auto fail_errno = [&](int err) { return fail(std::strerror(err), err); };
    if (path.empty() || path == "-" || path == "/dev/stdout") return out;
    if (path == "/dev/stderr") {
        out.fd = 2;
        return out;
    }
    auto target = follow_links(path);
    if (!target.ok()) return fail_errno(target.error().errno_value);
    if (const int fd = descriptor_path(*target); fd >= 0) {
        const int flags = ::fcntl(fd, F_GETFL);
        if (flags < 0) return fail_errno(errno);
        if ((flags & O_ACCMODE) == O_RDONLY) return fail("the descriptor is read-only", EBADF);
        out.fd = fd;
        return out;
    }
    out.target = *target;
    const std::string dir = dir_of(out.target);
    struct stat st {};
    if (::stat(out.target.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) return fail("it is a directory", EISDIR);
        if (::faccessat(AT_FDCWD, out.target.c_str(), W_OK, AT_EACCESS) != 0)
            return fail_errno(errno);
        if (!S_ISREG(st.st_mode)) {
            out.kind = OutputPath::Kind::Stream;
            return out;
        }
        out.kind = OutputPath::Kind::Regular;
        out.mode = st.st_mode & 07777;
    } else if (errno == ENOENT) {
        struct stat dst {};
        if (::stat(dir.c_str(), &dst) != 0)
            return errno == ENOENT ? fail(fmt::format("directory {} does not exist", dir), ENOENT)
                                   : fail_errno(errno);
        if (!S_ISDIR(dst.st_mode)) return fail(fmt::format("{} is not a directory", dir), ENOTDIR);
        out.kind = OutputPath::Kind::Regular;
    } else {
        return fail_errno(errno);
    }
    // The temporary file is created beside the target, so the directory must allow it.
    if (const int err = probe_directory(dir); err != 0)
        return fail(fmt::format("cannot create files in {}: {}", dir, std::strerror(err)), err);
    return out;
}

bool write_all_fd(int fd, std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) {
            errno = EIO;
            return false;
        }
        done += static_cast<size_t>(n);
    }
    return true;
}

Result<void> replace_file_atomically(
    const std::string& target, mode_t mode,
    const std::function<Result<void>(int fd, const std::string& tmp_path)>& fill) {
    // Unique per process and thread: concurrent writers (other pmprof processes, serve's jobs)
    // never share a temporary file.
    const std::string tmp = fmt::format("{}.tmp.{}.{}", target, ::getpid(), ::gettid());
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    if (!fd.valid()) return Error::from_errno("creating a temporary file", errno);
    Result<void> filled = fill(fd.get(), tmp);
    if (!filled.ok()) {
        ::unlink(tmp.c_str());
        return filled;
    }
    // close(2) reports the deferred write errors of some file systems (NFS, quota).
    if (::close(fd.release()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return Error::from_errno("closing", err);
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return Error::from_errno("renaming", err);
    }
    return {};
}

Result<void> replace_file_with(const std::string& target, std::string_view data, mode_t mode) {
    return replace_file_atomically(target, mode, [&](int fd, const std::string&) -> Result<void> {
        if (!write_all_fd(fd, data)) return Error::from_errno("write", errno);
        return {};
    });
}

Result<void> write_output_data(const OutputPath& out, std::string_view data) {
    const auto failed = [&](int err) {
        return Error::from_errno("writing " +
                                     (out.kind == OutputPath::Kind::Descriptor && out.fd == 1 &&
                                              (out.user_path.empty() || out.user_path == "-")
                                          ? std::string("stdout")
                                          : out.user_path),
                                 err);
    };
    switch (out.kind) {
    case OutputPath::Kind::Descriptor:
        if (!write_all_fd(out.fd, data) && errno != EPIPE) return failed(errno);
        return {};
    case OutputPath::Kind::Stream: {
        // A FIFO blocks here until its reader opens it, as a shell redirection would.
        UniqueFd fd(::open(out.target.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY));
        if (!fd.valid()) return Error::from_errno("cannot write " + out.user_path, errno);
        if (!write_all_fd(fd.get(), data) && errno != EPIPE) return failed(errno);
        if (::close(fd.release()) != 0 && errno != EINTR) return failed(errno);
        return {};
    }
    case OutputPath::Kind::Regular: {
        auto r = replace_file_atomically(out.target, out.mode,
                                         [&](int fd, const std::string&) -> Result<void> {
                                             // The replaced file's permissions, whatever the umask;
                                             // a new one gets 0644 less the umask, as before.
                                             if (out.mode != 0644 && ::fchmod(fd, out.mode) != 0)
                                                 return Error::from_errno("fchmod", errno);
                                             if (!write_all_fd(fd, data))
                                                 return Error::from_errno("write", errno);
                                             return {};
                                         });
        if (!r.ok()) return failed(r.error().errno_value);
        return {};
    }
    }
    return {};
}

std::optional<FileIdentity> identity_of_fd(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return std::nullopt;
    return identity_of(st);
}

std::optional<FileIdentity> identity_of_path(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return identity_of(st);
}

}  // namespace pmprof
