// Helpers shared by the subcommands: strict pid and duration parsing, the exit-code help text.
#include "cli.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "pmprof/error.h"

namespace pmprof {

const char* const kExitCodesHelp =
    "Exit codes: 0 complete, 1 output written but partial, 2 fatal error, 3 (stacks) a deadlock "
    "was found, 64 usage error.";

pid_t parse_pid(const std::string& text) {
    if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos)
        throw FatalError("'" + text + "' is not a process id", {}, kExitUsage);
    long v = std::strtol(text.c_str(), nullptr, 10);
    if (v <= 0) throw FatalError("'" + text + "' is not a process id", {}, kExitUsage);
    return static_cast<pid_t>(v);
}

int64_t parse_duration_ns(const std::string& text) {
    struct Unit {
        const char* suffix;
        double ns;
    };
    // Longest suffixes first so "ms" is not read as "m" + garbage.
    static constexpr Unit kUnits[] = {{"ms", 1e6}, {"us", 1e3}, {"ns", 1.0}, {"s", 1e9},
                                      {"m", 60e9}, {"h", 3600e9}};
    std::string number = text;
    double scale = 1e9;  // plain numbers are seconds
    for (const Unit& u : kUnits) {
        std::string suffix = u.suffix;
        if (text.size() > suffix.size() && text.ends_with(suffix)) {
            number = text.substr(0, text.size() - suffix.size());
            scale = u.ns;
            break;
        }
    }
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(number.c_str(), &end);
    if (number.empty() || end != number.c_str() + number.size() || errno != 0 ||
        !std::isfinite(v) || v < 0 || v * scale > 1e18)
        throw FatalError("'" + text + "' is not a duration (examples: 10s, 500ms, 2m, 1.5)", {},
                         kExitUsage);
    return static_cast<int64_t>(std::llround(v * scale));
}

}  // namespace pmprof

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

namespace pmprof {

void write_output(const std::string& path, const std::string& data, bool binary) {
    if (path.empty() || path == "-") {
        if (binary && isatty(STDOUT_FILENO))
            throw FatalError("refusing to write a binary profile to a terminal", "use -o FILE", kExitUsage);
        size_t done = 0;
        while (done < data.size()) {
            ssize_t n = ::write(STDOUT_FILENO, data.data() + done, data.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                if (errno == EPIPE) return;  // `pmprof stacks PID | head` is fine
                throw FatalError(std::string("writing stdout: ") + std::strerror(errno));
            }
            done += static_cast<size_t>(n);
        }
        return;
    }
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw FatalError("cannot create " + path + ": " + std::strerror(errno));
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            throw FatalError("writing " + path + ": " + std::strerror(err));
        }
        done += static_cast<size_t>(n);
    }
    if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw FatalError("writing " + path + ": " + std::strerror(err));
    }
}

}  // namespace pmprof
