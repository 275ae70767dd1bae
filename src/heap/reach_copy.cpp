// What the reachability analysis needs from the target, copied inside the heap walk's stop
// (src/heap/cached_reader.h): the live chunks' bytes and the roots.
//
// Why copy inside the stop rather than read after the resume: a leak verdict says "no pointer
// anywhere reaches this chunk". Read while the target runs, an object moved from one place to
// another between two reads is seen in neither, and a live chunk is reported leaked. The copy is
// one process_vm_readv per run of adjacent live chunks (free chunks end a run) and one per root
// range; its cost is measured (ReachStats::copy_ns) and shows in the stop window.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "heap/cached_reader.h"
#include "pmprof/os/procfs.h"

namespace pmprof::heap_detail {

namespace {

using Range = std::pair<uint64_t, uint64_t>;

/// [start, end) of the bytes a live chunk owns, header included, plus the next chunk's prev_size
/// word, which an in-use arena chunk uses for its data (malloc.c: "the prev_size field of the
/// next chunk is used for user data").
Range chunk_span(const HeapChunk& c) {
    return {c.chunk_address, c.chunk_address + c.chunk_size + (c.arena >= 0 ? 8 : 0)};
}

/// Runs of adjacent live chunks, sorted by address. Runs inside the stop: one pass when the
/// chunks come sorted (the walker emits arena chunks in address order), a sort otherwise.
std::vector<Range> chunk_runs(const HeapSnapshot& snap) {
    std::vector<Range> runs;
    bool sorted = true;
    for (const HeapChunk& c : snap.chunks) {
        if (c.internal) continue;
        Range s = chunk_span(c);
        // The +8 of one chunk is the header of the next: overlapping spans join one run.
        if (!runs.empty() && s.first >= runs.back().first && s.first <= runs.back().second) {
            runs.back().second = std::max(runs.back().second, s.second);
        } else {
            sorted = sorted && (runs.empty() || s.first > runs.back().second);
            runs.push_back(s);
        }
    }
    if (sorted) return runs;
    std::sort(runs.begin(), runs.end());
    std::vector<Range> merged;
    for (const Range& r : runs) {
        if (!merged.empty() && r.first <= merged.back().second)
            merged.back().second = std::max(merged.back().second, r.second);
        else
            merged.push_back(r);
    }
    return merged;
}

bool is_device_or_special(const MemoryMap& m) {
    if (m.path.starts_with("[")) {
        // [stack], [stack:TID] and [anon:NAME] hold program data; [heap] is malloc's;
        // [vvar], [vdso], [vsyscall], [uprobes] are the kernel's.
        return !(m.path.starts_with("[stack") || m.path.starts_with("[anon:"));
    }
    return false;
}

/// Subtracts the sorted, disjoint `holes` from [lo, hi) and appends what is left to `out`.
void subtract(uint64_t lo, uint64_t hi, const std::vector<Range>& holes, std::vector<Range>& out) {
    auto it = std::upper_bound(holes.begin(), holes.end(), Range{lo, UINT64_MAX});
    if (it != holes.begin()) --it;
    for (; it != holes.end() && it->first < hi && lo < hi; ++it) {
        if (it->second <= lo) continue;
        if (it->first > lo) out.emplace_back(lo, it->first);
        lo = std::max(lo, it->second);
    }
    if (lo < hi) out.emplace_back(lo, hi);
}

uint64_t elapsed_ns(std::chrono::steady_clock::time_point t0) {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count());
}

}  // namespace

void CopiedMemory::add(MemoryCopy copy) {
    if (copy.bytes.empty()) return;
    if (!ranges_.empty() && copy.address < ranges_.back().address) sorted_ = false;
    bytes_ += copy.bytes.size();
    // A moved vector keeps its buffer: the pointer stays valid in owned_.
    ranges_.push_back({copy.address, copy.bytes.data(), copy.bytes.size()});
    owned_.push_back(std::move(copy.bytes));
}

void CopiedMemory::reserve(uint64_t bytes) {
    pool_.assign(bytes, 0);  // zero-filled: every page is faulted in here, not in the stop
    pool_used_ = 0;
}

void CopiedMemory::clear() {
    ranges_.clear();
    owned_.clear();
    pool_used_ = 0;
    sorted_ = true;
    bytes_ = 0;
}

uint64_t CopiedMemory::copy_from(MemoryReader& mem, uint64_t address, uint64_t len) {
    if (len == 0) return 0;
    uint8_t* dst = nullptr;
    if (pool_.size() - pool_used_ >= len) {
        dst = pool_.data() + pool_used_;
    } else {
        owned_.emplace_back(len);
        dst = owned_.back().data();
    }
    auto n = mem.read(address, dst, len);
    size_t got = n.ok() ? *n : 0;
    if (got == 0) return 0;
    if (dst >= pool_.data() && dst < pool_.data() + pool_.size())
        pool_used_ += (got + 7) & ~size_t{7};
    if (!ranges_.empty() && address < ranges_.back().address) sorted_ = false;
    ranges_.push_back({address, dst, got});
    bytes_ += got;
    return got;
}

Result<size_t> CopiedMemory::read(uint64_t address, void* out, size_t len) {
    if (!sorted_) {
        std::sort(ranges_.begin(), ranges_.end(),
                  [](const Range& a, const Range& b) { return a.address < b.address; });
        sorted_ = true;
    }
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), address,
                               [](uint64_t a, const Range& r) { return a < r.address; });
    if (it != ranges_.begin()) {
        --it;
        uint64_t off = address - it->address;
        if (off < it->size) {
            size_t n = std::min<uint64_t>(len, it->size - off);
            std::memcpy(out, it->data + off, n);
            return n;
        }
    }
    return Error{fmt::format("copied heap memory at {:#x}: not copied", address), 0};
}

