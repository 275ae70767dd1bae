// Where output goes (`-o PATH`), checked before any work, and the one temp-file-and-rename
// write of the code base (src/os/file.cpp): profiles, dumps and the caches all use it.
//
// A regular file (or a path that does not exist yet) is replaced atomically: a temporary file
// beside it is written whole and renamed over it, so a reader sees the old file or the new one.
// Devices, FIFOs and sockets are written through, never replaced (`-o /dev/full` fails with
// ENOSPC; a FIFO's reader gets the data). "-", "" and /dev/stdout are standard output,
// /dev/stderr and /dev/fd/N those descriptors. A symbolic link is followed: its target is
// replaced, the link stays.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "pmprof/support/error.h"

namespace pmprof {

struct OutputPath {
    enum class Kind {
        Descriptor,  // "-", "", /dev/stdout, /dev/stderr, /dev/fd/N: write to `fd`
        Stream,      // an existing device, FIFO or socket: opened and written through
        Regular,     // a regular file or a new one: replaced atomically
    };
    Kind kind = Kind::Descriptor;
    std::string user_path;  // as given: every message names this
    std::string target;     // the file written, symbolic links resolved (Stream, Regular)
    int fd = 1;             // Descriptor
    mode_t mode = 0644;     // Regular: the replaced file's permissions, or 0644 (less umask)

    bool is_stdout() const { return kind == Kind::Descriptor && fd == 1; }
    /// "stdout" or the user's path, for "wrote ..." lines.
    std::string display() const;
};

/// Resolves `path` and checks, without creating anything that outlives the call, that it can
/// be written: its directory exists and lets this process create files, an existing file is
/// writable, it is not a directory. The Error is one line naming `path` ("cannot write
/// out/x.pb.gz: directory out does not exist").
Result<OutputPath> check_output(const std::string& path);

/// Writes `data` to `out` (see the header comment); the Error names out.user_path, never a
/// temporary file. EPIPE on a descriptor or stream is not an error (`pmprof stacks | head`).
Result<void> write_output_data(const OutputPath& out, std::string_view data);

/// The one temp-file-and-rename: creates `target`.tmp.PID.TID (mode `mode`, O_EXCL), lets
/// `fill` write it (through `fd`, or by `tmp_path` for a child process), and renames it over
/// `target` only if `fill` succeeded and the file was closed without error; otherwise the
/// temporary file is removed. The Error has the errno of the step that failed and a message
/// without any path (callers name the file they were asked to write).
Result<void> replace_file_atomically(
    const std::string& target, mode_t mode,
    const std::function<Result<void>(int fd, const std::string& tmp_path)>& fill);

/// replace_file_atomically writing `data`.
Result<void> replace_file_with(const std::string& target, std::string_view data, mode_t mode);

/// write(2) until all of `data` is written, retrying EINTR; false with errno set otherwise.
bool write_all_fd(int fd, std::string_view data);

/// A file's identity as fstat(2) tells it: the same (dev, inode, size, mtime) means the same
/// contents for every cache that keys on a file (the symbol cache, the image's main files).
struct FileIdentity {
    uint64_t dev = 0;
    uint64_t ino = 0;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileIdentity&) const = default;
};

/// fstat / stat of a file; nullopt when it fails.
std::optional<FileIdentity> identity_of_fd(int fd);
std::optional<FileIdentity> identity_of_path(const std::string& path);

}  // namespace pmprof
