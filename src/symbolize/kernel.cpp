// /proc/kallsyms and the kernel-aware symbolizer (include/pmprof/symbolize/kernel.h).
#include "pmprof/symbolize/kernel.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <unordered_map>

#include "pmprof/support/fd.h"

namespace pmprof {
namespace {

constexpr uint64_t kMaxSymbolReach = 1 << 20;  // past the last symbol: not its code

class KernelAwareSymbolizer final : public Symbolizer {
  public:
    KernelAwareSymbolizer(Symbolizer& user, const KernelSymbols& ksyms)
        : user_(user), ksyms_(ksyms) {}
    const SymbolizedPc& symbolize(const RawFrame& frame) override {
        if (!is_kernel_address(frame.pc)) return user_.symbolize(frame);
        auto [it, inserted] = cache_.try_emplace(frame.pc);
        if (!inserted) return it->second;
        SymbolizedPc& s = it->second;
        s.pc = frame.pc;
        s.module = "[kernel.kallsyms]";
        if (const std::string* name = ksyms_.find(frame.lookup_pc())) {
            SourceFrame f;
            f.function = *name;
            f.mangled = *name;
            s.frames.push_back(std::move(f));
        }
        return s;
    }

  private:
    Symbolizer& user_;
    const KernelSymbols& ksyms_;
    std::unordered_map<uint64_t, SymbolizedPc> cache_;
};

}  // namespace

KernelSymbols KernelSymbols::load() {
    KernelSymbols k;
    auto text = read_file("/proc/kallsyms");
    if (!text.ok()) return k;
    std::string_view rest = *text;
    while (!rest.empty()) {
        const size_t nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
        // "ffffffff81000000 T _stext [module]"
        const size_t sp1 = line.find(' ');
        if (sp1 == std::string_view::npos || sp1 + 3 >= line.size()) continue;
        const char type = line[sp1 + 1];
        if (type != 't' && type != 'T' && type != 'w' && type != 'W') continue;
        const uint64_t addr = std::strtoull(std::string(line.substr(0, sp1)).c_str(), nullptr, 16);
        if (addr == 0) continue;  // hidden by kptr_restrict
        std::string_view name = line.substr(sp1 + 3);
        if (const size_t tab = name.find('\t'); tab != std::string_view::npos)
            name = name.substr(0, tab);
        k.syms_.emplace_back(addr, std::string(name));
    }
    std::sort(k.syms_.begin(), k.syms_.end());
    return k;
}

const std::string* KernelSymbols::find(uint64_t pc) const {
    auto it = std::upper_bound(syms_.begin(), syms_.end(), pc,
                               [](uint64_t a, const auto& s) { return a < s.first; });
    if (it == syms_.begin()) return nullptr;
    --it;
    if (pc - it->first > kMaxSymbolReach) return nullptr;
    return &it->second;
}

std::unique_ptr<Symbolizer> make_kernel_aware_symbolizer(Symbolizer& user,
                                                         const KernelSymbols& ksyms) {
    return std::make_unique<KernelAwareSymbolizer>(user, ksyms);
}

}  // namespace pmprof
