// The glibc 2.36 heap walker over FakeMemory: a hand-built main arena with a tcache, a fastbin,
// the unsorted bin, live chunks and top; then attribution, profile and growth writers.
#include <catch2/catch.hpp>

#include <cstring>

#include "pmprof/heap/heap.h"
#include "pmprof/output/pprof.h"

using namespace pmprof;

namespace {

constexpr uint64_t kArena = 0x10000, kMp = 0x11000, kHeap = 0x100000, kHeapSize = 0x10000;
constexpr uint64_t kVtable = 0x20000;

struct FakeHeap {
    GlibcMallocLayout l = *glibc_layout_for("2.36");
    std::vector<uint8_t> arena = std::vector<uint8_t>(0x1000);
    std::vector<uint8_t> mp = std::vector<uint8_t>(0x100);
    std::vector<uint8_t> heap = std::vector<uint8_t>(kHeapSize);
    uint64_t top = 0;

    static void put(std::vector<uint8_t>& b, uint64_t off, uint64_t v) {
        std::memcpy(&b[off], &v, 8);
    }
    void heap64(uint64_t addr, uint64_t v) { put(heap, addr - kHeap, v); }
    void heap16(uint64_t addr, uint16_t v) { std::memcpy(&heap[addr - kHeap], &v, 2); }
    void chunk(uint64_t addr, uint64_t size, bool prev_inuse) {
        heap64(addr + 8, size | (prev_inuse ? 1 : 0));
    }

    // Layout: tcache struct, live A (typed), free B (unsorted), C (tcache), D (fastbin), live E,
    // top. Addresses are those of the chunks.
    uint64_t tc = kHeap, a = tc + 0x290, b = a + 0x30, c = b + 0x100, d = c + 0x40, e = d + 0x20;

    FakeHeap() {
        for (int i = 1; i < l.bin_count; ++i) {  // empty bins point at themselves
            uint64_t slot = l.arena_bins + static_cast<uint64_t>(i - 1) * 16;
            put(arena, slot, kArena + slot - 16);
            put(arena, slot + 8, kArena + slot - 16);
        }
        put(arena, l.arena_next, kArena);
        put(arena, l.arena_system_mem, kHeapSize);
        put(mp, l.mp_sbrk_base, kHeap);
        put(mp, l.mp_tcache_count, 7);

        chunk(tc, 0x290, true);
        chunk(a, 0x30, true);
        heap64(a + 16, kVtable + 16);  // vptr of a polymorphic object
        chunk(b, 0x100, true);
        put(arena, l.arena_bins, b);  // unsorted bin (bin 1): fd and bk -> b
        put(arena, l.arena_bins + 8, b);
        heap64(b + 16, kArena + l.arena_bins - 16);
        heap64(b + 24, kArena + l.arena_bins - 16);
        chunk(c, 0x40, false);  // b is free: c's PREV_INUSE is clear
        heap64(c, 0x100);
        heap16(tc + 16 + 2 * 2, 1);  // counts[2] = 1 (chunk 0x40)
        heap64(tc + 16 + l.tcache_entries + 2 * 8, c + 16);
        heap64(c + 16, (c + 16) >> 12);  // safe-linked NULL
        heap64(c + 24, 0x5eed);          // tcache_key
        chunk(d, 0x20, true);
        put(arena, l.arena_fastbins, d);
        heap64(d + 16, (d + 16) >> 12);
        chunk(e, 0x50, true);
        top = e + 0x50;
        chunk(top, kHeap + kHeapSize - top, true);
        put(arena, l.arena_top, top);
    }

    FakeMemory memory() const {
        FakeMemory m;
        m.add(kArena, arena);
        m.add(kMp, mp);
        m.add(kHeap, heap);
        return m;
    }
    std::vector<MemoryMap> maps() const {
        MemoryMap libc{kArena, kArena + 0x2000, "rw-p", 0, "00:00", 1, "/lib/libc.so.6", false};
        MemoryMap h{kHeap, kHeap + kHeapSize, "rw-p", 0, "00:00", 0, "[heap]", false};
        return {libc, h};
    }
    MallocRoots roots() const { return {kArena, kMp, "test"}; }
};

}  // namespace

TEST_CASE("heap walker reproduces mallinfo2 and classifies every chunk", "[unit][heap]") {
    FakeHeap f;
    FakeMemory mem = f.memory();
    HeapSnapshot s = walk_glibc_heap(mem, f.maps(), f.l, f.roots());
    INFO((s.problems.empty() ? std::string() : s.problems[0]));
    REQUIRE_FALSE(s.partial());
    REQUIRE(s.arenas.size() == 1);
    const ArenaSummary& a = s.arenas[0];
    uint64_t top_size = kHeap + kHeapSize - f.top;
    CHECK(a.top_size == top_size);
    CHECK(a.bin_chunks == 1);
    CHECK(a.bin_bytes == 0x100);
    CHECK(a.fast_chunks == 1);
    CHECK(a.tcache_chunks == 1);
    CHECK(a.live_chunks == 2);
    CHECK(a.live_bytes == 0x30 + 0x50);
    CHECK(a.internal_chunks == 1);
    CHECK(a.walked_free_chunks == 1);
    MallInfo2 want;
    want.arena = kHeapSize;
    want.ordblks = 2;  // top + one binned chunk
    want.smblks = 1;
    want.fsmblks = 0x20;
    want.fordblks = top_size + 0x20 + 0x100;
    want.uordblks = kHeapSize - want.fordblks;
    want.keepcost = top_size;
    CHECK(s.mallinfo == want);
    REQUIRE(s.chunks.size() == 3);
    CHECK(s.chunks[0].internal);  // the tcache_perthread_struct
    CHECK(s.chunks[1].chunk_address == f.a);
    CHECK(s.chunks[1].word0 == kVtable + 16);
    CHECK(s.chunks[2].chunk_address == f.e);
}

