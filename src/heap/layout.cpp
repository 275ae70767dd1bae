// Versioned ptmalloc layouts (x86_64). Only versions whose offsets were measured against a live
// process are listed (docs/facts.md "glibc malloc"); everything else is refused, never guessed.
#include "pmprof/heap/heap.h"

namespace pmprof {

namespace {

// glibc 2.36 (Debian 12), measured: malloc_state 2200 B, heap_info 48 B, mp_ 136 B,
// tcache_perthread_struct with uint16 counts (chunk 0x290), safe-linking.
GlibcMallocLayout layout_2_36() {
    GlibcMallocLayout l;
    l.version = "2.36";
    l.arena_size = 2200;
    l.arena_mutex = 0;
    l.arena_fastbins = 16;
    l.arena_top = 96;
    l.arena_bins = 112;
    l.arena_next = 2160;
    l.arena_system_mem = 2184;
    l.heap_info_size = 48;
    l.heap_info_ar_ptr = 0;
    l.heap_info_prev = 8;
    l.heap_info_size_field = 16;
    l.heap_max = uint64_t{64} << 20;  // 2 * DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
    l.mp_n_mmaps = 60;
    l.mp_mmapped_mem = 80;
    l.mp_sbrk_base = 96;
    l.mp_tcache_count = 120;
    l.tcache_chunk_size = 0x290;
    l.tcache_entries = 128;
    l.safe_linking = true;
    return l;
}

}  // namespace

Result<GlibcMallocLayout> glibc_layout_for(const std::string& version) {
    if (version == "2.36") return layout_2_36();
    return Error{"glibc " + (version.empty() ? std::string("(unknown version)") : version) +
                     " is not a verified malloc layout (verified: 2.36); refusing to guess "
                     "structure offsets",
                 0};
}

}  // namespace pmprof
