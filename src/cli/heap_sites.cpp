// `pmprof heap PID --sites DURATION`: allocation sites through uprobes, as Go's heap
// profile (include/pmprof/sites/sites.h). src/cli/heap.cpp hands over when --sites is given.
#include <fmt/format.h>

#include <cctype>
#include <string>

#include "cli/command.h"
#include "cli/heap_sites.h"
#include "pmprof/report/report.h"
#include "pmprof/sites/sites.h"
#include "pmprof/support/log.h"

namespace pmprof {

uint64_t parse_byte_count(const std::string& text) {
    size_t used = 0;
    unsigned long long n = 0;
    try {
        n = std::stoull(text, &used);
    } catch (...) {
        throw FatalError("--sample-rate: not a byte count: " + text, {}, kExitUsage);
    }
    std::string unit = text.substr(used);
    for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    uint64_t mul = 1;
    if (unit == "k" || unit == "kb" || unit == "kib")
        mul = 1024;
    else if (unit == "m" || unit == "mb" || unit == "mib")
        mul = 1024 * 1024;
    else if (!unit.empty() && unit != "b")
        throw FatalError("--sample-rate: unknown unit in " + text + " (use B, KiB or MiB)", {},
                         kExitUsage);
    if (n == 0) throw FatalError("--sample-rate must be at least 1", {}, kExitUsage);
    return n * mul;
}

int run_heap_sites(const HeapSitesArgs& a) {
    const pid_t pid = parse_pid(a.pid);
    AllocSitesOptions opt;
    opt.duration_ns = parse_duration_ns(a.duration);
    opt.sample_rate = parse_byte_count(a.sample_rate);
    opt.stack_bytes = a.stack_bytes;
    opt.max_overhead = a.max_overhead_pct / 100;
    opt.confirm = !a.no_walk;
    opt.command_line = fmt::format("pmprof heap {} --sites {} --sample-rate {} --max-overhead {:g}",
                                   pid, a.duration, opt.sample_rate, a.max_overhead_pct);
    std::string format = a.format;
    if (format.empty()) {
        format = format_from_filename(a.output);
        if (format.empty()) format = "text";
    }
    // Checked before any probe is placed.
    const OutputPath out = prepare_output(a.output, format_is_binary(format));
    if (auto c = check_alloc_sites(pid); !c.ok())
        throw FatalError("heap --sites: " + c.error().message);  // exit 2, one line
    auto r = record_alloc_sites(pid, opt);
    if (!r.ok()) throw FatalError("heap --sites: " + r.error().message);
    log_warn("{}", format_alloc_sites_summary(r->stats));
    RenderOptions ro;
    ro.sample_type = a.sample_type.empty() ? "inuse_space" : a.sample_type;
    ro.title = "Allocation sites";
    ro.top = a.top;
    auto data = render_profile(r->profile, format, ro);
    if (!data.ok()) throw FatalError(data.error().message);
    write_output(out, *data);
    return r->stats.lost > 0 || r->stats.stopped_early ? kExitPartial : kExitComplete;
}

}  // namespace pmprof
