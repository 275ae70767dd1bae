// The cached-rule walk (src/unwind/cfi.h) on hand-built rules and stacks: the frames and their
// exact flags, where it must hand a stack to libdwfl, the guard's endings, and the bounded cache.
// tests/integration/test_unwind_cfi.cpp compares it with libdwfl on real captures.
#include <catch2/catch.hpp>

#include <cstring>
#include <map>

#include "pmprof/ptrace/memory.h"
#include "unwind/cfi.h"

using namespace pmprof;

namespace {

constexpr uint64_t kStackBase = 0x7fff0000;

CfiRule simple(uint8_t cfa_reg, int32_t cfa_offset, CfiRule::Fp fp = CfiRule::Fp::Same,
               int32_t fp_offset = 0) {
    CfiRule r;
    r.kind = CfiRule::Kind::Simple;
    r.cfa_reg = cfa_reg;
    r.cfa_offset = cfa_offset;
    r.ra_offset = -8;  // x86_64: the call pushed the return address just below the CFA
    r.fp = fp;
    r.fp_offset = fp_offset;
    return r;
}

CfiRule of_kind(CfiRule::Kind kind) {
    CfiRule r;
    r.kind = kind;
    return r;
}

/// Rules by lookup pc (a pc without one has no CFI) and memory outside the stack copy.
class FakeSource final : public CfiWalker::Source {
  public:
    std::map<uint64_t, CfiRule> rules;
    FakeMemory memory;
    int rule_calls = 0;

    CfiRule rule(uint64_t lookup_pc) override {
        ++rule_calls;
        auto it = rules.find(lookup_pc);
        return it != rules.end() ? it->second : of_kind(CfiRule::Kind::NoCfi);
    }
    bool read_word(uint64_t address, uint64_t* out) override {
        return memory.read_value(address, out);
    }
};

/// A capture whose 4 KiB stack copy starts at kStackBase; sp and rbp are offsets into it.
ThreadCapture capture_at(uint64_t pc, uint64_t sp_offset, uint64_t fp_offset) {
    ThreadCapture c;
    c.tid = 1;
    c.ok = true;
    c.regs.dwarf[Registers::kPc] = pc;
    c.regs.dwarf[Registers::kSp] = kStackBase + sp_offset;
    c.regs.dwarf[Registers::kFp] = kStackBase + fp_offset;
    c.stack.base = kStackBase;
    c.stack.bytes.resize(4096);
    return c;
}

void put(ThreadCapture& c, uint64_t offset, uint64_t value) {
    std::memcpy(c.stack.bytes.data() + offset, &value, sizeof value);
}

/// leaf (0x1000, CFA = rsp + 16) <- middle (returns to 0x2005; CFA = rbp + 16, rbp saved at
/// CFA - 16) <- root (returns to 0x3005; rip undefined).
struct ThreeFrames {
    FakeSource source;
    ThreadCapture capture = capture_at(0x1000, 0x100, 0x200);

    ThreeFrames() {
        source.rules[0x1000] = simple(Registers::kSp, 16);
        source.rules[0x2004] = simple(Registers::kFp, 16, CfiRule::Fp::Saved, -16);
        source.rules[0x3004] = of_kind(CfiRule::Kind::Outermost);
        put(capture, 0x108, 0x2005);              // leaf's CFA - 8
        put(capture, 0x208, 0x3005);              // middle's CFA (rbp + 16) - 8
        put(capture, 0x200, kStackBase + 0x300);  // middle's saved rbp
    }
};

}  // namespace

TEST_CASE("cached walk: frames, exact flags and the outermost frame", "[unit][unwind]") {
    ThreeFrames t;
    CfiWalker walker(t.source, 64);
    RawStack out;
    REQUIRE(walker.walk(t.capture, 128, &out) == CfiWalker::End::Complete);
    const std::vector<RawFrame> want{{0x1000, true}, {0x2005, false}, {0x3005, false}};
    CHECK(out.frames == want);
    CHECK_FALSE(out.truncated);
    UnwindStats s = walker.stats();
    CHECK(s.rule_misses == 3);
    CHECK(s.rule_hits == 0);
    CHECK(s.cached_walks == 1);
    CHECK(s.cached_rules == 3);

    SECTION("a second walk only hits the cache") {
        RawStack again;
        REQUIRE(walker.walk(t.capture, 128, &again) == CfiWalker::End::Complete);
        CHECK(again.frames == want);
        CHECK(walker.stats().rule_hits == 3);
        CHECK(walker.stats().rule_misses == 3);
        CHECK(t.source.rule_calls == 3);
    }
    SECTION("max depth ends it as the guard says") {
        RawStack cut;
        REQUIRE(walker.walk(t.capture, 2, &cut) == CfiWalker::End::Stopped);
        CHECK(cut.frames.size() == 2);
        CHECK(cut.truncated);
        CHECK(cut.stop_reason == "max depth 2 reached");
    }
    SECTION("a return address outside the copy is read through the source") {
        ThreadCapture c = t.capture;
        c.stack.bytes.resize(0x108);  // the leaf's return address is past the end now
        RawStack r1;
        CHECK(walker.walk(c, 128, &r1) == CfiWalker::End::Fallback);
        CHECK(walker.stats().fallback_walk == 1);
        std::vector<uint8_t> word(8);
        const uint64_t ret = 0x2005;
        std::memcpy(word.data(), &ret, 8);
        t.source.memory.add(kStackBase + 0x108, word);
        std::vector<uint8_t> middle(16);  // saved rbp, then the return address
        const uint64_t saved[2] = {kStackBase + 0x300, 0x3005};
        std::memcpy(middle.data(), saved, 16);
        t.source.memory.add(kStackBase + 0x200, middle);
        RawStack r2;
        CHECK(walker.walk(c, 128, &r2) == CfiWalker::End::Complete);
        CHECK(r2.frames == want);
    }
}

