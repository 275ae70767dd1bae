// Names of DWARF entities spelled as the Itanium demangler (and so gdb, perf and the rest of a
// profile) spells the same entity's linkage name: for the functions and lambdas a compiler
// emitted no linkage name for. Used by src/symbolize/symbolize.cpp only; libdw types stay in the
// adapter files.
#pragma once

#include <elfutils/libdw.h>

#include <optional>
#include <string>
#include <vector>

namespace pmprof {

/// A string attribute, following DW_AT_abstract_origin and DW_AT_specification; "" if absent.
std::string die_string(Dwarf_Die* die, int attribute);
/// DW_AT_linkage_name (or the older DW_AT_MIPS_linkage_name), followed the same way.
std::string die_linkage_name(Dwarf_Die* die);
/// DW_AT_decl_line, followed the same way; 0 if absent.
int die_decl_line(Dwarf_Die* die);
/// The DIE that declares what `die` names: DW_AT_abstract_origin and DW_AT_specification
/// followed to their end.
Dwarf_Die declaration_of(Dwarf_Die* die);

/// "ns::Class::" for the scopes around a DIE, given its ancestors (die first, as die_ancestors
/// returns them): namespaces ("(anonymous namespace)" when unnamed), classes, an unnamed
/// closure type as the demangler numbers lambdas ("{lambda(int)#2}"), and for a local class or
/// lambda the function it is declared in, by its demangled linkage name or else as
/// function_name() spells it. "" at file scope.
std::string scope_prefix(const std::vector<Dwarf_Die>& ancestors);

/// A function DIE without a linkage name, named as its linkage name would demangle: `prefix`
/// (its scopes) and DW_AT_name, and in C++ units the parameter types and a const qualifier
/// ("ns::Mailbox::send(unsigned long) const") when every type can be spelled. "" without a
/// DW_AT_name.
std::string function_name(Dwarf_Die* die, const std::string& prefix);

}  // namespace pmprof
