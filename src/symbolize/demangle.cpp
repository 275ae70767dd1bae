// Demangling with libiberty's cplus_demangle, the demangler of gdb, binutils and perf: Itanium
// C++ (with GCC's clone suffixes: "f() [clone .cold]"), Rust legacy ("_ZN...17h<hash>E") and
// Rust v0 ("_R..."), and module+offset labels.
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "pmprof/support/log.h"
#include "pmprof/support/path.h"
#include "pmprof/symbolize/symbolize.h"

// libiberty.h (included by demangle.h) declares basename() itself unless told that the C
// library already does; glibc's C++ declaration differs from it.
#define HAVE_DECL_BASENAME 1
#include <libiberty/demangle.h>

namespace pmprof {
namespace {

/// ".llvm.<digits>" (ThinLTO's suffix for promoted local symbols) says nothing to a reader and
/// would make one function two in a profile built from two LTO builds; rustfilt drops it too.
std::string_view without_llvm_suffix(std::string_view name) {
    auto at = name.find(".llvm.");
    if (at == std::string_view::npos || at == 0) return name;
    std::string_view rest = name.substr(at + 6);
    if (rest.empty()) return name;
    for (char c : rest)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return name;
    return name.substr(0, at);
}

bool is_ident(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/// Rust v0 demangles a method of an inherent impl as "<r::Crunch>::step" where legacy names,
/// gdb and rustc's own DWARF say "r::Crunch::step": the brackets of a "<Path>::" that is not a
/// trait impl ("<T as Trait>::") and not generic arguments ("Vec<T>", "f::<T>") are dropped.
std::string without_inherent_brackets(const std::string& name) {
    std::string out;
    out.reserve(name.size());
    std::vector<bool> dropped;  // per open '<': was it dropped
    for (size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        if (c == '<') {
            const bool path_start = i == 0 || !(is_ident(name[i - 1]) || name[i - 1] == ':');
            bool drop = false;
            if (path_start && i + 1 < name.size() && is_ident(name[i + 1])) {
                // Find the matching '>' and see what follows it and what is inside.
                int depth = 0;
                size_t close = std::string::npos;
                bool trait_impl = false;
                for (size_t j = i; j < name.size(); ++j) {
                    if (name[j] == '<') ++depth;
                    if (name[j] == '>' && --depth == 0) {
                        close = j;
                        break;
                    }
                    if (depth == 1 && name.compare(j, 4, " as ") == 0) trait_impl = true;
                }
                drop = close != std::string::npos && !trait_impl &&
                       name.compare(close + 1, 2, "::") == 0;
            }
            dropped.push_back(drop);
            if (!drop) out += c;
            continue;
        }
        if (c == '>' && !dropped.empty()) {
            const bool drop = dropped.back();
            dropped.pop_back();
            if (!drop) out += c;
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

std::string demangle(const std::string& mangled) {
    std::string name(without_llvm_suffix(mangled));
    // Only "_Z..." (C++ and Rust legacy) and "_R..." (Rust v0) names are mangled; a C function
    // whose name happens to be a type encoding ("i") must stay what it is.
    if (name.size() < 3 || !(name.starts_with("_Z") || name.starts_with("_R"))) return name;
    // DMGL_AUTO tries Rust first (legacy Rust names are valid Itanium names, and only the
    // Rust demangler unescapes "$LT$" and drops the "h<hash>" element), then Itanium C++.
    // Without DMGL_VERBOSE the Rust demangler drops the hash, as rustfilt and perf do.
    std::unique_ptr<char, decltype(&std::free)> out(
        cplus_demangle(name.c_str(), DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO), &std::free);
    if (out == nullptr) return name;
    return name.starts_with("_R") ? without_inherent_brackets(out.get()) : std::string(out.get());
}

std::string demangle_type(const std::string& mangled) {
    if (mangled.empty()) return mangled;
    std::unique_ptr<char, decltype(&std::free)> out(
        cplus_demangle(mangled.c_str(), DMGL_PARAMS | DMGL_ANSI | DMGL_TYPES | DMGL_GNU_V3),
        &std::free);
    return out != nullptr ? std::string(out.get()) : mangled;
}

std::string module_offset_label(const SymbolizedPc& s) {
    if (s.module.empty()) return fmt::format("{:#x}", s.pc);
    return fmt::format("{}+{:#x}", base_name(s.module), s.module_offset);
}

}  // namespace pmprof
