// The cached-rule walk (src/unwind/cfi.h): the rule cache and the walk itself. Nothing here knows
// libdw; the rules come from a CfiWalker::Source.
#include "unwind/cfi.h"

#include <algorithm>
#include <cstring>

#include "unwind/walk.h"

namespace pmprof {

// ---- CfiRuleCache ---------------------------------------------------------------------------

namespace {

constexpr size_t kInitialSlots = 256;

size_t round_up_pow2(size_t n) {
    size_t p = 8;
    while (p < n) p *= 2;
    return p;
}

}  // namespace

// Twice as many slots as rules: linear probing stays short at a load factor of 1/2.
CfiRuleCache::CfiRuleCache(size_t max_rules)
    : max_slots_(2 * round_up_pow2(max_rules)), slots_(std::min(kInitialSlots, max_slots_)) {}

size_t CfiRuleCache::index(uint64_t pc) const {
    // Fibonacci hashing: return addresses share their low bits' alignment, the product's high
    // bits do not.
    return static_cast<size_t>((pc * 0x9E3779B97F4A7C15ull) >> 32) & (slots_.size() - 1);
}

const CfiRule* CfiRuleCache::find(uint64_t pc) const {
    const size_t mask = slots_.size() - 1;
    for (size_t i = index(pc);; i = (i + 1) & mask) {
        if (slots_[i].pc == pc) return &slots_[i].rule;
        if (slots_[i].pc == kEmpty) return nullptr;
    }
}

void CfiRuleCache::grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    used_ = 0;
    for (const Slot& s : old)
        if (s.pc != kEmpty) insert(s.pc, s.rule);
}

void CfiRuleCache::insert(uint64_t pc, const CfiRule& rule) {
    if (pc == kEmpty) return;
    if (2 * (used_ + 1) > slots_.size()) {
        if (slots_.size() < max_slots_) {
            grow();
        } else {
            // Full: start over rather than evict one by one; the pcs still in use come back
            // within a few samples.
            slots_.assign(slots_.size(), Slot{});
            used_ = 0;
            ++clears_;
        }
    }
    const size_t mask = slots_.size() - 1;
    size_t i = index(pc);
    while (slots_[i].pc != kEmpty) i = (i + 1) & mask;
    slots_[i].pc = pc;
    slots_[i].rule = rule;
    ++used_;
}

// ---- CfiWalker --------------------------------------------------------------------------------

const CfiRule& CfiWalker::rule(uint64_t lookup_pc) {
    if (const CfiRule* r = cache_.find(lookup_pc)) {
        ++stats_.rule_hits;
        return *r;
    }
    ++stats_.rule_misses;
    scratch_ = source_.rule(lookup_pc);
    if (!scratch_.usable()) ++stats_.rules_not_simple;
    cache_.insert(lookup_pc, scratch_);
    return scratch_;
}

bool CfiWalker::read(const StackCopy& stack, uint64_t address, uint64_t* out) {
    if (stack.contains(address, sizeof *out)) {
        std::memcpy(out, stack.bytes.data() + (address - stack.base), sizeof *out);
        return true;
    }
    return source_.read_word(address, out);
}

// Mirrors libdwfl 0.188 (frame_unwind.c, dwfl_frame_pc) for the rules it accepts, so the frames,
// their `exact` flags and the end are libdwfl's: frame 0 is looked up at its pc and exact, every
// other frame at pc - 1 and not exact (only a signal frame's CIE changes that, and those fall
// back); the FrameGuard sees each frame with its sp (= CFA) before it is added; the walk ends
// where rip is undefined. Where libdwfl would stop with an error or guess (no CFI), we fall back
// instead of imitating its messages.
CfiWalker::End CfiWalker::walk(const ThreadCapture& capture, size_t max_depth, RawStack* out) {
    FrameGuard guard(max_depth);
    uint64_t pc = capture.regs.pc();
    uint64_t sp = capture.regs.sp();
    uint64_t fp = capture.regs.fp();
    bool fp_known = true;
    End end = End::Fallback;
    for (bool initial = true;; initial = false) {
        const CfiRule r = rule(initial ? pc : pc - 1);
        if (!r.usable()) {
            ++stats_.fallback_rule;
            break;
        }
        if (!guard.accept(pc, initial, true, sp)) {
            out->truncated = true;
            out->stop_reason = guard.reason();
            end = End::Stopped;
            break;
        }
        out->frames.push_back(RawFrame{pc, initial});
        if (r.kind == CfiRule::Kind::Outermost) {
            end = End::Complete;
            break;
        }
        // libdwfl cannot compute a CFA from an unknown rbp, and turns a return address of 0
        // into "no more frames"; either way its own walk decides what the stack is.
        if (r.cfa_reg == Registers::kFp && !fp_known) {
            ++stats_.fallback_walk;
            break;
        }
        const uint64_t cfa =
            (r.cfa_reg == Registers::kFp ? fp : sp) + static_cast<uint64_t>(int64_t{r.cfa_offset});
        uint64_t ra = 0;
        if (!read(capture.stack, cfa + static_cast<uint64_t>(int64_t{r.ra_offset}), &ra) ||
            ra == 0) {
            ++stats_.fallback_walk;
            break;
        }
        // A saved rbp that cannot be read leaves it unknown, as in libdwfl (not an error until
        // a CFA needs it).
        if (r.fp == CfiRule::Fp::Saved)
            fp_known = read(capture.stack, cfa + static_cast<uint64_t>(int64_t{r.fp_offset}), &fp);
        else if (r.fp == CfiRule::Fp::Undefined)
            fp_known = false;
        sp = cfa + static_cast<uint64_t>(int64_t{r.sp_offset});
        pc = ra;
    }
    if (end == End::Fallback) {
        ++stats_.fallbacks;
    } else {
        ++stats_.cached_walks;
    }
    return end;
}

UnwindStats CfiWalker::stats() const {
    UnwindStats s = stats_;
    s.cache_clears = cache_.clears();
    s.cached_rules = cache_.size();
    return s;
}

}  // namespace pmprof
