// DWARF names spelled like demangled linkage names (src/symbolize/dwarf_names.h).
//
// The Itanium demangler prints a local entity as "<enclosing function>::<entity>" with the
// enclosing function's parameter types ("Mailbox::send(unsigned long)::{lambda()#1}"), a
// lambda's closure type as {lambda(<parameter types of its operator()>)#N}, N counting the
// lambdas with the same parameter types in the same function from 1 in order of appearance
// (the ABI's discriminator), and types in their canonical spelling: typedefs resolved,
// qualifiers after the type ("char const*"). GCC leaves the linkage name out for lambdas and
// internal functions it only inlined, so the same names are rebuilt here from the DIEs.
#include "symbolize/dwarf_names.h"

#include <dwarf.h>
#include <fmt/format.h>

#include <string_view>
#include <utility>

#include "pmprof/support/path.h"
#include "pmprof/symbolize/symbolize.h"
#include "symbolize/dwarf_scopes.h"

namespace pmprof {
namespace {

constexpr int kMaxDepth = 16;

bool ref_die(Dwarf_Die* die, int attribute, Dwarf_Die* out) {
    Dwarf_Attribute attr;
    return dwarf_attr(die, attribute, &attr) != nullptr && dwarf_formref_die(&attr, out) != nullptr;
}

bool is_cplusplus(Dwarf_Die* die) {
    Dwarf_Die cu;
    if (dwarf_diecu(die, &cu, nullptr, nullptr) == nullptr) return false;
    const int lang = dwarf_srclang(&cu);
    return lang == DW_LANG_C_plus_plus || lang == DW_LANG_C_plus_plus_03 ||
           lang == DW_LANG_C_plus_plus_11 || lang == DW_LANG_C_plus_plus_14 ||
           lang == 0x2a /* DW_LANG_C_plus_plus_17 */ || lang == 0x2b /* _20 */;
}

std::optional<std::string> type_name(Dwarf_Die* type, int depth);

/// GCC names base types the C way ("long unsigned int"); the demangler, and so every mangled
/// name in a profile, says "unsigned long".
std::string demangler_base_type(std::string_view name) {
    static constexpr std::pair<std::string_view, std::string_view> kSpellings[] = {
        {"long unsigned int", "unsigned long"},
        {"long int", "long"},
        {"short int", "short"},
        {"short unsigned int", "unsigned short"},
        {"long long int", "long long"},
        {"long long unsigned int", "unsigned long long"},
        {"__int128 unsigned", "unsigned __int128"},
        {"_Bool", "bool"},
    };
    for (const auto& [dwarf, demangled] : kSpellings)
        if (name == dwarf) return std::string(demangled);
    return std::string(name);
}

/// The type a DIE's DW_AT_type names, spelled; "void" when it has none.
std::optional<std::string> inner_type(Dwarf_Die* die, int depth) {
    Dwarf_Die inner;
    if (!ref_die(die, DW_AT_type, &inner)) return std::string("void");
    return type_name(&inner, depth + 1);
}

std::optional<std::string> type_name(Dwarf_Die* type, int depth) {
    if (depth > kMaxDepth) return std::nullopt;
    const char* name = dwarf_diename(type);
    switch (dwarf_tag(type)) {
    case DW_TAG_base_type:
        if (name == nullptr) return std::nullopt;
        return demangler_base_type(name);
    case DW_TAG_typedef: {  // the mangled name has the canonical type
        Dwarf_Die inner;
        if (!ref_die(type, DW_AT_type, &inner)) return std::nullopt;
        return type_name(&inner, depth + 1);
    }
    case DW_TAG_const_type:
    case DW_TAG_volatile_type:
    case DW_TAG_pointer_type:
    case DW_TAG_reference_type:
    case DW_TAG_rvalue_reference_type: {
        auto inner = inner_type(type, depth);
        if (!inner) return std::nullopt;
        switch (dwarf_tag(type)) {
        case DW_TAG_const_type:
            return *inner + " const";
        case DW_TAG_volatile_type:
            return *inner + " volatile";
        case DW_TAG_pointer_type:
            return *inner + "*";
        case DW_TAG_reference_type:
            return *inner + "&";
        default:
            return *inner + "&&";
        }
    }
    case DW_TAG_structure_type:
    case DW_TAG_class_type:
    case DW_TAG_union_type:
    case DW_TAG_enumeration_type: {
        if (name == nullptr) return std::nullopt;
        std::vector<Dwarf_Die> ancestors = die_ancestors(type);
        return (ancestors.empty() ? std::string() : scope_prefix(ancestors)) + name;
    }
    default:
        return std::nullopt;
    }
}

/// The operator() member of a class, or false.
bool call_operator(Dwarf_Die* cls, Dwarf_Die* out) {
    Dwarf_Die child;
    if (dwarf_child(cls, &child) != 0) return false;
    do {
        const char* name = dwarf_diename(&child);
        if (dwarf_tag(&child) == DW_TAG_subprogram && name != nullptr &&
            std::string_view(name) == "operator()") {
            *out = child;
            return true;
        }
    } while (dwarf_siblingof(&child, &child) == 0);
    return false;
}

/// "unsigned long, char const*": a function DIE's parameter types, without the artificial
/// `this`; nullopt when one cannot be spelled. *is_const is set when `this` points to const.
std::optional<std::string> parameter_types(Dwarf_Die* fn, bool* is_const) {
    std::string out;
    Dwarf_Die child;
    if (dwarf_child(fn, &child) != 0) return out;
    do {
        if (dwarf_tag(&child) != DW_TAG_formal_parameter) continue;
        if (dwarf_hasattr(&child, DW_AT_artificial) > 0) {
            // this: pointer to (const) class.
            // `this`: a pointer (itself possibly const) to the class, const for a const method.
            Dwarf_Die ptr, pointee;
            if (is_const != nullptr && ref_die(&child, DW_AT_type, &ptr)) {
                if (dwarf_tag(&ptr) == DW_TAG_const_type) ref_die(&ptr, DW_AT_type, &ptr);
                if (dwarf_tag(&ptr) == DW_TAG_pointer_type && ref_die(&ptr, DW_AT_type, &pointee) &&
                    dwarf_tag(&pointee) == DW_TAG_const_type)
                    *is_const = true;
            }
            continue;
        }
        auto type = inner_type(&child, 0);
        if (!type) return std::nullopt;
        if (!out.empty()) out += ", ";
        out += *type;
    } while (dwarf_siblingof(&child, &child) == 0);
    return out;
}

/// Parameter types of a closure type's operator(), or nullopt when it is not a closure type.
std::optional<std::string> lambda_signature(Dwarf_Die* cls) {
    Dwarf_Die op;
    if (!call_operator(cls, &op)) return std::nullopt;
    return parameter_types(&op, nullptr);
}

/// Calls `each` for every unnamed closure type declared in `scope`, in DIE order, looking
/// through lexical blocks (one function's lambdas share one numbering) but not into other
/// functions or classes.
template <typename F> bool each_closure(Dwarf_Die* scope, F&& each, int depth = 0) {
    Dwarf_Die child;
    if (depth > kMaxDepth || dwarf_child(scope, &child) != 0) return true;
    do {
        const int tag = dwarf_tag(&child);
        if ((tag == DW_TAG_structure_type || tag == DW_TAG_class_type) &&
            dwarf_diename(&child) == nullptr) {
            if (!each(&child)) return false;
        } else if (tag == DW_TAG_lexical_block) {
            if (!each_closure(&child, each, depth + 1)) return false;
        }
    } while (dwarf_siblingof(&child, &child) == 0);
    return true;
}

/// An unnamed class: "{lambda(int)#2}" when it is a closure type numbered within `parent`,
/// else "{unnamed type at file.cpp:42}" (or "{lambda at file.cpp:42}" when its signature
/// cannot be spelled): never a name two different classes share.
std::string unnamed_class_name(Dwarf_Die* cls, Dwarf_Die* parent) {
    auto signature = lambda_signature(cls);
    if (signature && parent != nullptr) {
        int number = 0;
        bool found = false;
        each_closure(parent, [&](Dwarf_Die* c) {
            auto other = lambda_signature(c);
            if (!other || *other != *signature) return true;
            ++number;
            found = dwarf_dieoffset(c) == dwarf_dieoffset(cls);
            return !found;
        });
        if (found) return fmt::format("{{lambda({})#{}}}", *signature, number);
    }
    Dwarf_Die op;
    std::string label = call_operator(cls, &op) ? "{lambda" : "{unnamed type";
    if (const char* file = dwarf_decl_file(cls))
        label += fmt::format(" at {}:{}", base_name(file), die_decl_line(cls));
    return label + "}";
}

/// The name a function scope gives the entities declared in it: "ns::f(int)::".
std::string function_scope(Dwarf_Die* fn, int depth) {
    if (std::string linkage = die_linkage_name(fn); !linkage.empty())
        return demangle(linkage) + "::";
    Dwarf_Die decl = declaration_of(fn);
    std::vector<Dwarf_Die> ancestors =
        depth < kMaxDepth ? die_ancestors(&decl) : std::vector<Dwarf_Die>{};
    std::string name = function_name(fn, ancestors.empty() ? "" : scope_prefix(ancestors));
    return (name.empty() ? "{unnamed function}" : name) + "::";
}

}  // namespace

std::string die_string(Dwarf_Die* die, int attribute) {
    Dwarf_Attribute attr;
    if (dwarf_attr_integrate(die, attribute, &attr) == nullptr) return {};
    const char* s = dwarf_formstring(&attr);
    return s != nullptr ? s : "";
}

std::string die_linkage_name(Dwarf_Die* die) {
    std::string name = die_string(die, DW_AT_linkage_name);
    return name.empty() ? die_string(die, DW_AT_MIPS_linkage_name) : name;
}

int die_decl_line(Dwarf_Die* die) {
    int line = 0;
    return dwarf_decl_line(die, &line) == 0 ? line : 0;
}

Dwarf_Die declaration_of(Dwarf_Die* die) {
    Dwarf_Die decl = *die;
    for (int hop = 0; hop < 4; ++hop) {  // origin -> specification chains are short
        Dwarf_Die next;
        if (!ref_die(&decl, DW_AT_abstract_origin, &next) &&
            !ref_die(&decl, DW_AT_specification, &next))
            break;
        decl = next;
    }
    return decl;
}

std::string scope_prefix(const std::vector<Dwarf_Die>& ancestors) {
    std::string prefix;
    for (size_t i = 1; i < ancestors.size(); ++i) {  // [0] is the DIE itself
        Dwarf_Die scope = ancestors[i];
        Dwarf_Die parent_die = i + 1 < ancestors.size() ? ancestors[i + 1] : Dwarf_Die{};
        Dwarf_Die* parent = i + 1 < ancestors.size() ? &parent_die : nullptr;
        const char* name = dwarf_diename(&scope);
        std::string part;
        switch (dwarf_tag(&scope)) {
        case DW_TAG_namespace:
            part = name != nullptr ? name : "(anonymous namespace)";
            break;
        case DW_TAG_class_type:
        case DW_TAG_structure_type:
        case DW_TAG_union_type:
            part = name != nullptr ? name : unnamed_class_name(&scope, parent);
            break;
        case DW_TAG_subprogram:
            // Already qualified by everything outside it.
            return function_scope(&scope, static_cast<int>(ancestors.size())) + prefix;
        default:
            continue;
        }
        prefix = part + "::" + prefix;
    }
    return prefix;
}

std::string function_name(Dwarf_Die* die, const std::string& prefix) {
    std::string name = die_string(die, DW_AT_name);
    if (name.empty()) return name;
    // ::main's mangled-name encoding has no parameters ("main::{lambda()#1}").
    if (!is_cplusplus(die) || (prefix.empty() && name == "main")) return prefix + name;
    name = prefix + name;
    Dwarf_Die decl = declaration_of(die);
    bool is_const = false;
    auto params = parameter_types(&decl, &is_const);
    if (!params) return name;
    return name + "(" + *params + ")" + (is_const ? " const" : "");
}

}  // namespace pmprof
