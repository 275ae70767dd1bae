// `pmprof heap --sites` (src/cli/heap_sites.cpp), called from src/cli/heap.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace pmprof {

struct HeapSitesArgs {
    std::string pid, duration, format, output, sample_type;
    std::string sample_rate = "512KiB";
    uint32_t stack_bytes = 8 * 1024;
    double max_overhead_pct = 5;
    size_t top = 20;
    bool no_walk = false;
};

/// "524288", "512k", "512KiB", "1MiB": bytes; throws FatalError (kExitUsage) otherwise.
uint64_t parse_byte_count(const std::string& text);
int run_heap_sites(const HeapSitesArgs& a);

}  // namespace pmprof
