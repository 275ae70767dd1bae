// Kernel frames for the perf backend's --kernel (src/sampler/perf.cpp): names from
// /proc/kallsyms, and a Symbolizer that answers kernel addresses from them and hands every
// other pc to the process's own symbolizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pmprof/symbolize/symbolize.h"

namespace pmprof {

/// True for an x86_64 kernel-half address.
inline bool is_kernel_address(uint64_t pc) { return pc >= 0xffff800000000000ull; }

class KernelSymbols {
  public:
    /// Reads /proc/kallsyms; empty when the addresses are hidden (kptr_restrict, no privilege).
    static KernelSymbols load();
    bool empty() const { return syms_.empty(); }
    /// The function containing pc, or "" (outside every known symbol's reach).
    const std::string* find(uint64_t pc) const;

  private:
    std::vector<std::pair<uint64_t, std::string>> syms_;  // sorted by address
};

/// Kernel pcs: "[kernel.kallsyms]" frames named from `ksyms`; others: `user`.
std::unique_ptr<Symbolizer> make_kernel_aware_symbolizer(Symbolizer& user,
                                                         const KernelSymbols& ksyms);

}  // namespace pmprof