TEST_CASE("cached walk: what only libdwfl may decide falls back", "[unit][unwind]") {
    ThreeFrames t;
    CfiWalker walker(t.source, 64);
    RawStack out;

    SECTION("a rule that is not simple, cached as such") {
        t.source.rules[0x2004] = of_kind(CfiRule::Kind::SignalFrame);
        CHECK(walker.walk(t.capture, 128, &out) == CfiWalker::End::Fallback);
        RawStack again;
        CHECK(walker.walk(t.capture, 128, &again) == CfiWalker::End::Fallback);
        UnwindStats s = walker.stats();
        CHECK(s.fallbacks == 2);
        CHECK(s.fallback_rule == 2);
        CHECK(s.rules_not_simple == 1);
        CHECK(t.source.rule_calls == 2);  // 0x1000 and 0x2004, once each
        CHECK(s.cached_walks == 0);
    }
    SECTION("a pc without CFI") {
        t.capture.regs.dwarf[Registers::kPc] = 0x5000;
        CHECK(walker.walk(t.capture, 128, &out) == CfiWalker::End::Fallback);
        CHECK(walker.stats().fallback_rule == 1);
    }
    SECTION("a CFA from an rbp that is no longer known") {
        t.source.rules[0x1000] = simple(Registers::kSp, 16, CfiRule::Fp::Undefined);
        CHECK(walker.walk(t.capture, 128, &out) == CfiWalker::End::Fallback);
        CHECK(walker.stats().fallback_walk == 1);
    }
    SECTION("a return address of 0") {
        put(t.capture, 0x208, 0);
        CHECK(walker.walk(t.capture, 128, &out) == CfiWalker::End::Fallback);
        CHECK(walker.stats().fallback_walk == 1);
    }
}

TEST_CASE("cached walk: a loop ends at the guard", "[unit][unwind]") {
    FakeSource source;
    // CFA = rsp + 8 and the caller's rsp = CFA - 8: sp never grows.
    CfiRule stuck = simple(Registers::kSp, 8);
    stuck.sp_offset = -8;
    source.rules[0x4000] = stuck;
    ThreadCapture c = capture_at(0x4001, 0x100, 0x200);
    source.rules[0x4001] = stuck;
    put(c, 0x100, 0x4001);
    CfiWalker walker(source, 64);
    RawStack out;
    REQUIRE(walker.walk(c, 128, &out) == CfiWalker::End::Stopped);
    CHECK(out.truncated);
    CHECK(out.frames.size() == 1);
    CHECK(out.stop_reason.find("did not grow") != std::string::npos);
}

TEST_CASE("rule cache: bounded, starts over when full, keeps working", "[unit][unwind]") {
    CfiRuleCache cache(8);
    const CfiRule r = simple(Registers::kSp, 16);
    for (uint64_t pc = 0x1000; pc < 0x1000 + 1000; ++pc) {
        cache.insert(pc, r);
        REQUIRE(cache.find(pc) != nullptr);
        REQUIRE(cache.size() <= 8);
    }
    CHECK(cache.clears() > 100);
    CHECK(cache.find(0x1000) == nullptr);
    CHECK(cache.find(0x1000 + 999)->cfa_offset == 16);

    SECTION("through the walker") {
        FakeSource source;
        CfiWalker walker(source, 8);
        for (uint64_t i = 0; i < 100; ++i) {
            const uint64_t leaf = 0x10000 + 0x100 * i;
            source.rules[leaf] = simple(Registers::kSp, 16);
            source.rules[leaf + 0x10] = of_kind(CfiRule::Kind::Outermost);
            ThreadCapture c = capture_at(leaf, 0x100, 0x200);
            put(c, 0x108, leaf + 0x11);
            RawStack out;
            REQUIRE(walker.walk(c, 128, &out) == CfiWalker::End::Complete);
            REQUIRE(out.frames.size() == 2);
        }
        CHECK(walker.stats().cache_clears > 0);
        CHECK(walker.stats().cached_rules <= 8);
    }
}
