// /proc/PID/task/TID/stack and what a restart_syscall restarts.
#include "pmprof/threads/kernel_stack.h"

#include <fmt/format.h>

#include <string_view>

#include "pmprof/support/fd.h"
#include "pmprof/threads/dump.h"

namespace pmprof {
namespace {

bool contains_any(std::string_view s, std::initializer_list<std::string_view> parts) {
    for (std::string_view p : parts)
        if (s.find(p) != std::string_view::npos) return true;
    return false;
}

/// The syscall a kernel restart function (the restart_block's fn) continues.
std::string from_restart_function(std::string_view frame) {
    if (contains_any(frame, {"futex_wait_restart"})) return "futex";
    if (contains_any(frame, {"hrtimer_nanosleep_restart", "posix_cpu_nsleep_restart",
                             "alarm_timer_nsleep_restart"}))
        return "clock_nanosleep";
    if (contains_any(frame, {"do_restart_poll"})) return "poll";
    return {};
}

/// The syscall a libc wrapper or lock function on the user stack makes.
std::string from_user_function(std::string_view f) {
    while (!f.empty() && f.front() == '_') f.remove_prefix(1);
    if (f.starts_with("GI_")) f.remove_prefix(3);
    while (!f.empty() && f.front() == '_') f.remove_prefix(1);
    if (contains_any(f, {"clock_nanosleep", "thrd_sleep"})) return "clock_nanosleep";
    if (f.starts_with("nanosleep") || f.starts_with("sleep") || f.starts_with("usleep"))
        return "nanosleep";
    if (f.starts_with("poll") || f.starts_with("ppoll")) return "poll";
    if (contains_any(f, {"futex", "lll_lock_wait", "pthread_cond", "pthread_mutex", "sem_",
                         "pthread_rwlock"}))
        return "futex";
    return {};
}

}  // namespace

std::vector<std::string> parse_kernel_stack(std::string_view text) {
    std::vector<std::string> frames;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line.starts_with("[<")) {
            size_t close = line.find("] ");
            if (close != std::string_view::npos) line.remove_prefix(close + 2);
        }
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
        // The syscall entry is the same for every thread: it says nothing.
        if (line.starts_with("entry_SYSCALL_64") || line.starts_with("do_syscall_64")) continue;
        if (!line.empty()) frames.emplace_back(line);
    }
    return frames;
}

std::vector<std::string> read_kernel_stack(pid_t pid, pid_t tid) {
    auto text = read_file(fmt::format("/proc/{}/task/{}/stack", pid, tid));
    if (!text.ok()) return {};
    return parse_kernel_stack(*text);
}

std::string restarted_syscall(const ThreadEntry& t) {
    for (const std::string& k : t.kernel_frames)
        if (std::string s = from_restart_function(k); !s.empty()) return s;
    size_t n = 0;
    for (const SymbolizedPc& pc : t.frames) {
        for (const SourceFrame& f : pc.frames)
            if (std::string s = from_user_function(f.function); !s.empty()) return s;
        if (++n == 4) break;
    }
    return {};
}

}  // namespace pmprof