TEST_CASE("heap walker skips an arena whose lock is held", "[unit][heap]") {
    FakeHeap f;
    FakeHeap::put(f.arena, f.l.arena_mutex, 1);
    FakeMemory mem = f.memory();
    HeapSnapshot s = walk_glibc_heap(mem, f.maps(), f.l, f.roots());
    CHECK(s.partial());
    CHECK(s.locked_arenas == 1);
    CHECK(s.arenas.at(0).skipped);
    CHECK(s.chunks.empty());
}

TEST_CASE("heap walker stops at a corrupt chunk and says where", "[unit][heap]") {
    FakeHeap f;
    f.chunk(f.e, 0x123456, true);  // runs past the heap
    FakeMemory mem = f.memory();
    HeapSnapshot s = walk_glibc_heap(mem, f.maps(), f.l, f.roots());
    REQUIRE(s.partial());
    CHECK(s.problems[0].find("0x100420") != std::string::npos);
    CHECK(s.arenas.at(0).skipped);
}

TEST_CASE("heap walker refuses pointers outside the mappings", "[unit][heap]") {
    FakeHeap f;
    FakeHeap::put(f.arena, f.l.arena_fastbins, 0xdead0000);
    FakeMemory mem = f.memory();
    HeapSnapshot s = walk_glibc_heap(mem, f.maps(), f.l, f.roots());
    CHECK(s.partial());
    CHECK(s.arenas.at(0).fast_chunks == 0);
}

TEST_CASE("only verified glibc versions have a layout", "[unit][heap]") {
    CHECK(glibc_layout_for("2.36").ok());
    auto r = glibc_layout_for("2.35");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("2.35") != std::string::npos);
}

TEST_CASE("types come from vtables, array cookies and make_shared blocks", "[unit][heap]") {
    HeapSnapshot s;
    auto add = [&](uint64_t w0, uint64_t w1, uint64_t size) {
        HeapChunk c;
        c.chunk_address = 0x1000 * (s.chunks.size() + 1);
        c.chunk_size = size;
        c.word0 = w0;
        c.word1 = w1;
        s.chunks.push_back(c);
    };
    add(0x5010, 0, 0x30);  // Session
    add(0x5010, 0, 0x30);
    add(3, 0x5010, 0x60);  // new Session[3]
    add(0x6010, 0, 0x40);  // make_shared<Plain>
    add(0x5000, 0, 0x30);  // points at offset-to-top: not a vptr
    add(0x7777, 0, 0x30);  // no vtable
    std::vector<VtableRange> vt = {
        {0x5000, 0x5020, "Session"},
        {0x6000, 0x6020,
         "std::_Sp_counted_ptr_inplace<Plain, std::allocator<Plain>, (__gnu_cxx::_Lock_policy)2>"}};
    attribute_types(s, vt, nullptr, {});
    auto groups = heap_by_type(s, true);
    auto find = [&](const std::string& n) {
        for (const HeapGroup& g : groups)
            if (g.name == n) return g;
        return HeapGroup{};
    };
    CHECK(find("Session").objects == 5);
    CHECK(find("Session").bytes == 0x30 + 0x30 + 0x60);
    CHECK(find("Plain").objects == 1);
    CHECK(find("[48 B]").objects == 2);
    CHECK(size_class_label(0x30) == "[48 B]");
    CHECK(size_class_label(5000) == "[4 KiB-8 KiB)");
}

TEST_CASE("heap profile has pprof heap sample types and grows as expected", "[unit][heap]") {
    HeapSnapshot s;
    s.type_names.push_back("Leak");
    s.arenas.resize(3);
    HeapChunk c;
    c.chunk_size = 64;
    c.arena = 2;
    c.type = 1;
    s.chunks.push_back(c);
    Profile base = heap_to_profile(s, true);
    REQUIRE(base.sample_types.size() == 2);
    CHECK(base.sample_types[0] == ValueType{"inuse_objects", "count"});
    CHECK(base.sample_types[1] == ValueType{"inuse_space", "bytes"});
    REQUIRE(base.samples.size() == 1);
    const Sample& smp = base.samples[0];
    REQUIRE(smp.location_ids.size() == 3);
    CHECK(base.function(base.location(smp.location_ids[0])->lines[0].function_id)->name == "Leak");
    CHECK(base.function(base.location(smp.location_ids[1])->lines[0].function_id)->name ==
          "[arena 2]");
    CHECK(base.function(base.location(smp.location_ids[2])->lines[0].function_id)->name ==
          "[heap]");

    for (int i = 0; i < 9; ++i) s.chunks.push_back(c);
    Profile now = heap_to_profile(s, true);
    auto gz = encode_pprof_gzip(base);
    REQUIRE(gz.ok());
    auto decoded = decode_pprof(*gz);
    REQUIRE(decoded.ok());
    auto rows = heap_growth(*decoded, now);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].name == "Leak");
    CHECK(rows[0].objects_delta == 9);
    CHECK(rows[0].bytes_delta == 9 * 64);
    CHECK(format_heap_growth(rows, 10).find("+576") != std::string::npos);
}
