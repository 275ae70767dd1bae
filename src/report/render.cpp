// The shared --format switch (render_profile), format detection by file name, reading pprof
// files back, sample type selection and pprof-style value scaling.
#include "pmprof/report/report.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdint>

#include "pmprof/output/callgrind.h"
#include "pmprof/output/folded.h"
#include "pmprof/output/pprof.h"
#include "pmprof/output/svg.h"
#include "pmprof/output/text.h"
#include "pmprof/profile/index.h"
#include "pmprof/support/path.h"

namespace pmprof {
namespace {

constexpr size_t kMaxProfileBytes = size_t{1} << 30;  // larger files are refused, not read

bool has_negative_values(const Profile& p) {
    for (const Sample& s : p.samples)
        for (int64_t v : s.values)
            if (v < 0) return true;
    return false;
}

Result<std::string> read_whole_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error::from_errno("open " + path, errno);
    std::string data;
    char buf[1 << 16];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            return Error::from_errno("read " + path, err);
        }
        if (n == 0) break;
        data.append(buf, static_cast<size_t>(n));
        if (data.size() > kMaxProfileBytes) {
            ::close(fd);
            return Error{path + ": larger than 1 GiB, not read", 0};
        }
    }
    ::close(fd);
    return data;
}

}  // namespace

Result<int> resolve_sample_type(const Profile& profile, const std::string& name) {
    ProfileIndex index(profile);
    int i = index.resolve_sample_index(name);
    if (i >= 0) return i;
    std::string types;
    for (const ValueType& t : profile.sample_types) types += (types.empty() ? "" : ", ") + t.type;
    if (types.empty()) return Error{"the profile has no sample types", 0};
    return Error{fmt::format("no sample type '{}' (the profile has: {})", name, types), 0};
}

Result<std::string> render_profile(const Profile& profile, const std::string& format,
                                   const RenderOptions& opt) {
    auto index = resolve_sample_type(profile, opt.sample_type);
    if (format == "pprof") return encode_pprof_gzip(profile);
    if (format == "callgrind") {
        // Callgrind costs are unsigned 64-bit counters (cl-format "Cost lines").
        if (has_negative_values(profile))
            return Error{"callgrind cannot hold negative costs (a --base diff); use --format "
                         "text, pprof or folded",
                         0};
        return write_callgrind(profile, CallgrindOptions{opt.command});
    }
    if (!index.ok()) return index.error();
    if (format == "folded") return write_folded(profile, FoldedOptions{*index, opt.per_thread});
    if (format == "svg") {
        SvgOptions so;
        so.sample_index = *index;
        if (!opt.title.empty()) so.title = opt.title;
        return write_flamegraph_svg(profile, so);
    }
    if (format == "text") return format_top(profile, *index, opt.top ? opt.top : SIZE_MAX);
    return Error{
        fmt::format("unknown format '{}' (known: pprof, callgrind, folded, svg, text)", format), 0};
}

bool format_is_binary(const std::string& format) { return format == "pprof"; }

std::string format_from_filename(const std::string& path) {
    std::string base(base_name(path));
    if (base.starts_with("callgrind.out") || base.ends_with(".callgrind")) return "callgrind";
    if (base.ends_with(".svg")) return "svg";
    if (base.ends_with(".folded") || base.ends_with(".txt")) return "folded";
    if (base.ends_with(".pb.gz") || base.ends_with(".pb") || base.ends_with(".pprof"))
        return "pprof";
    return {};
}

Result<Profile> read_profile_file(const std::string& path) {
    auto data = read_whole_file(path);
    if (!data.ok()) return data.error();
    if (data->empty()) return Error{path + ": empty file, not a pprof profile", 0};
    auto profile = decode_pprof(*data);
    if (!profile.ok())
        return Error{
            fmt::format("{}: not a valid pprof profile: {}", path, profile.error().message), 0};
    // Any byte string parses as *some* protobuf message; a profile has at least a sample type.
    if (profile->sample_types.empty())
        return Error{path + ": not a pprof profile (no sample types)", 0};
    return profile;
}

std::string format_scaled_value(int64_t value, const std::string& unit) {
    struct Scale {
        const char* suffix;
        double factor;
    };
    static constexpr Scale kTime[] = {{"ns", 1},  {"us", 1e3},    {"ms", 1e6},
                                      {"s", 1e9}, {"mins", 60e9}, {"hrs", 3600e9}};
    static constexpr Scale kBytes[] = {
        {"B", 1}, {"kB", 1024.0}, {"MB", 1048576.0}, {"GB", 1073741824.0}, {"TB", 1099511627776.0}};
    const Scale* table = nullptr;
    size_t n = 0;
    double v = static_cast<double>(value);
    if (unit == "nanoseconds" || unit == "ns") {
        table = kTime;
        n = std::size(kTime);
    } else if (unit == "microseconds" || unit == "milliseconds" || unit == "seconds") {
        table = kTime;
        n = std::size(kTime);
        v *= unit == "seconds" ? 1e9 : unit == "milliseconds" ? 1e6 : 1e3;
    } else if (unit == "bytes" || unit == "B") {
        table = kBytes;
        n = std::size(kBytes);
    } else {
        return fmt::format("{}", value);
    }
    // The largest unit in which the magnitude is at least 1, "%.2f" with a ".00" suffix cut,
    // and a bare "0" for zero (pprof's measurement.ScaledLabel).
    size_t k = 0;
    while (k + 1 < n && std::fabs(v) >= table[k + 1].factor) ++k;
    std::string num = fmt::format("{:.2f}", v / table[k].factor);
    if (num.ends_with(".00")) num.resize(num.size() - 3);
    if (num == "0" || num == "-0") return "0";
    return num + table[k].suffix;
}

}  // namespace pmprof
