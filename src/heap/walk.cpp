// The glibc ptmalloc walker (include/pmprof/heap/heap.h). Read-only, bounded, every pointer
// checked.
//
// What "in use" means follows malloc/malloc.c (glibc 2.36): a chunk is free iff the next chunk's
// PREV_INUSE bit is clear, except fastbin and tcache chunks, which keep the bit set and are found
// on their lists. mallinfo2's numbers are computed the way int_mallinfo() does: top + fastbins +
// bins are "avail", system_mem - avail is "uordblks"; hblks/hblkhd come from mp_.
#include <fmt/format.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "heap/cached_reader.h"
#include "pmprof/heap/heap.h"
#include "pmprof/os/signals.h"

namespace pmprof {
namespace {

using heap_detail::CachedReader;
using heap_detail::MapIndex;

constexpr uint64_t kPrevInuse = 1, kIsMmapped = 2, kNonMainArena = 4;
constexpr uint64_t kSizeMask = ~uint64_t{7};
constexpr uint64_t kMinChunk = 32;
constexpr uint64_t kPage = 4096;
constexpr size_t kMaxArenas = 4096;
constexpr size_t kMaxHeapsPerArena = 1 << 16;

uint64_t align16(uint64_t v) { return (v + 15) & ~uint64_t{15}; }

uint64_t get64(const std::vector<uint8_t>& b, uint64_t off) {
    uint64_t v = 0;
    if (off + 8 <= b.size()) std::memcpy(&v, b.data() + off, 8);
    return v;
}

struct RawChunk {
    uint64_t addr = 0;
    uint64_t size = 0;
    int32_t arena = 0;
    bool inuse = false;
    bool first_in_heap = false;
    bool fencepost = false;
};

class Walker {
  public:
    Walker(MemoryReader& mem, const std::vector<MemoryMap>& maps, const GlibcMallocLayout& layout,
           const MallocRoots& roots, const WalkLimit& limit, HeapSnapshot& out)
        : direct_(mem), index_(maps), mem_(mem, index_), l_(layout), roots_(roots), limit_(limit),
          out_(out) {}

    void run();
    /// After run(): the problem that says why and where a cut walk ended.
    void say_cut();

  private:
    bool u64(uint64_t a, uint64_t* v) {
        if (const uint8_t* q = mem_.span(a, 8)) {  // cached: readable by construction
            std::memcpy(v, q, 8);
            return true;
        }
        return index_.readable(a, 8) && mem_.read_value(a, v);
    }
    /// Index into chunks_ of the chunk at `addr`, or npos (chunks_ sorted by address).
    size_t chunk_index(uint64_t addr) const {
        auto it = std::lower_bound(chunks_.begin(), chunks_.end(), addr,
                                   [](const RawChunk& c, uint64_t a) { return c.addr < a; });
        return it != chunks_.end() && it->addr == addr ? static_cast<size_t>(it - chunks_.begin())
                                                       : std::string::npos;
    }
    void problem(std::string text) { out_.problems.push_back(std::move(text)); }
    /// True once the walk must end (WalkLimit); the first time, records why.
    bool cut();

    bool chunk_ok(uint64_t p) const { return (p & 15) == 0 && index_.readable(p, 32); }
    uint64_t list_bound() const {
        return std::max<uint64_t>(1024, bytes_in_heaps_ / kMinChunk + 16);
    }

    std::vector<uint64_t> list_arenas();
    void walk_arena(int index, uint64_t address);
    void walk_fastbins(ArenaSummary& a, const std::vector<uint8_t>& st);
    void walk_bins(ArenaSummary& a, const std::vector<uint8_t>& st);
    void walk_heaps(ArenaSummary& a, uint64_t top);
    void walk_region(ArenaSummary& a, uint64_t start, uint64_t end, uint64_t top, bool has_top);
    void find_tcaches();
    bool check_tcache(const RawChunk& c, std::vector<uint64_t>* entries);
    void classify();
    void order_chunks();
    void probe_mmapped();
    bool in_arena_heap(uint64_t a) const;

    MemoryReader& direct_;
    MapIndex index_;
    CachedReader mem_;
    const GlibcMallocLayout& l_;
    const MallocRoots& roots_;
    const WalkLimit& limit_;
    HeapSnapshot& out_;
    enum class Cut { None, StopRequest, Deadline } cut_ = Cut::None;