std::vector<Range> root_ranges(const std::vector<MemoryMap>& maps, const HeapSnapshot& snap,
                               const std::vector<uint64_t>& sps) {
    // Malloc's own memory is never a root: a mapping that holds arena chunks or an arena, and
    // each mmapped chunk (the kernel may merge it with neighbouring anonymous memory).
    std::vector<Range> holes;
    std::vector<uint64_t> arena_points;
    for (const HeapChunk& c : snap.chunks) {
        if (c.arena < 0) holes.push_back(chunk_span(c));
    }
    std::sort(holes.begin(), holes.end());
    std::vector<uint64_t> sorted_chunks;  // arena chunk addresses, for "mapping holds one"
    for (const HeapChunk& c : snap.chunks)
        if (c.arena >= 0) sorted_chunks.push_back(c.chunk_address);
    std::sort(sorted_chunks.begin(), sorted_chunks.end());
    for (const ArenaSummary& a : snap.arenas) arena_points.push_back(a.address);

    // File-backed roots are the writable data of loaded modules (a path that also has an
    // executable mapping). A private data file or a shared mapping is no root: it holds no
    // pointer of this process worth trusting, and reading a large one would mean disk I/O
    // inside the stop.
    std::set<std::string> modules;
    for (const MemoryMap& m : maps)
        if (m.executable() && m.file_backed()) modules.insert(m.path);
    std::vector<Range> out;
    for (const MemoryMap& m : maps) {
        if (!m.readable() || !m.writable() || is_device_or_special(m)) continue;
        bool shared = m.perms.size() > 3 && m.perms[3] == 's';
        if (shared || (m.file_backed() && !modules.contains(m.path))) continue;
        auto first = std::lower_bound(sorted_chunks.begin(), sorted_chunks.end(), m.start);
        if (first != sorted_chunks.end() && *first < m.end) continue;
        // main_arena lives in libc's data (a root); other arenas head their own heap mapping.
        bool arena_heap = std::any_of(arena_points.begin(), arena_points.end(), [&](uint64_t a) {
            return a != snap.roots.main_arena && m.contains(a);
        });
        if (arena_heap) continue;
        // A thread stack: only the live part, from the lowest sp in it (minus the red zone).
        uint64_t lo = m.start;
        uint64_t lowest_sp = UINT64_MAX;
        for (uint64_t sp : sps)
            if (m.contains(sp)) lowest_sp = std::min(lowest_sp, sp);
        if (lowest_sp != UINT64_MAX)
            lo = std::max(m.start, lowest_sp - std::min(lowest_sp, kRedZone));
        subtract(lo, m.end, holes, out);
    }
    return out;
}

void copy_for_reach(ReachCopy& out, pid_t pid, MemoryReader& mem,
                    const std::vector<MemoryMap>& maps, const HeapSnapshot& snap,
                    const std::vector<pid_t>& tids, uint64_t max_bytes) {
    auto t0 = std::chrono::steady_clock::now();
    out.contents.clear();
    out.input = ReachInput{};
    out.skipped.clear();
    // A chunk in an arena that was not walked may be the only holder of a pointer: without
    // it every verdict of "leaked" is in doubt, so none is given.
    for (const ArenaSummary& a : snap.arenas)
        if (a.skipped) {
            out.skipped =
                fmt::format("reachability not analysed: arena {} was not walked", a.index);
            return;
        }
    if (snap.mmapped_chunks != snap.mallinfo.hblks) {
        out.skipped = "reachability not analysed: not every mmapped chunk was found";
        return;
    }
    std::vector<uint64_t> sps;
    for (pid_t tid : tids) {
        // A thread in a ptrace-stop is not running: the kernel reports its sp (and, inside a
        // system call, the six argument registers, which are roots too).
        auto st = read_syscall(pid, tid);
        if (!st.ok() || st->running) continue;
        sps.push_back(st->sp);
        if (st->nr >= 0)
            out.input.root_words.insert(out.input.root_words.end(), st->args.begin(),
                                        st->args.end());
    }
    std::vector<Range> runs = chunk_runs(snap);
    std::vector<Range> roots = root_ranges(maps, snap, sps);
    uint64_t total = 0;
    for (const Range& r : runs) total += r.second - r.first;
    for (const Range& r : roots) total += r.second - r.first;
    if (total > max_bytes) {
        out.skipped = fmt::format("reachability not analysed: {} MB of chunks and roots to copy, "
                                  "over the {} MB budget (--reach-max-mb)",
                                  total >> 20, max_bytes >> 20);
        return;
    }
    for (const Range& r : runs) out.contents.copy_from(mem, r.first, r.second - r.first);
    for (const Range& r : roots) {
        MemoryCopy c{r.first, std::vector<uint8_t>(r.second - r.first)};
        auto n = mem.read(r.first, c.bytes.data(), c.bytes.size());
        c.bytes.resize(n.ok() ? *n : 0);  // a short read keeps what was readable
        if (!c.bytes.empty()) out.input.roots.push_back(std::move(c));
    }
    out.copy_ns = elapsed_ns(t0);
}

}  // namespace pmprof::heap_detail

namespace pmprof {

uint64_t estimate_heap_bytes(const std::vector<MemoryMap>& maps, uint64_t heap_max,
                             uint64_t max_bytes) {
    uint64_t total = 0;
    for (const MemoryMap& m : maps) {
        bool brk = m.path == "[heap]";
        bool arena_heap =
            m.path.empty() && m.perms == "rw-p" && heap_max && m.start % heap_max == 0;
        if (brk || arena_heap) total += m.end - m.start;
    }
    return std::min(total, max_bytes);
}

}  // namespace pmprof
