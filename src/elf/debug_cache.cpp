// Persistent cache of decompressed separate debug files (see include/pmprof/elf/debug_cache.h for
// why).
//
// The copy is made by `eu-elfcompress -t none` (elfutils, already a dependency): it rewrites
// every SHF_COMPRESSED section uncompressed and keeps everything else, including the build-id
// note, so the copy is checked the same way as the original. It runs synchronously after the
// snapshot (the target is running again): ~70 ms for libc6-dbg's 4 MiB (10 MiB inflated) file.
#include "pmprof/elf/debug_cache.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include "pmprof/elf/elf_file.h"
#include "pmprof/os/file.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

// Bound on one inflated file: bigger ones are rare (libLLVM) and too slow to copy inline.
constexpr uint64_t kMaxInflatedBytes = uint64_t{2} << 30;

struct DebugFileInfo {
    std::string build_id;
    bool compressed = false;
    uint64_t inflated_bytes = 0;
};

/// Build id, whether any section is SHF_COMPRESSED, and the size once inflated.
std::optional<DebugFileInfo> inspect(int fd) {
    auto elf = ElfFile::borrow(fd);
    if (!elf) return std::nullopt;
    DebugFileInfo info;
    info.build_id = elf->build_id();
    for (const ElfSection& sec : elf->sections()) {
        if (!sec.has_bits()) continue;
        info.compressed = info.compressed || sec.compressed;
        info.inflated_bytes += sec.inflated_size;
    }
    return info;
}

/// Runs `eu-elfcompress -t none -q -o out in`, stdio on /dev/null; true when it exited 0.
bool run_elfcompress(const std::string& in, const std::string& out) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    std::string args[] = {"eu-elfcompress", "-t", "none", "-q", "-o", out, in};
    char* argv[] = {args[0].data(), args[1].data(), args[2].data(), args[3].data(),
                    args[4].data(), args[5].data(), args[6].data(), nullptr};
    // pmprof blocks SIGCHLD (src/cli/main.cpp) and ignores SIGPIPE; the tool gets the defaults.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t child = -1;
    int rc = posix_spawnp(&child, argv[0], &actions, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        log_debug("debug cache: posix_spawnp eu-elfcompress: {}", std::strerror(rc));
        return false;
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) return false;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_debug("debug cache: eu-elfcompress {} failed (status {:#x})", in, status);
        return false;
    }
    return true;
}

/// The cached copy at `path` if it is an uncompressed file with build id `want`.
UniqueFd open_verified(const std::string& path, const std::string& want) {
    auto fd = open_readonly(path);
    if (!fd.ok()) return {};
    auto info = inspect(fd->get());
    if (!info || info->compressed || info->build_id != want) {
        log_debug("debug cache: {} does not match build id {}; ignoring it", path, want);
        return {};
    }
    return std::move(*fd);
}

std::string entry_path(const std::string& cache_dir, const std::string& build_id) {
    return cache_dir + "/debug/" + build_id + ".debug";
}

/// A path the eu-elfcompress child can open: "/proc/self/fd/N/..." (the target's root, held
/// open by ProcessImage, src/elf/image.cpp) would name the child's own fds, so name ours instead.
std::string path_for_child(const std::string& path) {
    static constexpr std::string_view kSelfFd = "/proc/self/";
    if (path.compare(0, kSelfFd.size(), kSelfFd) != 0) return path;
    return fmt::format("/proc/{}/{}", ::getpid(), path.substr(kSelfFd.size()));
}

}  // namespace

/// mkdir -p with mode 0700 for every directory it creates (the cache holds copies of debug
/// files that may be readable only by their owner).
bool make_cache_dirs(const std::string& path) {
    for (size_t pos = 1; pos <= path.size(); ++pos) {
        if (pos != path.size() && path[pos] != '/') continue;
        std::string prefix = path.substr(0, pos);
        if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
            log_debug("debug cache: mkdir {}: {}", prefix, std::strerror(errno));
            return false;
        }
    }
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// The build id names the entry, so it must look like one: hex, of a sane length.
bool valid_build_id(const std::string& id) {
    return id.size() >= 16 && id.size() <= 128 &&
           id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::string debug_cache_dir() {
    auto env = [](const char* name) -> std::string {
        const char* v = std::getenv(name);
        return v != nullptr ? v : "";
    };
    std::string dir = env("PMPROF_CACHE_DIR");
    if (dir == "off") return {};
    if (!dir.empty()) return dir;
    if (std::string xdg = env("XDG_CACHE_HOME"); !xdg.empty() && xdg[0] == '/')
        return xdg + "/pmprof";
    if (std::string home = env("HOME"); !home.empty() && home[0] == '/')
        return home + "/.cache/pmprof";
    return {};
}

UniqueFd open_cached_debug(const std::string& build_id, const std::string& cache_dir,
                           std::string* cached_path) {
    if (cache_dir.empty() || !valid_build_id(build_id)) return {};
    const std::string path = entry_path(cache_dir, build_id);
    UniqueFd fd = open_verified(path, build_id);
    if (fd.valid()) *cached_path = path;
    return fd;
}

bool add_cached_debug(int debug_fd, const std::string& debug_path, const std::string& cache_dir) {
    if (cache_dir.empty()) return false;
    auto info = inspect(debug_fd);
    if (!info || !info->compressed) return false;
    if (!valid_build_id(info->build_id)) {
        log_debug("debug cache: {}: no usable build id", debug_path);
        return false;
    }
    if (info->inflated_bytes > kMaxInflatedBytes) {
        log_debug("debug cache: {}: {} bytes inflated, over the bound", debug_path,
                  info->inflated_bytes);
        return false;
    }
    if (!make_cache_dirs(cache_dir + "/debug")) return false;
    const std::string path = entry_path(cache_dir, info->build_id);
    // Temp file in the same directory, then rename: readers see a whole file or none.
    // eu-elfcompress writes the temporary file by its name (and renames its own over it).
    auto written =
        replace_file_atomically(path, 0644, [&](int, const std::string& tmp) -> Result<void> {
            if (!run_elfcompress(path_for_child(debug_path), tmp))
                return Error{"eu-elfcompress failed", 0};
            return {};
        });
    if (!written.ok()) {
        log_debug("debug cache: writing {}: {}", path, written.error().message);
        return false;
    }
    log_debug("debug cache: wrote {} for {}", path, debug_path);
    return true;
}

}  // namespace pmprof
