// A stack walk with x86_64 unwind rules cached per pc, in front of libdwfl's walk.
//
// libdwfl interprets the CFI afresh for every frame of every sample (and allocates per frame),
// although a sampled program keeps returning to the same few hundred return addresses. Almost
// all of them have a rule of one shape: CFA = rsp or rbp + offset, the return address at
// [CFA + offset], rbp unchanged or saved at [CFA + offset]. CfiWalker caches that rule per pc and
// walks a stack with hash lookups and reads of the stack copy. Whatever else it meets (a DWARF
// expression as in a signal trampoline, a pc without CFI, a failed read) sends the whole stack to
// libdwfl's walk, so every stack comes back exactly as libdwfl alone would give it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pmprof/support/types.h"
#include "pmprof/unwind/unwind.h"

namespace pmprof {

/// The unwind rule of one lookup pc (the pc for frame 0, pc - 1 for a return address), in the
/// terms libdwfl evaluates it (frame_unwind.c handle_cfi). Offsets are bytes, two's complement.
struct CfiRule {
    enum class Kind : uint8_t {
        Simple,       // the fields below give the caller's frame
        Outermost,    // rip is undefined: the stack is complete here
        NoModule,     // no module covers the pc (libdwfl: error)
        NoCfi,        // no FDE in .eh_frame nor .debug_frame (libdwfl: frame-pointer guess)
        SignalFrame,  // the CIE has the 'S' augmentation: exact pcs around it
        Complex,      // a DWARF expression, another base register, a register rule, ...
    };
    enum class Fp : uint8_t { Same, Saved, Undefined };

    Kind kind = Kind::Complex;
    uint8_t cfa_reg = Registers::kSp;  // Registers::kSp or kFp
    Fp fp = Fp::Same;
    int32_t cfa_offset = 0;  // CFA = cfa_reg + cfa_offset
    int32_t ra_offset = 0;   // the return address is at [CFA + ra_offset]
    int32_t fp_offset = 0;   // the caller's rbp is at [CFA + fp_offset] when fp == Saved
    int32_t sp_offset = 0;   // the caller's rsp = CFA + sp_offset

    /// Simple or Outermost: a walk can go on (or end) without libdwfl.
    bool usable() const { return kind == Kind::Simple || kind == Kind::Outermost; }
};

/// Rules by lookup pc, bounded: a process that keeps generating code (a JIT) would otherwise
/// grow it without end. Open addressing with linear probing; when full it starts over.
class CfiRuleCache {
  public:
    /// At most `max_rules` rules (rounded up to a power of two, at least 8).
    explicit CfiRuleCache(size_t max_rules);
    /// The cached rule of `pc`, or nullptr.
    const CfiRule* find(uint64_t pc) const;
    /// Adds the rule of `pc` (not cached yet); may first empty a full cache.
    void insert(uint64_t pc, const CfiRule& rule);
    size_t size() const { return used_; }
    uint64_t clears() const { return clears_; }

  private:
    struct Slot {
        uint64_t pc = kEmpty;
        CfiRule rule;
    };
    static constexpr uint64_t kEmpty = ~0ull;  // never a lookup pc worth caching
    size_t index(uint64_t pc) const;
    void grow();

    size_t max_slots_;
    std::vector<Slot> slots_;
    size_t used_ = 0;
    uint64_t clears_ = 0;
};

/// The walk over cached rules. Rules and memory come from a Source: libdw and CaptureMemory in
/// the real unwinder (src/unwind/cfi_dwfl.cpp), hand-built ones in tests.
class CfiWalker {
  public:
    class Source {
      public:
        virtual ~Source() = default;
        /// The rule at `lookup_pc`; asked once per pc while it stays cached.
        virtual CfiRule rule(uint64_t lookup_pc) = 0;
        /// One 8-byte word the stack copy does not hold; false when it may not be read.
        virtual bool read_word(uint64_t address, uint64_t* out) = 0;
    };
    enum class End {
        Complete,  // reached a frame whose rule marks the outermost frame
        Stopped,   // the FrameGuard ended the walk (max depth, a loop): `out` says why
        Fallback,  // something only libdwfl can follow: discard `out`, use libdwfl's walk
    };

    CfiWalker(Source& source, size_t max_rules) : source_(source), cache_(max_rules) {}
    /// Walks `capture` (ok) into `out` (empty), counting into stats().
    End walk(const ThreadCapture& capture, size_t max_depth, RawStack* out);
    /// Counters (cached_walks, fallbacks, rules); `stacks` is the caller's to count.
    UnwindStats stats() const;

  private:
    const CfiRule& rule(uint64_t lookup_pc);
    bool read(const StackCopy& stack, uint64_t address, uint64_t* out);

    Source& source_;
    CfiRuleCache cache_;
    CfiRule scratch_;  // a rule not kept because its pc cannot be a cache key
    UnwindStats stats_;
};

}  // namespace pmprof
