// Diagnostics on stderr; stdout carries data only.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace pmprof {

enum class LogLevel { Quiet = 0, Warn = 1, Info = 2, Debug = 3 };

/// Sets the level for the whole process (set once, from main, before threads start).
void set_log_level(LogLevel level);
LogLevel log_level();
/// Writes "pmprof: <text>\n" to stderr when `level` is enabled.
void log_line(LogLevel level, std::string_view text);

template <typename... Args> void log_warn(fmt::format_string<Args...> f, Args&&... args) {
    if (log_level() >= LogLevel::Warn)
        log_line(LogLevel::Warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args> void log_info(fmt::format_string<Args...> f, Args&&... args) {
    if (log_level() >= LogLevel::Info)
        log_line(LogLevel::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args> void log_debug(fmt::format_string<Args...> f, Args&&... args) {
    if (log_level() >= LogLevel::Debug)
        log_line(LogLevel::Debug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace pmprof
