// find_data_symbol: libdwfl's symbol tables searched for the variable holding an address.
#include "pmprof/symbolize/data_symbol.h"

#include "pmprof/elf/image_impl.h"
#include "pmprof/support/path.h"
#include "pmprof/symbolize/symbolize.h"
#include "symbolize/symbol_table.h"

namespace pmprof {

std::optional<DataSymbol> find_data_symbol(ProcessImage& image, uint64_t address) {
    Dwfl_Module* mod = dwfl_addrmodule(image.impl().dwfl, address);
    if (mod == nullptr) return std::nullopt;
    GElf_Off offset = 0;
    GElf_Sym sym{};
    Dwarf_Addr bias = 0;
    const char* name = dwfl_module_addrinfo(mod, address, &offset, &sym, nullptr, nullptr, &bias);
    if (name == nullptr || *name == '\0') return std::nullopt;
    const int type = GELF_ST_TYPE(sym.st_info);
    if (type != STT_OBJECT && type != STT_NOTYPE && type != STT_COMMON) return std::nullopt;
    // The nearest preceding symbol is not the variable.
    if (!symbol_covers(sym, offset)) return std::nullopt;
    DataSymbol d;
    d.name = demangle(unversioned_name(name));
    d.start = address - offset;
    d.size = sym.st_size;
    d.offset = offset;
    const char* mod_name =
        dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
    if (mod_name != nullptr) {
        d.module = base_name(mod_name);
    }
    return d;
}

}  // namespace pmprof
