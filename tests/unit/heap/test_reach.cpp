// Reachability and ownership (analyze_reach) over a hand-built heap in FakeMemory, the root
// ranges chosen from a maps table, the copy store, and what the writers show of it.
#include <catch2/catch.hpp>

#include <cstring>

#include "heap/cached_reader.h"
#include "pmprof/heap/heap.h"

using namespace pmprof;

namespace {

constexpr uint64_t kHeap = 0x100000;

/// A heap of consecutive 0x40-byte chunks (arena 0) whose words are set by hand.
struct HandHeap {
    HeapSnapshot snap;
    std::vector<uint8_t> bytes = std::vector<uint8_t>(0x1000);

    HandHeap() { snap.type_names = {"", "Session", "Other"}; }

    /// Adds a chunk at kHeap + 0x40 * n (n = number of chunks so far); returns its user address.
    uint64_t chunk(uint32_t type, uint64_t size = 0x40) {
        uint64_t at = kHeap + 0x10 + 0x40 * snap.chunks.size();
        HeapChunk c;
        c.chunk_address = at;
        c.chunk_size = size;
        c.type = type;
        snap.chunks.push_back(c);
        return at + 16;
    }
    /// Stores `value` at user address `user` + `offset`.
    void point(uint64_t user, uint64_t offset, uint64_t value) {
        std::memcpy(&bytes[user + offset - kHeap], &value, 8);
    }
    FakeMemory memory() const {
        FakeMemory m;
        m.add(kHeap, bytes);
        return m;
    }
    const HeapChunk& at(size_t i) const { return snap.chunks.at(i); }
};

ReachInput roots_pointing_at(std::vector<uint64_t> words) {
    ReachInput in;
    MemoryCopy stack{0x7000, std::vector<uint8_t>(8 * words.size() + 8)};
    // Misaligned start: the scan begins at the first aligned word.
    stack.address = 0x7004;
    for (size_t i = 0; i < words.size(); ++i) std::memcpy(&stack.bytes[4 + 8 * i], &words[i], 8);
    in.roots.push_back(std::move(stack));
    return in;
}

}  // namespace

TEST_CASE("reach: A (typed) -> B, C; C -> D; E unreached", "[unit][heap][reach]") {
    HandHeap h;
    uint64_t a = h.chunk(1), b = h.chunk(0), c = h.chunk(0), d = h.chunk(0), e = h.chunk(0);
    h.point(a, 8, b);
    h.point(a, 16, c + 24);  // an interior pointer counts
    h.point(c, 0, d);
    h.point(c, 8, c);       // a pointer to itself is no edge
    h.point(e, 0, 0x1234);  // not a pointer
    FakeMemory mem = h.memory();
    analyze_reach(h.snap, mem, roots_pointing_at({a}));

    REQUIRE(h.snap.reach.done);
    CHECK(h.at(0).reach == ChunkReach::Reachable);
    CHECK(h.at(1).reach == ChunkReach::Reachable);
    CHECK(h.at(2).reach == ChunkReach::Reachable);
    CHECK(h.at(3).reach == ChunkReach::Reachable);
    CHECK(h.at(4).reach == ChunkReach::Leaked);
    CHECK(h.at(0).owner == 0);
    CHECK(h.at(1).owner == 1);  // B owned by Session
    CHECK(h.at(2).owner == 1);  // C owned by Session
    CHECK(h.at(3).owner == 1);  // D: through the untyped C
    CHECK(h.at(4).owner == 0);
    CHECK(h.snap.reach.leaked_chunks == 1);
    CHECK(h.snap.reach.leaked_bytes == 0x40);
    CHECK(h.snap.reach.edges == 3);
    CHECK(h.snap.reach.owned_chunks == 3);

    auto leaked = heap_leaked(h.snap, true);
    REQUIRE(leaked.size() == 1);
    CHECK(leaked[0].name == "[64 B]");
    auto owned = heap_owned(h.snap);
    REQUIRE(owned.size() == 1);
    CHECK(owned[0].name == "[64 B] owned by Session");
    CHECK(owned[0].objects == 3);
}

