// The allocation-site recorder's results (src/alloc_sites.cpp): the glibc heap walk that
// confirms the in-use samples, Go's heap profile, and the summary.
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <tuple>
#include <unordered_map>

#include "alloc_sites_internal.h"
#include "pmprof/heap.h"
#include "pmprof/log.h"

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
    if (s.target_cpu_ns > 0 && s.records > 0) {
        // Uprobe traps are spent in the target's kernel time: what it had beyond its usual share.
        const double cpu = static_cast<double>(s.target_cpu_ns);
        const double extra = std::max(0.0, static_cast<double>(s.target_sys_ns) -
                                               s.target_sys_fraction_before * cpu);
        out += fmt::format(
            "sites: target cpu {:.2f} s in the window, {:.0f} % in the kernel (before the window: "
            "{:.0f} %): the probes cost it about {:.2f} s, {:.1f} us per probe hit, {:.0f} % of "
            "its cpu time (estimated from its kernel time; allocations that map memory raise it)\n",
            cpu / 1e9, 100.0 * static_cast<double>(s.target_sys_ns) / cpu,
            100.0 * s.target_sys_fraction_before, extra / 1e9,
            extra / 1e3 / static_cast<double>(s.records), 100.0 * extra / cpu);
    }
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
