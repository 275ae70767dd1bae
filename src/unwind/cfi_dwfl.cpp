// The default unwinder (UnwinderKind::Dwfl): CfiWalker with rules read from the modules' CFI by
// libdw, exactly where libdwfl would read them, and libdwfl's own walk (DwflWalker) for every
// stack the cached rules cannot follow (src/unwind/cfi.h).
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

#include <cstdlib>
#include <exception>
#include <limits>

#include "pmprof/elf/image_impl.h"
#include "pmprof/support/log.h"
#include "unwind/cfi.h"
#include "unwind/walk.h"

namespace pmprof {
namespace {

// 32768 rules (2 MiB of slots at most): far more return addresses than a sampled program keeps
// coming back to, small enough for a JIT that never stops making new ones.
constexpr size_t kMaxRules = 32768;

bool fits_int32(int64_t v) {
    return v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
}

/// What dwarf_frame_register says about one register, in the shapes a cached rule can hold.
/// libdw spells an offset(N) rule [DW_OP_call_frame_cfa, DW_OP_plus_uconst N] (a location that
/// libdwfl's expr_eval then reads) and val_offset(N) the same plus DW_OP_stack_value (a value);
/// N is omitted when 0. Anything else is Other.
enum class RegRule { Undefined, Same, AtCfa, ValCfa, Other };

RegRule register_rule(Dwarf_Frame* frame, int regno, int64_t* offset) {
    Dwarf_Op ops_mem[3];
    Dwarf_Op* ops = nullptr;
    size_t nops = 0;
    if (dwarf_frame_register(frame, regno, ops_mem, &ops, &nops) != 0) return RegRule::Other;
    // libdw.h: nops 0 with ops == ops_mem is "undefined", with ops NULL "same value".
    if (nops == 0 && ops == ops_mem) return RegRule::Undefined;
    if (nops == 0 && ops == nullptr) return RegRule::Same;
    if (nops == 0) return RegRule::Other;
    if (ops[0].atom != DW_OP_call_frame_cfa) return RegRule::Other;
    size_t i = 1;
    *offset = 0;
    if (i < nops && ops[i].atom == DW_OP_plus_uconst)
        *offset = static_cast<int64_t>(ops[i++].number);
    const bool value = i < nops && ops[i].atom == DW_OP_stack_value;
    if (value) ++i;
    if (i != nops || !fits_int32(*offset)) return RegRule::Other;
    return value ? RegRule::ValCfa : RegRule::AtCfa;
}

/// CFA = rsp or rbp + offset, as dwarf_frame_cfa gives it (one DW_OP_bregx, or DW_OP_bregN from
/// an expression); false for anything else.
bool cfa_rule(Dwarf_Frame* frame, CfiRule* rule) {
    Dwarf_Op* ops = nullptr;
    size_t nops = 0;
    if (dwarf_frame_cfa(frame, &ops, &nops) != 0 || nops != 1) return false;
    uint64_t reg = 0;
    int64_t offset = 0;
    if (ops[0].atom == DW_OP_bregx) {
        reg = ops[0].number;
        offset = static_cast<int64_t>(ops[0].number2);
    } else if (ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31) {
        reg = ops[0].atom - DW_OP_breg0;
        offset = static_cast<int64_t>(ops[0].number);
    } else {
        return false;
    }
    if ((reg != Registers::kSp && reg != Registers::kFp) || !fits_int32(offset)) return false;
    rule->cfa_reg = static_cast<uint8_t>(reg);
    rule->cfa_offset = static_cast<int32_t>(offset);
    return true;
}

/// The rule of one CFI row, judged as libdwfl's handle_cfi evaluates it: rip (the CIE's return
/// address column) decides whether there is a caller; rsp, rbp and the CFA where it is.
CfiRule rule_of_frame(Dwarf_Frame* frame) {
    CfiRule rule;
    bool signal = false;
    const int ra_column = dwarf_frame_info(frame, nullptr, nullptr, &signal);
    if (signal) {
        rule.kind = CfiRule::Kind::SignalFrame;
        return rule;
    }
    if (ra_column != Registers::kPc) return rule;  // Complex
    int64_t offset = 0;
    const RegRule rip = register_rule(frame, Registers::kPc, &offset);
    if (rip == RegRule::Undefined) {
        rule.kind = CfiRule::Kind::Outermost;
        return rule;
    }
    if (rip != RegRule::AtCfa) return rule;
    rule.ra_offset = static_cast<int32_t>(offset);
    if (!cfa_rule(frame, &rule)) return rule;
    if (register_rule(frame, Registers::kSp, &offset) != RegRule::ValCfa) return rule;
    rule.sp_offset = static_cast<int32_t>(offset);
    switch (register_rule(frame, Registers::kFp, &offset)) {
    case RegRule::Same:
        rule.fp = CfiRule::Fp::Same;
        break;
    case RegRule::Undefined:
        rule.fp = CfiRule::Fp::Undefined;
        break;
    case RegRule::AtCfa:
        rule.fp = CfiRule::Fp::Saved;
        rule.fp_offset = static_cast<int32_t>(offset);
        break;
    default:
        return rule;
    }
    rule.kind = CfiRule::Kind::Simple;
    return rule;
}

/// The rule at `lookup_pc` from the CFI libdwfl would use (__libdwfl_frame_unwind): the module's
/// .eh_frame, then its .debug_frame, each with its own bias.
CfiRule rule_at(Dwfl* dwfl, uint64_t lookup_pc) {
    CfiRule rule;
    Dwfl_Module* mod = dwfl_addrmodule(dwfl, lookup_pc);
    if (mod == nullptr) {
        rule.kind = CfiRule::Kind::NoModule;
        return rule;
    }
    for (bool eh : {true, false}) {
        Dwarf_Addr bias = 0;
        Dwarf_CFI* cfi = eh ? dwfl_module_eh_cfi(mod, &bias) : dwfl_module_dwarf_cfi(mod, &bias);
        Dwarf_Frame* frame = nullptr;
        if (cfi == nullptr || dwarf_cfi_addrframe(cfi, lookup_pc - bias, &frame) != 0) continue;
        rule = rule_of_frame(frame);
        free(frame);  // libdw.h: "a malloc'd pointer"
        return rule;
    }
    rule.kind = CfiRule::Kind::NoCfi;
    return rule;
}

class DwflRuleSource final : public CfiWalker::Source {
  public:
    DwflRuleSource(Dwfl* dwfl, CaptureMemory& memory) : dwfl_(dwfl), memory_(memory) {}
    CfiRule rule(uint64_t lookup_pc) override { return rule_at(dwfl_, lookup_pc); }
    bool read_word(uint64_t address, uint64_t* out) override {
        return memory_.read(address, out, sizeof *out);
    }

