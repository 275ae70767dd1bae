// Reachability and ownership of live chunks (include/pmprof/heap/heap.h, analyze_reach).
//
// A conservative scan, as Boehm GC and valgrind's leak checker do it: every aligned 8-byte word
// of the roots and of the chunks is a pointer when it equals an address inside a live chunk's
// user bytes. Interior pointers count: std::string and std::vector point at the start of their
// buffer, but a std::deque or an object held by a base subobject point inside. A word that only
// looks like a pointer (an integer, a stale stack slot) makes a chunk reachable that may not be:
// the error is always towards "reachable", never towards a false leak.
//
// Edges are found once (a compressed chunk -> chunk adjacency: 4 bytes per distinct pointer),
// then reused for the marking from the roots and for the owner propagation.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "pmprof/heap/heap.h"

namespace pmprof {
namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr uint32_t kAmbiguous = UINT32_MAX;  // in `owner`: two or more owner types

/// Live chunks sorted by user address, with a binary-searched lookup of interior pointers.
class ChunkIndex {
  public:
    explicit ChunkIndex(const HeapSnapshot& snap) {
        for (uint32_t i = 0; i < snap.chunks.size(); ++i) {
            const HeapChunk& c = snap.chunks[i];
            if (c.internal || c.chunk_size < 32) continue;
            // User bytes: from chunk + 16 to the end of the chunk, plus the next chunk's
            // prev_size word for arena chunks (malloc_usable_size = size - 8; mmapped: size - 16).
            // That last word is scanned but is no pointer target: it is the next chunk's
            // address, which malloc's own lists (main_arena.top, bins) hold, and which would
            // otherwise keep the chunk before top or before a free chunk alive.
            uint64_t lo = c.chunk_address + 16;
            uint64_t end = c.chunk_address + c.chunk_size;
            entries_.push_back({lo, end + (c.arena >= 0 ? 8 : 0), end, i});
        }
        std::sort(entries_.begin(), entries_.end(),
                  [](const Entry& a, const Entry& b) { return a.lo < b.lo; });
        if (!entries_.empty()) {
            min_ = entries_.front().lo;
            for (const Entry& e : entries_) max_ = std::max(max_, e.target_hi);
        }
    }

    /// Position (in sorted order) of the chunk whose user bytes hold `address`, or kNone.
    uint32_t find(uint64_t address) const {
        if (address < min_ || address >= max_) return kNone;  // most non-pointers end here
        auto it = std::upper_bound(entries_.begin(), entries_.end(), address,
                                   [](uint64_t a, const Entry& e) { return a < e.lo; });
        if (it == entries_.begin()) return kNone;
        --it;
        return address < it->target_hi ? static_cast<uint32_t>(it - entries_.begin()) : kNone;
    }
    size_t size() const { return entries_.size(); }
    uint64_t lo(uint32_t pos) const { return entries_[pos].lo; }
    uint64_t hi(uint32_t pos) const { return entries_[pos].hi; }
    uint32_t chunk(uint32_t pos) const { return entries_[pos].chunk; }

  private:
    struct Entry {
        uint64_t lo, hi, target_hi;  // scanned [lo, hi); pointers into [lo, target_hi) count
        uint32_t chunk;              // index into HeapSnapshot::chunks
    };
    std::vector<Entry> entries_;
    uint64_t min_ = 0, max_ = 0;
};

/// Chunk -> chunk pointers in compressed rows: the targets of position p are
/// targets[first[p] .. first[p + 1]), each once, never p itself.
struct Edges {
    std::vector<uint64_t> first;
    std::vector<uint32_t> targets;
    uint64_t unreadable = 0;  // chunks whose bytes were not in the copy
    uint64_t bytes = 0;