TEST_CASE("reach: two owner types make no owner; registers are roots", "[unit][heap][reach]") {
    HandHeap h;
    uint64_t a = h.chunk(1), f = h.chunk(2), b = h.chunk(0), g = h.chunk(0);
    h.point(a, 0, b);
    h.point(f, 0, b);
    h.point(f, 8, g);
    FakeMemory mem = h.memory();
    ReachInput in;
    in.root_words = {0, f, a + 0x20};
    analyze_reach(h.snap, mem, in);
    CHECK(h.at(2).owner == 0);  // Session and Other both point to B
    CHECK(h.at(3).owner == 2);  // G only through Other
    for (const HeapChunk& c : h.snap.chunks) CHECK(c.reach == ChunkReach::Reachable);
}

TEST_CASE("reach: ownership passes through at most kOwnerChain untyped chunks",
          "[unit][heap][reach]") {
    HandHeap h;
    std::vector<uint64_t> users{h.chunk(1)};
    for (int i = 0; i <= kOwnerChain + 1; ++i) users.push_back(h.chunk(0));
    for (size_t i = 0; i + 1 < users.size(); ++i) h.point(users[i], 0, users[i + 1]);
    FakeMemory mem = h.memory();
    analyze_reach(h.snap, mem, roots_pointing_at({users[0]}));
    // users[1] gets the owner from the typed chunk, then kOwnerChain more steps.
    for (size_t i = 1; i < users.size(); ++i) {
        INFO(i);
        CHECK(h.at(i).owner == (i <= static_cast<size_t>(kOwnerChain) + 1 ? 1u : 0u));
    }
}

TEST_CASE("reach: leaked chunks pointed to from leaked ones are indirect; malloc's header "
          "pointers keep nothing alive",
          "[unit][heap][reach]") {
    HandHeap h;
    uint64_t e = h.chunk(1), e2 = h.chunk(0), last = h.chunk(0);
    h.point(e, 0, e2);
    FakeMemory mem = h.memory();
    // main_arena.top holds the address of the chunk after `last`, which is last's final word.
    uint64_t next_header = h.at(2).chunk_address + h.at(2).chunk_size;
    analyze_reach(h.snap, mem, roots_pointing_at({next_header, e - 16}));
    CHECK(h.at(0).reach == ChunkReach::Leaked);  // e - 16 is e's header, not its bytes
    CHECK(h.at(1).reach == ChunkReach::LeakedIndirect);
    CHECK(h.at(1).owner == 1);
    CHECK(h.at(2).reach == ChunkReach::Leaked);
    (void)last;
    CHECK(h.snap.reach.leaked_chunks == 3);
    auto leaked = heap_leaked(h.snap, true);
    REQUIRE(leaked.size() == 3);
    bool owned_row = false;
    for (const HeapGroup& g : leaked) owned_row = owned_row || g.name == "[64 B] owned by Session";
    CHECK(owned_row);
}

TEST_CASE("reach: the last word of an arena chunk (next prev_size) is scanned",
          "[unit][heap][reach]") {
    HandHeap h;
    uint64_t a = h.chunk(0, 0x40), b = h.chunk(0);
    // a's usable bytes end at chunk + size + 8: the next chunk's prev_size word.
    h.point(a, 0x40 - 16, b);
    FakeMemory mem = h.memory();
    analyze_reach(h.snap, mem, roots_pointing_at({a}));
    CHECK(h.at(1).reach == ChunkReach::Reachable);
}

TEST_CASE("reach: writers show leaks, owners and pprof labels", "[unit][heap][reach]") {
    HandHeap h;
    uint64_t a = h.chunk(1), b = h.chunk(0), e = h.chunk(2);
    h.point(a, 0, b);
    (void)e;
    h.snap.arenas.resize(1);
    FakeMemory mem = h.memory();
    analyze_reach(h.snap, mem, roots_pointing_at({a}));
    std::string text = format_heap_text(h.snap, true, 10);
    CHECK(text.find("possibly leaked: 1 chunks, 64 bytes") != std::string::npos);
    CHECK(text.find("+ [64 B] owned by Session") != std::string::npos);
    std::string json = format_heap_json(h.snap, true);
    CHECK(json.find("\"leaked_chunks\": 1") != std::string::npos);
    size_t leaked_array = json.find("\"leaked\": [");
    REQUIRE(leaked_array != std::string::npos);
    CHECK(json.find("{\"name\": \"Other\", \"objects\": 1, \"bytes\": 64}", leaked_array) <
          json.find("\n  ]", leaked_array));
    CHECK(json.find("\"[64 B] owned by Session\"") != std::string::npos);

    Profile p = heap_to_profile(h.snap, true);
    bool leaked_other = false, owned_b = false;
    for (const Sample& s : p.samples) {
        std::string leaf = p.function(p.location(s.location_ids[0])->lines[0].function_id)->name;
        for (const Label& l : s.labels) {
            leaked_other =
                leaked_other || (leaf == "Other" && l.key == "reach" && l.str == "leaked");
            owned_b = owned_b || (leaf == "[64 B]" && l.key == "owner" && l.str == "Session");
        }
    }
    CHECK(leaked_other);
    CHECK(owned_b);
}

