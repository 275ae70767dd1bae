// The perf backend's record parsing (src/os/perf_events.cpp) on hand-built PERF_RECORD_SAMPLE
// bodies in the kernel's field order, and kallsyms lookups (src/symbolize/kernel.cpp).
#include <catch2/catch.hpp>

#include <bit>
#include <cstring>
#include <vector>

#include "pmprof/os/perf_events.h"
#include "pmprof/symbolize/kernel.h"

using namespace pmprof;

namespace {

struct Body {
    std::vector<uint8_t> bytes;
    void u32(uint32_t v) { put(&v, 4); }
    void u64(uint64_t v) { put(&v, 8); }
    void put(const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        bytes.insert(bytes.end(), b, b + n);
    }
};

/// pid, tid, time, period, [callchain], abi, regs (ax bx cx dx si di bp sp ip r8..r15),
/// stack size, stack, dyn_size.
Body sample_body(bool callchain, size_t stack_size, size_t dyn_size) {
    Body b;
    b.u32(100);
    b.u32(101);
    b.u64(5555);     // time
    b.u64(1001001);  // period
    if (callchain) {
        b.u64(4);
        b.u64(static_cast<uint64_t>(-128));  // PERF_CONTEXT_KERNEL
        b.u64(0xffffffff81000010);
        b.u64(0xffffffff81000020);
        b.u64(static_cast<uint64_t>(-512));  // PERF_CONTEXT_USER
    }
    b.u64(PERF_SAMPLE_REGS_ABI_64);
    for (uint64_t i = 0; i < 17; ++i) b.u64(i == 7 ? 0x7ffd0000 : 1000 + i);  // sp, the rest
    b.u64(stack_size);
    for (size_t i = 0; i < stack_size; ++i) b.bytes.push_back(static_cast<uint8_t>(i));
    if (stack_size) b.u64(dyn_size);
    return b;
}

}  // namespace

TEST_CASE("perf: a sample's registers land in DWARF order, its stack at sp", "[unit][perf]") {
    REQUIRE(std::popcount(perf::kRegsMask) == 17);
    perf::EventConfig cfg;
    Body b = sample_body(false, 64, 48);
    perf::Sample s;
    ThreadCapture cap;
    REQUIRE(perf::parse_sample(b.bytes.data(), b.bytes.size(), cfg, &s, &cap));
    CHECK(s.pid == 100);
    CHECK(s.tid == 101);
    CHECK(s.period == 1001001);
    CHECK(s.user_regs);
    CHECK(cap.ok);
    CHECK(cap.tid == 101);
    // perf order ax(1000) bx(1001) cx(1002) dx(1003) si di bp sp ip(1008) r8(1009)...
    CHECK(cap.regs.dwarf[0] == 1000);  // rax
    CHECK(cap.regs.dwarf[3] == 1001);  // rbx
    CHECK(cap.regs.dwarf[2] == 1002);  // rcx
    CHECK(cap.regs.dwarf[1] == 1003);  // rdx
    CHECK(cap.regs.fp() == 1006);
    CHECK(cap.regs.sp() == 0x7ffd0000);
    CHECK(cap.regs.pc() == 1008);
    CHECK(cap.regs.dwarf[8] == 1009);   // r8
    CHECK(cap.regs.dwarf[15] == 1016);  // r15
    CHECK(cap.stack.base == 0x7ffd0000);
    CHECK(cap.stack.bytes.size() == 48);  // dyn_size: what the kernel could copy
    CHECK(cap.stack.bytes[47] == 47);
}

TEST_CASE("perf: the kernel callchain without its context markers; truncated bodies refused",
          "[unit][perf]") {
    perf::EventConfig cfg;
    cfg.kernel_callchain = true;
    Body b = sample_body(true, 16, 16);
    perf::Sample s;
    ThreadCapture cap;
    REQUIRE(perf::parse_sample(b.bytes.data(), b.bytes.size(), cfg, &s, &cap));
    CHECK(s.kernel_ips == std::vector<uint64_t>{0xffffffff81000010, 0xffffffff81000020});
    CHECK(cap.regs.pc() == 1008);
    for (size_t cut : {size_t{4}, size_t{30}, size_t{100}, b.bytes.size() - 20})
        CHECK_FALSE(perf::parse_sample(b.bytes.data(), cut, cfg, &s, &cap));

    // No user registers (a kernel thread): nothing to unwind.
    Body k;
    k.u32(1);
    k.u32(2);
    k.u64(0);
    k.u64(10);
    k.u64(0);  // callchain: none
    k.u64(PERF_SAMPLE_REGS_ABI_NONE);
    k.u64(0);  // stack size 0: no dyn_size
    REQUIRE(perf::parse_sample(k.bytes.data(), k.bytes.size(), cfg, &s, &cap));
    CHECK_FALSE(s.user_regs);
    CHECK_FALSE(cap.ok);
}

TEST_CASE("kernel symbols: addresses are kernel-half; online cpus are listed", "[unit][perf]") {
    CHECK(is_kernel_address(0xffffffff81000000));
    CHECK_FALSE(is_kernel_address(0x7fff00000000));
    CHECK_FALSE(perf::online_cpus().empty());
}
