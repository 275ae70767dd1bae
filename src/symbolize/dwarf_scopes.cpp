// Scope chains without libdw's whole-CU walks.
//
// dwarf_getscopes_die visits the compilation unit from its first DIE, descending into every
// namespace, class and function, until it meets the DIE; dwarf_getscopes, once the pc is inside
// an inlined subroutine, does the same again to find the abstract origin. In a C++ unit that
// includes the standard headers that is tens of thousands of DIEs per call, and symbolization
// made several such calls per pc (over 1 ms each on bench/reference_target.cpp). Here the same
// chains come from a descent that only looks at the siblings on the path: DIE offsets grow in
// sibling order and a DIE's children lie between it and its next sibling, so the one child whose
// subtree holds an offset is the last one that does not start after it; GCC's DW_AT_sibling
// lets libdw step over the others without reading them.
//
// Both functions keep libdw's rules (libdw/libdw_visit_scopes.c, dwarf_getscopes.c,
// dwarf_getscopes_die.c in elfutils 0.188) so that the chains, and hence the frames printed,
// stay the same: only scope-like DIEs are descended into, and for pcs the first DIE in sibling
// order whose ranges hold the pc is taken at each level.
#include "symbolize/dwarf_scopes.h"

#include <dwarf.h>

#include <algorithm>

namespace pmprof {
namespace {

/// libdw's classify_die: the DIEs its scope visitor descends into (match, match_inline, walk).
/// DW_TAG_imported_unit is followed there too, but it has no pc ranges (so the pc search prunes
/// it) and it cannot contain a DIE of this unit (so the ancestor search never needs it).
bool descended_into(Dwarf_Die* die) {
    switch (dwarf_tag(die)) {
    case DW_TAG_compile_unit:
    case DW_TAG_module:
    case DW_TAG_lexical_block:
    case DW_TAG_with_stmt:
    case DW_TAG_catch_block:
    case DW_TAG_try_block:
    case DW_TAG_entry_point:
    case DW_TAG_inlined_subroutine:
    case DW_TAG_subprogram:
    case DW_TAG_namespace:
    case DW_TAG_class_type:
    case DW_TAG_structure_type:
        return true;
    default:
        return false;
    }
}

/// dwarf_haspc can only be positive for a DIE with DW_AT_low_pc and DW_AT_high_pc, or with
/// DW_AT_ranges (libdw/dwarf_ranges.c; the skeleton-CU special case concerns CU DIEs, which are
/// never asked here). The abbreviation answers that without decoding the DIE, which is what
/// makes scanning the thousands of type DIEs at the top of a C++ CU cheap.
bool may_hold_pc(Dwarf_Die* die) {
    return dwarf_hasattr(die, DW_AT_ranges) > 0 ||
           (dwarf_hasattr(die, DW_AT_low_pc) > 0 && dwarf_hasattr(die, DW_AT_high_pc) > 0);
}

}  // namespace

std::vector<Dwarf_Die> ranged_children(Dwarf_Die* parent) {
    std::vector<Dwarf_Die> out;
    Dwarf_Die child;
    if (dwarf_child(parent, &child) != 0) return out;
    do {
        if (may_hold_pc(&child)) out.push_back(child);
    } while (dwarf_siblingof(&child, &child) == 0);
    return out;
}

namespace {

/// The DIEs that only group declarations: descended into by libdw's scope walk whatever their
/// pc ranges (it has none), and where Rust (and C++ compilers for class-scope definitions)
/// nest the concrete functions.
bool is_container(Dwarf_Die* die) {
    switch (dwarf_tag(die)) {
    case DW_TAG_namespace:
    case DW_TAG_module:
    case DW_TAG_class_type:
    case DW_TAG_structure_type:
    case DW_TAG_union_type:
    case DW_TAG_interface_type:
        return true;
    default:
        return false;
    }
}

void collect_nested(Dwarf_Die* parent, std::vector<Dwarf_Die>& out, int depth) {
    Dwarf_Die child;
    if (depth > 64 || dwarf_child(parent, &child) != 0) return;
    do {
        if (may_hold_pc(&child)) {
            out.push_back(child);
        } else if (is_container(&child) && dwarf_haschildren(&child) > 0) {
            collect_nested(&child, out, depth + 1);
        }
    } while (dwarf_siblingof(&child, &child) == 0);
}

}  // namespace

std::vector<Dwarf_Die> nested_ranged_children(Dwarf_Die* cudie) {
    std::vector<Dwarf_Die> out;
    collect_nested(cudie, out, 0);
    return out;
}

std::vector<Dwarf_Die> scopes_at_pc(Dwarf_Die* cudie, const std::vector<Dwarf_Die>& cu_children,
                                    Dwarf_Addr pc) {
    std::vector<Dwarf_Die> path{*cudie};
    // dwarf_getscopes takes, at each level, the first child (in DIE order) whose ranges hold pc
    // and descends into it if it is a scope with children; the innermost such DIE ends the path.
    auto first_holding = [pc](const std::vector<Dwarf_Die>& candidates) -> const Dwarf_Die* {
        for (const Dwarf_Die& c : candidates) {
            Dwarf_Die die = c;
            // "No pc attributes" (-1) counts as "not here" (0), as in dwarf_getscopes.
            if (dwarf_haspc(&die, pc) > 0) return &c;
        }
        return nullptr;
    };
    std::vector<Dwarf_Die> level;
    const Dwarf_Die* match = first_holding(cu_children);
    while (match != nullptr) {
        path.push_back(*match);
        Dwarf_Die inner = *match;
        if (!descended_into(&inner) || dwarf_haschildren(&inner) <= 0) break;
        level = ranged_children(&inner);
        match = first_holding(level);
    }
    if (path.size() == 1) return {};  // only the CU: dwarf_getscopes returns 0
    std::reverse(path.begin(), path.end());
    return path;
}

std::vector<Dwarf_Die> die_ancestors(Dwarf_Die* die) {
    Dwarf_Die cudie;
    if (dwarf_diecu(die, &cudie, nullptr, nullptr) == nullptr) return {};
    const Dwarf_Off target = dwarf_dieoffset(die);
    std::vector<Dwarf_Die> path{cudie};
    Dwarf_Die parent = cudie;
    for (;;) {
        Dwarf_Die child;
        if (dwarf_child(&parent, &child) != 0) return {};
        Dwarf_Die holder;  // the last child starting before target: its subtree holds it
        bool have_holder = false;
        do {
            const Dwarf_Off offset = dwarf_dieoffset(&child);
            if (offset == target) {
                path.push_back(child);
                std::reverse(path.begin(), path.end());
                return path;
            }
            if (offset > target) break;
            holder = child;
            have_holder = true;
        } while (dwarf_siblingof(&child, &child) == 0);
        if (!have_holder || !descended_into(&holder) || dwarf_haschildren(&holder) <= 0) return {};
        path.push_back(holder);
        parent = holder;
    }
}

}  // namespace pmprof