    uint64_t n_mmaps_ = 0, mmapped_mem_ = 0, sbrk_base_ = 0, tcache_count_ = 0;
    uint64_t bytes_in_heaps_ = 0;
    std::unordered_set<uint64_t> fast_, binned_, tcache_;
    std::vector<RawChunk> chunks_;
    std::vector<size_t> runs_;  // where each walked region's chunks begin in chunks_
    std::vector<std::pair<uint64_t, uint64_t>> heap_regions_;  // non-main heaps (HEAP_MAX each)
    std::unordered_set<uint64_t> internal_;
    std::unordered_map<uint64_t, uint64_t>
        free_bk_;  // free chunk -> its bk, from the walk  // tcache_perthread_struct chunks
};

bool Walker::cut() {
    if (cut_ != Cut::None) return true;
    if (limit_.honor_stop_request && stop_requested()) {
        cut_ = Cut::StopRequest;
        out_.stop_requested = true;
    } else if (limit_.deadline_ns != 0) {
        timespec ts{};
        clock_gettime(CLOCK_MONOTONIC, &ts);
        const uint64_t now =
            static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
        if (now < limit_.deadline_ns) return false;
        cut_ = Cut::Deadline;
    } else {
        return false;
    }
    out_.cut_short = "cut";  // the message follows once the walk has unwound (say_cut)
    return true;
}

void Walker::say_cut() {
    if (cut_ == Cut::None) return;
    const double mb = static_cast<double>(out_.bytes_walked) / 1e6;
    if (cut_ == Cut::StopRequest) {
        const char* sig = sigabbrev_np(stop_signal() ? stop_signal() : SIGINT);
        out_.cut_short = fmt::format("walk stopped by SIG{} after {:.1f} MB", sig ? sig : "?", mb);
    } else {
        out_.cut_short = fmt::format(
            "walk ended at --max-stop {} ms after {:.1f} MB: the rest of the heap is missing from "
            "this snapshot (a walk cannot continue after the target ran: raise --max-stop to "
            "walk all of it)",
            limit_.limit_ms, mb);
    }
    problem(out_.cut_short);
}

std::vector<uint64_t> Walker::list_arenas() {
    std::vector<uint64_t> arenas;
    uint64_t a = roots_.main_arena;
    for (size_t n = 0; n < kMaxArenas; ++n) {
        if (!index_.readable(a, l_.arena_size)) {
            problem(
                fmt::format("arena list: 0x{:x} is not readable memory; later arenas skipped", a));
            return arenas;
        }
        arenas.push_back(a);
        uint64_t next = 0;
        if (!u64(a + l_.arena_next, &next)) break;
        if (next == roots_.main_arena) return arenas;
        if (std::find(arenas.begin(), arenas.end(), next) != arenas.end()) {
            problem(fmt::format("arena list: cycle at 0x{:x} does not return to main_arena", next));
            return arenas;
        }
        a = next;
    }
    problem("arena list: more than 4096 arenas or unreadable next pointer; stopped there");
    return arenas;
}

void Walker::walk_fastbins(ArenaSummary& a, const std::vector<uint8_t>& st) {
    for (int j = 0; j < l_.fastbin_count; ++j) {
        uint64_t p = get64(st, l_.arena_fastbins + 8 * static_cast<uint64_t>(j));
        for (uint64_t n = 0; p != 0; ++n) {
            uint64_t size = 0, stored = 0;
            if (n > list_bound() || !chunk_ok(p) || !u64(p + 8, &size) || !u64(p + 16, &stored)) {
                problem(fmt::format("arena {}: fastbin {} entry 0x{:x} unreadable or cyclic",
                                    a.index, j, p));
                break;
            }
            fast_.insert(p);
            ++a.fast_chunks;
            a.fast_bytes += size & kSizeMask;
            // Safe-linking (glibc >= 2.32): fd is stored as (&fd >> 12) ^ next.
            p = l_.safe_linking ? ((p + 16) >> 12) ^ stored : stored;
        }
    }
}

void Walker::walk_bins(ArenaSummary& a, const std::vector<uint8_t>& st) {
    for (int i = 1; i < l_.bin_count; ++i) {
        // bin_at(m, i) = &bins[(i - 1) * 2] - offsetof(malloc_chunk, fd); walk backwards via bk.
        uint64_t slot = l_.arena_bins + static_cast<uint64_t>(i - 1) * 16;
        uint64_t bin = a.address + slot - 16;
        uint64_t p = get64(st, slot + 8);
        for (uint64_t n = 0; p != bin; ++n) {
            uint64_t size = 0;
            if (n > list_bound() || !chunk_ok(p) || !u64(p + 8, &size)) {
                problem(fmt::format("arena {}: bin {} entry 0x{:x} unreadable or cyclic", a.index,
                                    i, p));
                break;
            }
            binned_.insert(p);
            ++a.bin_chunks;
            a.bin_bytes += size & kSizeMask;
            // bk of a free chunk was saved by the sequential walk; lists jump around the heap.
            auto saved = free_bk_.find(p);
            if (saved != free_bk_.end())
                p = saved->second;
            else if (!u64(p + 24, &p))
                break;
        }
    }
}

void Walker::walk_region(ArenaSummary& a, uint64_t start, uint64_t end, uint64_t top,
                         bool has_top) {
    bytes_in_heaps_ += end - start;
    bool first = true;
    uint64_t p = start;
    // Chunks come out of one region in address order; regions are put in order after the walk.
    runs_.push_back(chunks_.size());
    // The region, or up to where a cut (WalkLimit) ended its walk.
    struct Progress {
        uint64_t& walked;
        const uint64_t& at;
        uint64_t from, end;
        bool cut = false;
        ~Progress() { walked += (cut ? std::min(at, end) : end) - from; }
    } progress{out_.bytes_walked, p, start, end};
    for (uint64_t n = 0; n <= (end - start) / 16 && p + 16 <= end; ++n) {
        if (has_top && p == top) return;
        if ((n & 4095) == 4095 && cut()) {
            a.skipped = true;
            progress.cut = true;
            return;
        }
        uint64_t field = 0;
        if (!u64(p + 8, &field)) break;
        uint64_t size = field & kSizeMask;
        if (size == 0 && !has_top) return;  // the size-0 fencepost that ends an old heap
        if (size < 16 || (size & 15) != 0 || size > end - p) {
            problem(fmt::format("arena {}: chunk at 0x{:x} has size field 0x{:x}; rest of heap "
                                "0x{:x}-0x{:x} skipped",
                                a.index, p, field, start, end));
            a.skipped = true;
            return;
        }
        uint64_t next_field = kPrevInuse;
        if (p + size + 16 <= end) (void)u64(p + size + 8, &next_field);
        RawChunk c;
        c.addr = p;
        c.size = size;
        c.arena = a.index;
        c.inuse = (next_field & kPrevInuse) != 0;
        c.first_in_heap = first;
        c.fencepost = size == 16;
        uint64_t bk = 0;
        if (!c.inuse && u64(p + 24, &bk)) free_bk_.emplace(p, bk);
        chunks_.push_back(c);
        first = false;
        p += size;
    }
    if (has_top) {
        problem(fmt::format("arena {}: walk of 0x{:x}-0x{:x} did not reach top 0x{:x}", a.index,
                            start, end, top));
        a.skipped = true;
    }
}

void Walker::walk_heaps(ArenaSummary& a, uint64_t top) {
    if (a.index == 0) {
        // The main heap: sbrk_base to the end of top (one contiguous brk region).
        const MemoryMap* m = index_.find(sbrk_base_);
        if (!m || !m->contains(top) || top + a.top_size > m->end) {
            problem(fmt::format("main arena: top 0x{:x} is not in the brk heap at 0x{:x} "
                                "(non-contiguous main arena is not supported); not walked",
                                top, sbrk_base_));
            a.skipped = true;
            return;
        }
        a.heaps = 1;
        walk_region(a, align16(sbrk_base_), top + a.top_size, top, true);
        return;
    }
    struct Heap {
        uint64_t at = 0, size = 0, prev = 0;
    };
    std::vector<Heap> heaps;
    uint64_t h = top & ~(l_.heap_max - 1);
    for (size_t n = 0; h != 0 && n < kMaxHeapsPerArena; ++n) {
        Heap hi{h, 0, 0};
        uint64_t ar = 0;
        if (!u64(h + l_.heap_info_ar_ptr, &ar) || !u64(h + l_.heap_info_prev, &hi.prev) ||
            !u64(h + l_.heap_info_size_field, &hi.size) || ar != a.address ||
            hi.size > l_.heap_max || !index_.readable(h, hi.size)) {
            problem(fmt::format("arena {}: heap_info at 0x{:x} does not belong to it; its older "
                                "heaps skipped",
                                a.index, h));
            a.skipped = true;
            break;
        }
        heaps.push_back(hi);
        heap_regions_.emplace_back(h, h + l_.heap_max);
        h = hi.prev;
    }
    a.heaps = heaps.size();
    // Oldest first, so chunks come out in address order within each heap.
    for (auto it = heaps.rbegin(); it != heaps.rend(); ++it) {
        bool oldest = it->prev == 0;
        uint64_t start =
            oldest ? align16(a.address + l_.arena_size) : align16(it->at + l_.heap_info_size);
        bool holds_top = top >= it->at && top < it->at + it->size;
        walk_region(a, start, it->at + it->size, top, holds_top);
    }
}

void Walker::walk_arena(int index, uint64_t address) {
    ArenaSummary a;
    a.index = index;
    a.address = address;
    std::vector<uint8_t> st(l_.arena_size);
    auto r = mem_.read(address, st.data(), st.size());
    if (!r.ok() || *r != st.size()) {
        problem(
            fmt::format("arena {} at 0x{:x}: malloc_state unreadable; skipped", index, address));
        a.skipped = true;
        out_.arenas.push_back(a);
        return;
    }
    uint32_t mutex = 0;
    std::memcpy(&mutex, st.data() + l_.arena_mutex, 4);
    a.system_mem = get64(st, l_.arena_system_mem);
    uint64_t top = get64(st, l_.arena_top);
    out_.mallinfo.arena += a.system_mem;
    if (mutex != 0) {
        problem(fmt::format("arena {} at 0x{:x}: lock held (a thread was inside malloc); skipped",
                            index, address));
        a.skipped = true;
        ++out_.locked_arenas;
        out_.arenas.push_back(a);
        return;
    }
    uint64_t top_field = 0;
    if (!chunk_ok(top) || !u64(top + 8, &top_field)) {
        problem(fmt::format("arena {}: top chunk 0x{:x} unreadable; skipped", index, top));
        a.skipped = true;
        out_.arenas.push_back(a);
        return;
    }
    a.top_size = top_field & kSizeMask;
    walk_heaps(a, top);
    walk_fastbins(a, st);
    walk_bins(a, st);
    // int_mallinfo(): avail = top + fastbins + bins; nblocks counts top once.
    uint64_t avail = a.top_size + a.fast_bytes + a.bin_bytes;
    out_.mallinfo.ordblks += 1 + a.bin_chunks;
    out_.mallinfo.smblks += a.fast_chunks;
    out_.mallinfo.fsmblks += a.fast_bytes;
    out_.mallinfo.fordblks += avail;
    out_.mallinfo.uordblks += a.system_mem - avail;
    if (index == 0) out_.mallinfo.keepcost = a.top_size;
    out_.arenas.push_back(a);
}

bool Walker::check_tcache(const RawChunk& c, std::vector<uint64_t>* entries) {
    std::vector<uint8_t> t(l_.tcache_entries + 8 * static_cast<uint64_t>(l_.tcache_bin_count));
    auto r = mem_.read(c.addr + 16, t.data(), t.size());
    if (!r.ok() || *r != t.size()) return false;
    bool any = false;
    uint64_t key = 0;
    for (int k = 0; k < l_.tcache_bin_count; ++k) {
        uint16_t count = 0;
        std::memcpy(&count, t.data() + 2 * k, 2);
        uint64_t e = get64(t, l_.tcache_entries + 8 * static_cast<uint64_t>(k));
        if (count > tcache_count_ || (count == 0) != (e == 0)) return false;
        for (uint16_t n = 0; n < count; ++n) {
            size_t at = chunk_index(e - 16);
            uint64_t stored = 0, ekey = 0;
            if ((e & 15) != 0 || at == std::string::npos ||
                chunks_[at].size != static_cast<uint64_t>(k + 2) * 16 || !u64(e, &stored) ||
                !u64(e + 8, &ekey))
                return false;
            // Every cached entry carries the process-wide tcache_key (glibc >= 2.34).
            if (key == 0) key = ekey;
            if (ekey != key) return false;
            entries->push_back(e - 16);
            e = l_.safe_linking ? (e >> 12) ^ stored : stored;
        }
        if (e != 0) return false;
        any = any || count > 0;
    }
    // An all-empty struct is only trusted where glibc puts the first one: the heap's first chunk.
    return any || c.first_in_heap;
}

void Walker::find_tcaches() {
    size_t n = 0;
    for (const RawChunk& c : chunks_) {
        if ((++n & 65535) == 0 && cut()) return;
        if (!c.inuse || c.size != l_.tcache_chunk_size || fast_.contains(c.addr)) continue;
        std::vector<uint64_t> entries;
        if (!check_tcache(c, &entries)) continue;
        internal_.insert(c.addr);
        tcache_.insert(entries.begin(), entries.end());
    }
}

void Walker::classify() {
    uint64_t free_unlisted = 0, fast_found = 0, tcache_found = 0;
    size_t n = 0;
    for (const RawChunk& c : chunks_) {
        if ((++n & 65535) == 0 && cut()) return;
        ArenaSummary& a = out_.arenas[static_cast<size_t>(c.arena)];
        if (!c.inuse) {
            ++a.walked_free_chunks;
            a.walked_free_bytes += c.size;
            free_unlisted += binned_.contains(c.addr) ? 0 : 1;
            continue;
        }
        if (fast_.contains(c.addr)) {
            ++fast_found;
            continue;
        }
        if (tcache_.contains(c.addr)) {
            ++tcache_found;
            ++a.tcache_chunks;
            a.tcache_bytes += c.size;
            continue;
        }
        HeapChunk h;
        h.chunk_address = c.addr;
        h.chunk_size = c.size;
        h.arena = c.arena;
        h.internal = c.fencepost || internal_.contains(c.addr);
        (void)u64(c.addr + 16, &h.word0);
        (void)u64(c.addr + 24, &h.word1);
        if (h.internal) {
            ++a.internal_chunks;
            a.internal_bytes += c.size;
        } else {
            ++a.live_chunks;
            a.live_bytes += c.size;
        }
        out_.chunks.push_back(h);
    }
    if (free_unlisted)
        problem(
            fmt::format("{} free chunks found by the heap walk are on no bin list", free_unlisted));
    if (fast_found != fast_.size())
        problem(fmt::format("{} of {} fastbin chunks not found by the heap walk",
                            fast_.size() - fast_found, fast_.size()));
    if (tcache_found != tcache_.size())
        problem(fmt::format("{} of {} tcache chunks not found by the heap walk",
                            tcache_.size() - tcache_found, tcache_.size()));
}

bool Walker::in_arena_heap(uint64_t a) const {
    for (const auto& [lo, hi] : heap_regions_)
        if (a >= lo && a < hi) return true;
    return false;
}

void Walker::probe_mmapped() {
    // mmapped chunks: prev_size 0, IS_MMAPPED, page-multiple size. The kernel merges adjacent
    // anonymous mappings, so every page of anonymous rw-p memory is a candidate (docs/facts.md).
    // Pages are read in 256 KiB blocks (one process_vm_readv each) and found chunks are jumped
    // over.
    constexpr uint64_t kProbeBlock = 256 * 1024;
    std::vector<uint64_t> block(kProbeBlock / 8);
    for (const MemoryMap& m : index_.maps()) {
        if (out_.mmapped_chunks == n_mmaps_ && out_.mmapped_bytes == mmapped_mem_) break;
        if (!m.path.empty() || m.perms != "rw-p" || in_arena_heap(m.start)) continue;
        uint64_t bstart = 0, bend = 0;  // the bytes in `block`
        for (uint64_t p = m.start; p + 32 <= m.end;) {
            if (p < bstart || p + 32 > bend) {
                if (cut()) return;
                uint64_t len = std::min(kProbeBlock, m.end - p);
                auto r = direct_.read(p, block.data(), len);
                if (!r.ok() || *r < 32) break;
                bstart = p;
                bend = p + (*r & ~uint64_t{7});
                out_.bytes_walked += *r;
            }
            const uint64_t* hdr = block.data() + (p - bstart) / 8;
            uint64_t size = hdr[1] & kSizeMask;
            if (hdr[0] == 0 && (hdr[1] & kIsMmapped) && !(hdr[1] & kNonMainArena) &&
                size >= kPage && size % kPage == 0 && size <= m.end - p) {
                ++out_.mmapped_chunks;
                out_.mmapped_bytes += size;
                HeapChunk h;
                h.chunk_address = p;
                h.chunk_size = size;
                h.arena = -1;
                h.word0 = hdr[2];
                h.word1 = hdr[3];
                out_.chunks.push_back(h);
                p += size;
            } else {
                p += kPage;
            }
        }
    }
    if (out_.mmapped_chunks != n_mmaps_ || out_.mmapped_bytes != mmapped_mem_)
        problem(fmt::format("mmapped chunks: found {} ({} bytes), mp_ says {} ({} bytes)",
                            out_.mmapped_chunks, out_.mmapped_bytes, n_mmaps_, mmapped_mem_));
}

void Walker::order_chunks() {
    // Each region's chunks are in address order and regions do not overlap, so ordering the
    // regions orders the chunks: O(chunks), where a sort of millions of chunks took a second
    // of the stop.
    std::vector<std::pair<size_t, size_t>> runs;  // [begin, end) in chunks_
    for (size_t r = 0; r < runs_.size(); ++r) {
        const size_t end = r + 1 < runs_.size() ? runs_[r + 1] : chunks_.size();
        if (end > runs_[r]) runs.emplace_back(runs_[r], end);
    }
    auto by_address = [&](const auto& a, const auto& b) {
        return chunks_[a.first].addr < chunks_[b.first].addr;
    };
    if (std::is_sorted(runs.begin(), runs.end(), by_address)) return;
    std::sort(runs.begin(), runs.end(), by_address);
    std::vector<RawChunk> ordered;
    ordered.reserve(chunks_.size());
    for (const auto& [b, e] : runs)
        ordered.insert(ordered.end(), chunks_.begin() + b, chunks_.begin() + e);
    chunks_ = std::move(ordered);
}

void Walker::run() {
    uint32_t n_mmaps = 0;
    if (!index_.readable(roots_.mp, l_.mp_tcache_count + 8) ||
        !mem_.read_value(roots_.mp + l_.mp_n_mmaps, &n_mmaps) ||
        !u64(roots_.mp + l_.mp_mmapped_mem, &mmapped_mem_) ||
        !u64(roots_.mp + l_.mp_sbrk_base, &sbrk_base_) ||
        !u64(roots_.mp + l_.mp_tcache_count, &tcache_count_)) {
        problem(fmt::format("mp_ at 0x{:x} unreadable; nothing walked", roots_.mp));
        return;
    }
    n_mmaps_ = n_mmaps;
    out_.mallinfo.hblks = n_mmaps_;
    out_.mallinfo.hblkhd = mmapped_mem_;
    tcache_count_ = std::min<uint64_t>(tcache_count_, 65535);
    std::vector<uint64_t> arenas = list_arenas();
    for (size_t i = 0; i < arenas.size() && !cut(); ++i) walk_arena(static_cast<int>(i), arenas[i]);
    // A walk cut short has no complete chunk list to classify: the arenas' totals stay, the
    // problem says why the chunks are missing.
    if (cut()) return;
    order_chunks();
    find_tcaches();
    classify();
    probe_mmapped();
}

}  // namespace

HeapSnapshot walk_glibc_heap(MemoryReader& mem, const std::vector<MemoryMap>& maps,
                             const GlibcMallocLayout& layout, const MallocRoots& roots,
                             const WalkLimit& limit) {
    auto t0 = std::chrono::steady_clock::now();
    HeapSnapshot snap;
    snap.glibc_version = layout.version;
    snap.roots = roots;
    Walker walker(mem, maps, layout, roots, limit, snap);
    walker.run();
    walker.say_cut();
    snap.walk_ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count());
    return snap;
}

}  // namespace pmprof
