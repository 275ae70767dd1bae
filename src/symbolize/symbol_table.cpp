// dwfl_module_addrinfo reads the whole symbol table for every address it is asked about, with a
// lock and a section-header lookup per symbol (libdwfl/dwfl_module_addrsym.c): 10,000 symbols
// of libc's debug file made each lookup cost 0.1-0.3 ms, most of a `pmprof stacks` run's
// symbolization. SymbolTable reads the symbols once, through the same accessor libdwfl uses
// (dwfl_module_getsym_info: same values, same filtering), and then runs libdwfl's choice over
// two plain arrays. The choice is a copy of __libdwfl_addrsym in elfutils 0.188 with
// adjust_st_value false (what dwfl_module_addrinfo asks for): globals first, locals only when no
// global fits, the closest start wins, ties go to the smaller size or the stronger binding and
// then to the first in table order, and a size-0 label only when no sized symbol holds the
// address. Its function-descriptor branch (`resolved`) is for ppc64 ELFv1 only and never runs
// on x86_64, so it is left out.
#include "symbolize/symbol_table.h"

#include <gelf.h>

#include <cstdint>

namespace pmprof {
namespace {

int binding_value(const GElf_Sym& sym) {
    switch (GELF_ST_BIND(sym.st_info)) {
    case STB_GLOBAL:
        return 3;
    case STB_WEAK:
        return 2;
    case STB_LOCAL:
        return 1;
    default:
        return 0;
    }
}

constexpr int kSectionUnknown = -2;

}  // namespace

struct SymbolTable::Search {
    GElf_Addr address = 0;
    const Entry* closest = nullptr;
    GElf_Addr closest_value = 0;
    const Entry* sizeless = nullptr;
    GElf_Addr sizeless_value = 0;
    GElf_Addr min_label = 0;  // lowest value a size-0 label may have (past every sized symbol)
    int address_section = kSectionUnknown;
};

SymbolTable::SymbolTable(Dwfl_Module* mod) : mod_(mod) {
    const int count = dwfl_module_getsymtab(mod);
    if (count < 0) return;
    const int first_global = dwfl_module_getsymtab_first_global(mod);
    if (first_global < 0) return;
    ok_ = true;
    // libdwfl searches [first_global, count) (from 1 when first_global is 0), then [1,
    // first_global) when first_global > 1; both keep table order.
    search_locals_ = first_global > 1;
    values_.reserve(static_cast<size_t>(count));
    sizes_.reserve(static_cast<size_t>(count));
    entries_.reserve(static_cast<size_t>(count));
    first_global_ = SIZE_MAX;
    for (int i = 1; i < count; ++i) {
        if (i == first_global) first_global_ = entries_.size();
        GElf_Sym sym;
        GElf_Addr value = 0;
        GElf_Word shndx = 0;
        const char* name = dwfl_module_getsym_info(mod, i, &sym, &value, &shndx, nullptr, nullptr);
        // search_table's filter, except `value <= address`, which depends on the address.
        if (name == nullptr || name[0] == '\0' || sym.st_shndx == SHN_UNDEF) continue;
        const int type = GELF_ST_TYPE(sym.st_info);
        if (type == STT_SECTION || type == STT_FILE || type == STT_TLS) continue;
        values_.push_back(value);
        sizes_.push_back(sym.st_size);
        entries_.push_back(Entry{sym, name, shndx, binding_value(sym)});
    }
    if (first_global <= 1) {
        first_global_ = 0;  // every symbol is searched as a global
    } else if (first_global_ == SIZE_MAX) {
        first_global_ = entries_.size();  // no globals at all
    }
}

/// Index of the main-file section holding `address` (what __libdwfl_find_section_ndx answers),
/// -1 when none does.
int SymbolTable::section_of(GElf_Addr address) const {
    Dwarf_Addr relative = address;
    Dwarf_Addr bias = 0;
    Elf_Scn* scn = dwfl_module_address_section(mod_, &relative, &bias);
    return scn != nullptr ? static_cast<int>(elf_ndxscn(scn)) : -1;
}

void SymbolTable::search(Search& s, size_t begin, size_t end) const {
    for (size_t i = begin; i < end; ++i) {
        const GElf_Addr value = values_[i];
        if (value > s.address) continue;
        const GElf_Xword size = sizes_[i];
        // try_sym_value: every symbol at or below the address raises the floor for labels.
        if (value + size > s.min_label) s.min_label = value + size;
        if (size != 0 && s.address - value >= size) continue;
        const Entry& e = entries_[i];
        if (s.closest == nullptr || s.closest_value < value || s.closest->binding < e.binding) {
            if (size != 0) {
                s.closest = &e;
                s.closest_value = value;
            } else if (s.closest == nullptr && value >= s.min_label) {
                // same_section: absolute and special symbols only at their exact address.
                bool same = false;
                if (e.shndx >= SHN_LORESERVE) {
                    same = value == s.address;
                } else {
                    if (s.address_section == kSectionUnknown)
                        s.address_section = section_of(s.address);
                    same = s.address_section == section_of(value);
                }
                if (same) {
                    s.sizeless = &e;
                    s.sizeless_value = value;
                }
            }
        } else if (size != 0 && s.closest_value == value &&
                   ((s.closest->sym.st_size > size && s.closest->binding <= e.binding) ||
                    (s.closest->sym.st_size >= size && s.closest->binding < e.binding))) {
            s.closest = &e;
            s.closest_value = value;
        }
    }
}

const char* SymbolTable::addrinfo(GElf_Addr address, GElf_Off* offset, GElf_Sym* sym) const {
    if (!ok_) return nullptr;
    Search s;
    s.address = address;
    search(s, first_global_, entries_.size());
    if (s.closest == nullptr && search_locals_ &&
        (s.sizeless == nullptr || s.sizeless_value != address))
        search(s, 0, first_global_);
    if (s.closest == nullptr && s.sizeless != nullptr && s.sizeless_value >= s.min_label) {
        s.closest = s.sizeless;
        s.closest_value = s.sizeless_value;
    }
    if (s.closest == nullptr) return nullptr;
    *offset = address - s.closest_value;
    *sym = s.closest->sym;
    return s.closest->name;
}

}  // namespace pmprof
