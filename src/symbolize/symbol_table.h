// A module's ELF symbols read once, answering dwfl_module_addrinfo's question for many pcs.
// Used by src/symbolize/symbolize.cpp only; libdwfl types stay in the adapter files (docs/design.md
// §2).
#pragma once

#include <elfutils/libdwfl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pmprof {

/// dwfl_module_addrinfo (and SymbolTable) answers with the nearest preceding symbol even for an
/// address past its end; only a symbol whose extent holds the address names it. A size-0 symbol
/// (an assembler label without .size) is trusted for its own address only.
inline bool symbol_covers(const GElf_Sym& sym, GElf_Off offset) {
    return sym.st_size > 0 ? offset < sym.st_size : offset == 0;
}

/// A symbol's name without its version: debug-file symbol tables spell versioned symbols
/// "__libc_start_main@@GLIBC_2.34", and the version is not part of the name.
inline std::string unversioned_name(const char* symbol) {
    std::string plain = symbol;
    if (auto at = plain.find('@'); at != std::string::npos && at > 0) plain.resize(at);
    return plain;
}

class SymbolTable {
  public:
    /// Reads every symbol of `mod` (which must outlive the table) once.
    explicit SymbolTable(Dwfl_Module* mod);

    /// The symbol dwfl_module_addrinfo(mod, address, offset, sym, ...) would return (same name,
    /// offset and symbol, chosen by the same rules), or nullptr when it would return nullptr.
    const char* addrinfo(GElf_Addr address, GElf_Off* offset, GElf_Sym* sym) const;

  private:
    struct Entry {
        GElf_Sym sym;
        const char* name;
        GElf_Word shndx;
        int binding;  // libdwfl's binding_value: global 3, weak 2, local 1, other 0
    };
    struct Search;

    void search(Search& s, size_t begin, size_t end) const;
    int section_of(GElf_Addr address) const;

    Dwfl_Module* mod_;
    bool ok_ = false;
    // Parallel arrays in symbol-table order (the choice between equal candidates depends on
    // it); values_ and sizes_ apart so the scan over all of them stays in few cache lines.
    std::vector<GElf_Addr> values_;
    std::vector<GElf_Xword> sizes_;
    std::vector<Entry> entries_;
    size_t first_global_ = 0;  // index into the arrays of the first global-table symbol
    bool search_locals_ = false;
};

}  // namespace pmprof