TEST_CASE("reach: roots are writable memory outside malloc's heaps, stacks from sp",
          "[unit][heap][reach]") {
    auto map = [](uint64_t lo, uint64_t hi, const char* perms, const char* path) {
        return MemoryMap{lo, hi, perms, 0, "00:00", 0, path, false};
    };
    std::vector<MemoryMap> maps = {
        map(0x0800, 0x1000, "r-xp", "/bin/app"),
        map(0x1000, 0x2000, "r--p", "/bin/app"),
        map(0x2000, 0x3000, "rw-p", "/bin/app"),  // .data
        map(0x3000, 0x4000, "rw-p", ""),          // .bss
        map(0x10000, 0x20000, "rw-p", "[heap]"),  // holds arena chunks
        map(0x40000, 0x50000, "rw-p", ""),        // anonymous, holds an mmapped chunk
        map(0x60000, 0x61000, "rw-s", "/dev/dri/card0"),
        map(0x61000, 0x62000, "rw-p", "/data/private.bin"),  // a data file, not a module
        map(0x62000, 0x63000, "rw-s", ""),                   // shared anonymous
        map(0x70000, 0x80000, "rw-p", "[stack]"),
        map(0x90000, 0x91000, "r--p", "[vvar]"),
    };
    HeapSnapshot snap;
    HeapChunk arena_chunk;
    arena_chunk.chunk_address = 0x10010;
    arena_chunk.chunk_size = 0x40;
    HeapChunk mmapped;
    mmapped.chunk_address = 0x42000;
    mmapped.chunk_size = 0x2000;
    mmapped.arena = -1;
    snap.chunks = {arena_chunk, mmapped};
    auto ranges = heap_detail::root_ranges(maps, snap, {0x7f000});
    using R = std::pair<uint64_t, uint64_t>;
    std::vector<R> want = {{0x2000, 0x3000},
                           {0x3000, 0x4000},
                           {0x40000, 0x42000},
                           {0x44000, 0x50000},
                           {0x7f000 - 128, 0x80000}};
    CHECK(ranges == want);
}

TEST_CASE("reach: copied memory reads back by address", "[unit][heap][reach]") {
    FakeMemory target;
    std::vector<uint8_t> bytes(0x3000);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
    target.add(0x10000, bytes);
    heap_detail::CopiedMemory copy;
    copy.reserve(0x1000);
    CHECK(copy.copy_from(target, 0x12000, 0x800) == 0x800);    // in the pool
    CHECK(copy.copy_from(target, 0x10000, 0x1000) == 0x1000);  // too big for what is left
    CHECK(copy.copy_from(target, 0x12f00, 0x400) == 0x100);    // short read: the prefix
    copy.add({0x20000, {1, 2, 3}});
    CHECK(copy.bytes() == 0x800 + 0x1000 + 0x100 + 3);
    uint8_t out[4] = {};
    REQUIRE(copy.read(0x10010, out, 4).ok());
    CHECK(out[0] == static_cast<uint8_t>(0x10 * 7));
    REQUIRE(copy.read(0x12001, out, 1).ok());
    CHECK(out[0] == static_cast<uint8_t>(0x2001 * 7));
    auto r = copy.read(0x20002, out, 4);
    REQUIRE(r.ok());
    CHECK(*r == 1);
    CHECK(out[0] == 3);
    CHECK_FALSE(copy.read(0x11800, out, 1).ok());  // never copied
}
