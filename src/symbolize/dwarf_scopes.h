// Scope chains of DWARF DIEs, as libdw's dwarf_getscopes / dwarf_getscopes_die define them, found
// without their full walks of the compilation unit. Used by src/symbolize/symbolize.cpp only; libdw
// types stay in the adapter files (docs/design.md §2).
#pragma once

#include <elfutils/libdw.h>

#include <vector>

namespace pmprof {

/// The children of `parent` that dwarf_haspc could find a pc in, in order: those with
/// DW_AT_low_pc and DW_AT_high_pc, or DW_AT_ranges.
std::vector<Dwarf_Die> ranged_children(Dwarf_Die* parent);

/// The DIEs with pc ranges below `cudie` in DIE order, looking through the namespaces, classes
/// and structures that hold no pc themselves: where rustc puts every function
/// ("r2::Crunch::step" is a subprogram inside namespaces r2 and Crunch), and what libdw's scope
/// walk finds by descending into them. Walks the whole unit once: for when no child in
/// ranged_children(cudie) holds a pc.
std::vector<Dwarf_Die> nested_ranged_children(Dwarf_Die* cudie);

/// The DIEs whose ranges hold `pc` (a CU-relative address, as for dwarf_getscopes), innermost
/// first and ending with `cudie`: dwarf_getscopes' first traversal, which is also what
/// dwarf_getscopes_die returns for the innermost one. Empty when no DIE below the CU holds pc.
/// `cu_children` is ranged_children(cudie), computed once for all the pcs of a CU.
std::vector<Dwarf_Die> scopes_at_pc(Dwarf_Die* cudie, const std::vector<Dwarf_Die>& cu_children,
                                    Dwarf_Addr pc);

/// `die` and its ancestors up to its unit's root DIE, innermost first: what dwarf_getscopes_die
/// returns. Empty when that function would not find `die` (it only descends through scope-like
/// DIEs: subprograms, blocks, namespaces, classes and structures).
std::vector<Dwarf_Die> die_ancestors(Dwarf_Die* die);

}  // namespace pmprof
