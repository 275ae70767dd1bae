// stderr diagnostics: one write(2) per line so lines from several threads do not interleave.
#include "pmprof/support/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

namespace pmprof {

namespace {
// Set once from main before threads start, read everywhere: relaxed is enough.
std::atomic<LogLevel> g_level{LogLevel::Warn};
}  // namespace

void set_log_level(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }

LogLevel log_level() { return g_level.load(std::memory_order_relaxed); }

void log_line(LogLevel level, std::string_view text) {
    if (level == LogLevel::Quiet || log_level() < level) return;
    std::string line;
    line.reserve(text.size() + 9);
    line.append("pmprof: ");
    line.append(text);
    if (line.back() != '\n') line.push_back('\n');
    // A single write keeps the line whole; a short write (pipe full) continues with the rest.
    size_t done = 0;
    while (done < line.size()) {
        ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;  // stderr is gone (EPIPE, closed): diagnostics are best effort
        }
        done += static_cast<size_t>(n);
    }
}

}  // namespace pmprof