    size_t begin(uint32_t p) const { return first[p]; }
    size_t end(uint32_t p) const { return first[p + 1]; }
};

template <typename F> void scan_words(const uint8_t* data, uint64_t address, size_t len, F&& f) {
    // Only 8-byte aligned words: the ABI aligns every pointer member and stack slot.
    size_t skip = static_cast<size_t>((8 - (address & 7)) & 7);
    for (size_t off = skip; off + 8 <= len; off += 8) {
        uint64_t w;
        std::memcpy(&w, data + off, 8);
        f(w);
    }
}

Edges build_edges(const ChunkIndex& index, MemoryReader& contents) {
    Edges e;
    e.first.reserve(index.size() + 1);
    e.first.push_back(0);
    std::vector<uint8_t> buf;
    std::vector<uint32_t> row;
    for (uint32_t p = 0; p < index.size(); ++p) {
        uint64_t lo = index.lo(p), len = index.hi(p) - lo;
        buf.resize(len);
        auto n = contents.read(lo, buf.data(), buf.size());
        if (!n.ok() || *n != len) ++e.unreadable;
        size_t got = n.ok() ? *n : 0;
        e.bytes += got;
        row.clear();
        scan_words(buf.data(), lo, got, [&](uint64_t w) {
            uint32_t t = index.find(w);
            if (t != kNone && t != p) row.push_back(t);
        });
        std::sort(row.begin(), row.end());
        row.erase(std::unique(row.begin(), row.end()), row.end());
        e.targets.insert(e.targets.end(), row.begin(), row.end());
        e.first.push_back(e.targets.size());
    }
    return e;
}

/// Marks (by position) everything reachable from the roots; returns the marks.
std::vector<uint8_t> mark(const ChunkIndex& index, const Edges& edges, const ReachInput& in,
                          uint64_t* root_bytes) {
    std::vector<uint8_t> marked(index.size(), 0);
    std::vector<uint32_t> work;
    auto reach = [&](uint64_t w) {
        uint32_t t = index.find(w);
        if (t != kNone && !marked[t]) {
            marked[t] = 1;
            work.push_back(t);
        }
    };
    for (uint64_t w : in.root_words) reach(w);
    for (const MemoryCopy& r : in.roots) {
        *root_bytes += r.bytes.size();
        scan_words(r.bytes.data(), r.address, r.bytes.size(), reach);
    }
    while (!work.empty()) {  // depth-first: the work list stays small on long lists
        uint32_t p = work.back();
        work.pop_back();
        for (size_t k = edges.begin(p); k < edges.end(p); ++k) {
            uint32_t t = edges.targets[k];
            if (!marked[t]) {
                marked[t] = 1;
                work.push_back(t);
            }
        }
    }
    return marked;
}

/// owner[p]: 0 none, a type id, or kAmbiguous. Typed chunks give their type to what they point
/// to; untyped chunks pass on what they got, up to kOwnerChain untyped steps.
std::vector<uint32_t> owners(const HeapSnapshot& snap, const ChunkIndex& index,
                             const Edges& edges) {
    std::vector<uint32_t> owner(index.size(), 0);
    std::vector<uint32_t> frontier, next;
    auto give = [&](uint32_t t, uint32_t type) {
        uint32_t before = owner[t];
        owner[t] = before == 0 || before == type ? type : kAmbiguous;
        // Only an untyped chunk passes its owner on, and only when it changed.
        if (owner[t] != before && snap.chunks[index.chunk(t)].type == 0) next.push_back(t);
    };
    for (uint32_t p = 0; p < index.size(); ++p) {
        uint32_t type = snap.chunks[index.chunk(p)].type;
        if (type == 0) continue;
        for (size_t k = edges.begin(p); k < edges.end(p); ++k) give(edges.targets[k], type);
    }
    for (int step = 0; step < kOwnerChain && !next.empty(); ++step) {
        frontier.swap(next);
        next.clear();
        std::sort(frontier.begin(), frontier.end());
        frontier.erase(std::unique(frontier.begin(), frontier.end()), frontier.end());
        for (uint32_t p : frontier)
            for (size_t k = edges.begin(p); k < edges.end(p); ++k) give(edges.targets[k], owner[p]);
    }
    return owner;
}

}  // namespace

void analyze_reach(HeapSnapshot& snap, MemoryReader& contents, const ReachInput& in) {
    auto t0 = std::chrono::steady_clock::now();
    ReachStats& st = snap.reach;
    ChunkIndex index(snap);
    Edges edges = build_edges(index, contents);
    st.chunk_bytes = edges.bytes;
    st.edges = edges.targets.size();
    st.root_ranges = in.roots.size();
    st.root_words = in.root_words.size();
    if (edges.unreadable)
        snap.problems.push_back(fmt::format(
            "reachability: {} chunks were not in the copy; what only they point to may show as "
            "leaked",
            edges.unreadable));
    std::vector<uint8_t> marked = mark(index, edges, in, &st.root_bytes);
    std::vector<uint32_t> owner = owners(snap, index, edges);

    // Leaked chunks pointed to by another leaked chunk are "indirectly" leaked.
    std::vector<uint8_t> from_leaked(index.size(), 0);
    for (uint32_t p = 0; p < index.size(); ++p)
        if (!marked[p])
            for (size_t k = edges.begin(p); k < edges.end(p); ++k)
                from_leaked[edges.targets[k]] = 1;
    for (uint32_t p = 0; p < index.size(); ++p) {
        HeapChunk& c = snap.chunks[index.chunk(p)];
        c.owner = owner[p] == kAmbiguous ? 0 : owner[p];
        st.owned_chunks += c.owner ? 1 : 0;
        if (marked[p]) {
            c.reach = ChunkReach::Reachable;
            ++st.reachable_chunks;
        } else {
            c.reach = from_leaked[p] ? ChunkReach::LeakedIndirect : ChunkReach::Leaked;
            ++st.leaked_chunks;
            st.leaked_bytes += c.chunk_size;
        }
    }
    st.done = true;
    st.scan_ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count());
}

}  // namespace pmprof
