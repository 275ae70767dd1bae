// ProcessMemory on this test process's own memory, FakeMemory edges.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "pmprof/ptrace/memory.h"

using namespace pmprof;

namespace {

/// Two pages: the first readable and filled with a pattern, the second unmapped (PROT_NONE would
/// not do: /proc/PID/mem reads with FOLL_FORCE and returns PROT_NONE pages).
struct GuardedPages {
    size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    uint8_t* base = nullptr;

    GuardedPages() {
        void* p =
            ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(p != MAP_FAILED);
        base = static_cast<uint8_t*>(p);
        for (size_t i = 0; i < page; ++i) base[i] = static_cast<uint8_t>(i * 7 + 3);
        REQUIRE(::munmap(base + page, page) == 0);
    }
    ~GuardedPages() { ::munmap(base, page); }
    GuardedPages(const GuardedPages&) = delete;
    GuardedPages& operator=(const GuardedPages&) = delete;

    uint64_t address(size_t offset) const { return reinterpret_cast<uintptr_t>(base) + offset; }
};

}  // namespace

TEST_CASE("ProcessMemory reads this process's memory", "[unit][memory]") {
    std::vector<uint8_t> source(3 * 4096 + 17);
    std::iota(source.begin(), source.end(), uint8_t{1});
    ProcessMemory mem(::getpid());
    std::vector<uint8_t> copy(source.size());
    auto r = mem.read(reinterpret_cast<uintptr_t>(source.data()), copy.data(), copy.size());
    REQUIRE(r.ok());
    CHECK(*r == source.size());
    CHECK(copy == source);

    uint64_t value = 0x1122334455667788ULL;
    uint64_t out = 0;
    CHECK(mem.read_value(reinterpret_cast<uintptr_t>(&value), &out));
    CHECK(out == value);

    auto zero = mem.read(reinterpret_cast<uintptr_t>(&value), &out, 0);
    REQUIRE(zero.ok());
    CHECK(*zero == 0);
}

TEST_CASE("ProcessMemory: a read into an unreadable page is short", "[unit][memory]") {
    GuardedPages pages;
    ProcessMemory mem(::getpid());
    std::vector<uint8_t> out(3000, 0);
    // 1000 readable bytes at the end of the first page, then the unmapped page.
    auto r = mem.read(pages.address(pages.page - 1000), out.data(), out.size());
    REQUIRE(r.ok());
    CHECK(*r == 1000);
    CHECK(std::memcmp(out.data(), pages.base + pages.page - 1000, 1000) == 0);

    // Nothing readable: an error that names the call, the pid and the address.
    auto bad = mem.read(pages.address(pages.page), out.data(), 16);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message.find("process_vm_readv pid") != std::string::npos);
    CHECK(bad.error().errno_value != 0);
    uint32_t word = 0;
    CHECK_FALSE(mem.read_value(pages.address(pages.page - 2), &word));
}

TEST_CASE("ProcessMemory of a process that does not exist", "[unit][memory]") {
    ProcessMemory mem(0x7ffffff0);
    uint64_t out = 0;
    auto r = mem.read(0x400000, &out, sizeof out);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().errno_value == ESRCH);
}

TEST_CASE("FakeMemory: ranges, short reads, holes, adjacency", "[unit][memory]") {
    FakeMemory mem;
    mem.add(0x1000, {1, 2, 3, 4});
    mem.add(0x1004, {5, 6});           // adjacent: reads continue into it
    mem.add(0x2000, {9, 9, 9, 9, 9});  // after a hole

    uint8_t buf[16] = {};
    auto all = mem.read(0x1000, buf, 6);
    REQUIRE(all.ok());
    CHECK(*all == 6);
    CHECK(buf[0] == 1);
    CHECK(buf[5] == 6);

    auto middle = mem.read(0x1003, buf, 2);
    REQUIRE(middle.ok());
    CHECK(*middle == 2);
    CHECK(buf[0] == 4);
    CHECK(buf[1] == 5);

    auto short_read = mem.read(0x1002, buf, 16);  // stops at the hole after 0x1006
    REQUIRE(short_read.ok());
    CHECK(*short_read == 4);

    auto hole = mem.read(0x1006, buf, 1);
    REQUIRE_FALSE(hole.ok());
    CHECK(hole.error().message.find("0x1006") != std::string::npos);
    CHECK_FALSE(mem.read(0xfff, buf, 4).ok());  // starts just before the first range
    CHECK_FALSE(mem.read(0, buf, 1).ok());
    CHECK_FALSE(mem.read(~uint64_t{0}, buf, 4).ok());

    uint32_t word = 0;
    CHECK(mem.read_value(0x2001, &word));
    CHECK(word == 0x09090909u);
    CHECK_FALSE(mem.read_value(0x2002, &word));  // only 3 bytes left

    auto empty = mem.read(0x1000, buf, 0);
    REQUIRE(empty.ok());
    CHECK(*empty == 0);
}

TEST_CASE("FakeMemory: an empty fake has nothing", "[unit][memory]") {
    FakeMemory mem;
    uint8_t b = 0;
    CHECK_FALSE(mem.read(0x1000, &b, 1).ok());
}
