// Shared by the allocation-site recorder (src/sites/records.cpp) and its profile and summary
// (src/sites/profile.cpp). Not an interface.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "pmprof/elf/image.h"
#include "pmprof/heap/heap.h"
#include "pmprof/sites/sites.h"
#include "pmprof/support/types.h"

namespace pmprof::sites {

/// One sampled allocation: where (an interned stack), how big, its weight, and whether it was
/// still allocated at the end.
struct Sampled {
    uint32_t stack = 0;
    uint64_t size = 0;
    uint64_t ptr = 0;
    double scale = 1;  // 1 / P(sampled) for this size (Go's scaleHeapSample)
    bool live = true;
    std::string type;  // from the heap walker, when it knows it
};

/// Go's scaling: an allocation of `size` bytes is sampled with probability 1 - exp(-size/rate).
inline double sample_scale(uint64_t size, uint64_t rate) {
    if (rate <= 1 || size == 0) return 1;
    const double p = 1 - std::exp(-static_cast<double>(size) / static_cast<double>(rate));
    return p > 0 ? 1 / p : 1;
}

/// The glibc heap walk's verdict on the live samples: confirmed ones get the chunk's type, the
/// ones the walker does not find live are no longer counted in use.
void confirm_with_walker(pid_t pid, std::vector<Sampled>& samples, AllocSitesStats& stats);

/// Go's heap profile from the samples.
Profile build_sites_profile(const std::vector<Sampled>& samples,
                            const std::vector<RawStack>& stacks, uint64_t rate, ProcessImage& image,
                            const SymbolizeOptions& so);

}  // namespace pmprof::sites
