// The ELF data symbol (a global or static variable) that covers an address of a process, for
// naming locks and other objects by the variable that holds them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "pmprof/elf/image.h"

namespace pmprof {

struct DataSymbol {
    std::string name;    // demangled ("app::g_accounts_lock"); a version suffix dropped
    uint64_t start = 0;  // the symbol's runtime address
    uint64_t size = 0;
    uint64_t offset = 0;  // of the address within it
    std::string module;   // base name of the file
};

/// The object (or TLS-less notype) symbol of the module mapped at `address` whose extent holds
/// it, from the symbol table libdwfl reads (.symtab, the debug file's, or .dynsym); nullopt when
/// none does. Function symbols never name data.
std::optional<DataSymbol> find_data_symbol(ProcessImage& image, uint64_t address);

}  // namespace pmprof
