// The allocation-site recorder's results (src/sites/records.cpp): the glibc heap walk that
// confirms the in-use samples, Go's heap profile, and the summary.
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <tuple>
#include <unordered_map>

#include "pmprof/heap/heap.h"
#include "pmprof/support/log.h"
#include "sites/internal.h"

namespace pmprof::sites {

void confirm_with_walker(pid_t pid, std::vector<Sampled>& samples, AllocSitesStats& stats) {
    HeapOptions ho;
    ho.reach = false;  // only the chunks and their types: one short stop
    auto snap = take_heap_snapshot(pid, ho);
    if (!snap.ok()) {
        stats.walk_note = "heap walk: " + snap.error().message;
        return;
    }
    stats.walked = true;
    if (snap->partial()) stats.walk_note = "heap walk partial: " + snap->problems.front();
    std::unordered_map<uint64_t, const HeapChunk*> by_ptr;
    for (const HeapChunk& c : snap->chunks)
        if (!c.internal) by_ptr[c.chunk_address + 16] = &c;
    for (Sampled& s : samples) {
        if (!s.live) continue;
        auto it = by_ptr.find(s.ptr);
        if (it == by_ptr.end()) {
            // The walker is the truth for glibc: a free pmprof missed (a lost record).
            if (!snap->partial()) {
                s.live = false;
                ++stats.live_not_found;
            }
            continue;
        }
        ++stats.live_confirmed;
        if (it->second->type != 0 && it->second->type < snap->type_names.size()) {
            s.type = snap->type_names[it->second->type];
            ++stats.typed;
        }
    }
}

Profile build_sites_profile(const std::vector<Sampled>& samples,
                            const std::vector<RawStack>& stacks, uint64_t rate, ProcessImage& image,
                            const SymbolizeOptions& so) {
    // Go's heap profile: the values of each (stack, size) scaled by 1 / P(sampled).
    struct Sum {
        double alloc_n = 0, alloc_b = 0, inuse_n = 0, inuse_b = 0;
    };
    std::map<std::tuple<uint32_t, uint64_t, std::string>, Sum> sums;
    for (const Sampled& s : samples) {
        Sum& sum = sums[{s.stack, s.size, s.type}];
        sum.alloc_n += s.scale;
        sum.alloc_b += s.scale * static_cast<double>(s.size);
        if (s.live) {
            sum.inuse_n += s.scale;
            sum.inuse_b += s.scale * static_cast<double>(s.size);
        }
    }
    ProfileBuilder b({{"alloc_objects", "count"},
                      {"alloc_space", "bytes"},
                      {"inuse_objects", "count"},
                      {"inuse_space", "bytes"}},
                     {"space", "bytes"}, static_cast<int64_t>(std::max<uint64_t>(rate, 1)));
    for (const auto& [key, sum] : sums) {
        const auto& [stack, size, type] = key;
        std::vector<Label> labels{{"bytes", "", static_cast<int64_t>(size), ""}};
        if (!type.empty()) labels.push_back({"type", type, 0, ""});
        b.add(stacks[stack],
              {std::llround(sum.alloc_n), std::llround(sum.alloc_b), std::llround(sum.inuse_n),
               std::llround(sum.inuse_b)},
              labels);
    }
    auto sym = make_symbolizer(image, so);
    Profile p = b.build(*sym, image.maps());
    p.default_sample_type = "inuse_space";
    return p;
}

}  // namespace pmprof::sites

namespace pmprof {

std::string format_alloc_sites_summary(const AllocSitesStats& s) {
    const double wall = static_cast<double>(s.wall_ns) / 1e9;
    std::string out =
        fmt::format("sites: {} allocator, {} probes on {} threads ({} perf events), {:.2f} s\n",
                    s.allocator, s.probes, s.threads, s.events, wall);
    out += fmt::format(
        "sites: {} probe hits: {} allocations ({:.1f} MB), {} frees, {} nested calls; {} sampled "
        "({:.1f} MB), {} of them freed in the window\n",
        s.records, s.allocs, static_cast<double>(s.alloc_bytes) / 1e6, s.frees, s.nested, s.samples,
        static_cast<double>(s.sampled_bytes) / 1e6, s.sampled_freed);
    out += fmt::format("sites: {} records lost (ring full), {} throttled, {} returns unmatched, "
                       "{} stacks truncated\n",
                       s.lost, s.throttled, s.unmatched, s.unwind_truncated);
    if (s.target_cpu_ns > 0) {
        // The trap of every probe hit is spent in the target's kernel time (src/sites/guard.h).
        const double cpu = static_cast<double>(s.target_cpu_ns);
        const double cost = static_cast<double>(s.probe_cost_ns);
        out += fmt::format(
            "sites: target cpu {:.2f} s in the window, {:.0f} % in the kernel (without probes: "
            "{:.0f} %): the probes cost it about {:.2f} s, {:.0f} % of its cpu time ({})\n",
            cpu / 1e9, 100.0 * static_cast<double>(s.target_sys_ns) / cpu,
            100.0 * s.target_sys_fraction_before, cost / 1e9, 100.0 * cost / cpu,
            s.cost_from_kernel_time
                ? fmt::format("from its extra kernel time, {:.1f} us per probe hit",
                              s.records > 0 ? cost / 1e3 / static_cast<double>(s.records) : 0.0)
                : "at least 1 us per probe hit");
    }
    if (s.stopped_early)
        out += fmt::format(
            "sites: window ended early, after {:.1f} s of {:.0f} s: the probes took {:.0f} % of "
            "the target's cpu time over the last {:.1f} s, over the --max-overhead {:g} % budget; "
            "every probe was removed ({:.0f} ms) and what was recorded is kept. Every allocator "
            "call traps, sampled or not, so --sample-rate does not lower this; to record longer, "
            "allow more (--max-overhead 100: no limit), knowing the target runs that much slower\n",
            static_cast<double>(s.window_ns) / 1e9, static_cast<double>(s.requested_ns) / 1e9,
            100.0 * s.stop_share, static_cast<double>(s.stop_span_ns) / 1e9, 100.0 * s.max_overhead,
            static_cast<double>(s.remove_ns) / 1e6);
    else if (s.remove_ns > 0)
        out += fmt::format("sites: every probe removed {:.0f} ms after the window ended\n",
                           static_cast<double>(s.remove_ns) / 1e6);
    out += fmt::format("sites: pmprof used {:.2f} s of cpu\n",
                       static_cast<double>(s.pmprof_cpu_ns) / 1e9);
    if (s.walked)
        out += fmt::format("sites: heap walk: {} in-use samples confirmed live, {} not found "
                           "(dropped), {} with a C++ type\n",
                           s.live_confirmed, s.live_not_found, s.typed);
    if (!s.walk_note.empty()) out += "sites: " + s.walk_note + "\n";
    return out;
}

}  // namespace pmprof
