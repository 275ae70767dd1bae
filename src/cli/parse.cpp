// Helpers shared by the subcommands: strict pid and duration parsing, the exit-code help text.
#include "cli/command.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "pmprof/support/error.h"

namespace pmprof {

const char* const kExitCodesHelp =
    "Exit codes: 0 complete, 1 output written but partial, 2 fatal error, 3 (stacks) a deadlock "
    "was found, 64 usage error.";

pid_t parse_pid(const std::string& text) {
    if (text.empty() || text.size() > 9 ||
        text.find_first_not_of("0123456789") != std::string::npos)
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
    static constexpr Unit kUnits[] = {{"ms", 1e6}, {"us", 1e3}, {"ns", 1.0},
                                      {"s", 1e9},  {"m", 60e9}, {"h", 3600e9}};
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

#include <unistd.h>

#include "pmprof/support/log.h"

namespace pmprof {

OutputPath prepare_output(const std::string& path, bool binary) {
    auto out = check_output(path);
    if (!out.ok()) throw FatalError(out.error());
    if (binary && out->kind == OutputPath::Kind::Descriptor && isatty(out->fd))
        throw FatalError("refusing to write a binary profile to a terminal", "use -o FILE",
                         kExitUsage);
    log_debug("output: {} ({})", out->display(),
              out->kind == OutputPath::Kind::Regular  ? "replaced atomically: " + out->target
              : out->kind == OutputPath::Kind::Stream ? "written through: " + out->target
                                                      : "descriptor " + std::to_string(out->fd));
    return std::move(*out);
}

void write_output(const OutputPath& out, const std::string& data) {
    auto written = write_output_data(out, data);
    if (!written.ok()) throw FatalError(written.error());
}

void write_stdout(const std::string& data) { write_output(OutputPath{}, data); }

}  // namespace pmprof