  private:
    Dwfl* dwfl_;
    CaptureMemory& memory_;
};

class CachedDwflUnwinder final : public Unwinder {
  public:
    CachedDwflUnwinder(ProcessImage& image, MemoryReader& memory)
        : memory_(image, memory), dwfl_walk_(image, memory_), source_(image.impl().dwfl, memory_),
          walker_(source_, kMaxRules) {}

    ~CachedDwflUnwinder() override {
        const UnwindStats s = stats();
        log_debug("unwind: {} stacks, {} with cached rules, {} by libdwfl ({} at a rule that is "
                  "not simple, {} mid-walk); rules: {} hits, {} misses ({} not simple), {} "
                  "cached, cache cleared {} times",
                  s.stacks, s.cached_walks, s.fallbacks, s.fallback_rule, s.fallback_walk,
                  s.rule_hits, s.rule_misses, s.rules_not_simple, s.cached_rules, s.cache_clears);
    }

    RawStack unwind(const ThreadCapture& capture, size_t max_depth) override {
        ++stacks_;
        // libdwfl's walk first needs dwfl_attach_state; where that fails its answer (the
        // reason) is the answer.
        if (dwfl_walk_.attach()) {
            RawStack out;
            memory_.set_capture(&capture);
            CfiWalker::End end = CfiWalker::End::Fallback;
            try {
                end = walker_.walk(capture, max_depth, &out);
            } catch (const std::exception& e) {
                log_debug("tid {}: cached unwind: {}", capture.tid, e.what());
            }
            memory_.set_capture(nullptr);
            if (end != CfiWalker::End::Fallback) return out;
        } else {
            ++not_attached_;
        }
        return dwfl_walk_.unwind(capture, max_depth);
    }

    UnwindStats stats() const override {
        UnwindStats s = walker_.stats();
        s.stacks = stacks_;
        s.fallbacks += not_attached_;
        s.fallback_walk += not_attached_;
        return s;
    }

  private:
    CaptureMemory memory_;
    DwflWalker dwfl_walk_;
    DwflRuleSource source_;
    CfiWalker walker_;
    uint64_t stacks_ = 0;
    uint64_t not_attached_ = 0;
};

}  // namespace

std::unique_ptr<Unwinder> make_cached_dwfl_unwinder(ProcessImage& image, MemoryReader& memory) {
    return std::make_unique<CachedDwflUnwinder>(image, memory);
}

}  // namespace pmprof
