// Demangling (Itanium C++ ABI, which also covers Rust's legacy "_ZN...17h<hash>E" names) and
// module+offset labels.
#include <cxxabi.h>

#include <cstdlib>
#include <memory>

#include "pmprof/symbolize.h"
#include "pmprof/log.h"

namespace pmprof {

std::string demangle(const std::string& mangled) {
    // Only "_Z..." names are mangled; __cxa_demangle would also "demangle" plain type names such
    // as "i" (int), which a C function name must never become.
    if (mangled.size() < 3 || mangled.compare(0, 2, "_Z") != 0) return mangled;
    int status = 0;
    std::unique_ptr<char, decltype(&std::free)> out(
        abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status), &std::free);
    if (status != 0 || out == nullptr) return mangled;
    return out.get();
}

std::string module_offset_label(const SymbolizedPc& s) {
    if (s.module.empty()) return fmt::format("{:#x}", s.pc);
    auto slash = s.module.rfind('/');
    std::string base = slash == std::string::npos ? s.module : s.module.substr(slash + 1);
    return fmt::format("{}+{:#x}", base, s.module_offset);
}

}  // namespace pmprof
