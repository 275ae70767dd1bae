// Symbolization with libdwfl, cached per (pc, exact): module and build id, the ELF symbol that
// covers the pc (never merely the nearest preceding one), file:line and the inline chain.
#include "pmprof/symbolize.h"

#include <dwarf.h>
#include <elfutils/libdw.h>

#include <cstdlib>
#include <unordered_map>

#include "image_internal.h"
#include "pmprof/log.h"

namespace pmprof {
namespace {

struct ModuleInfo {
    std::string name;
    std::string build_id;
    Dwarf_Addr bias = 0;
};

struct FrameKey {
    uint64_t pc;
    bool exact;
    bool operator==(const FrameKey&) const = default;
};
struct FrameKeyHash {
    size_t operator()(const FrameKey& k) const { return std::hash<uint64_t>()(k.pc * 2 + k.exact); }
};

/// dwfl_module_addrinfo answers with the nearest preceding symbol even for an address past its
/// end; only a symbol whose extent holds the address names it. A size-0 symbol (an assembler
/// label without .size) is trusted for its own address only.
bool symbol_covers(const GElf_Sym& sym, GElf_Off offset) {
    return sym.st_size > 0 ? offset < sym.st_size : offset == 0;
}

std::string attr_string(Dwarf_Die* die, int name) {
    Dwarf_Attribute attr;
    // _integrate follows DW_AT_abstract_origin and DW_AT_specification (the declaration in the
    // class holds the name for an out-of-line member function).
    if (dwarf_attr_integrate(die, name, &attr) == nullptr) return {};
    const char* s = dwarf_formstring(&attr);
    return s != nullptr ? s : "";
}

int attr_int(Dwarf_Die* die, int name) {
    Dwarf_Attribute attr;
    Dwarf_Word value = 0;
    if (dwarf_attr(die, name, &attr) == nullptr || dwarf_formudata(&attr, &value) != 0) return 0;
    return static_cast<int>(value);
}

/// "ns::Class::" for the namespaces and classes enclosing `die`'s declaration (following
/// DW_AT_abstract_origin / DW_AT_specification to it), "" at file scope.
std::string qualified_scope(Dwarf_Die* die) {
    Dwarf_Die decl = *die;
    for (int hop = 0; hop < 4; ++hop) {  // origin -> specification chains are short
        Dwarf_Attribute attr;
        Dwarf_Die next;
        if ((dwarf_attr(&decl, DW_AT_abstract_origin, &attr) == nullptr &&
             dwarf_attr(&decl, DW_AT_specification, &attr) == nullptr) ||
            dwarf_formref_die(&attr, &next) == nullptr)
            break;
        decl = next;
    }
    Dwarf_Die* scopes = nullptr;
    int n = dwarf_getscopes_die(&decl, &scopes);
    std::string prefix;
    for (int i = 1; i < n; ++i) {  // scopes[0] is the DIE itself
        int tag = dwarf_tag(&scopes[i]);
        if (tag != DW_TAG_namespace && tag != DW_TAG_class_type && tag != DW_TAG_structure_type &&
            tag != DW_TAG_union_type)
            continue;
        const char* name = dwarf_diename(&scopes[i]);
        prefix = std::string(name != nullptr ? name : "(anonymous namespace)") + "::" + prefix;
    }
    free(scopes);
    return prefix;
}

/// Function name of a subprogram or inlined-subroutine DIE: the linkage name demangled (so C++
/// qualifiers and parameters show), else DW_AT_name.
void name_from_die(Dwarf_Die* die, SourceFrame& f) {
    std::string linkage = attr_string(die, DW_AT_linkage_name);
    if (linkage.empty()) linkage = attr_string(die, DW_AT_MIPS_linkage_name);
    if (!linkage.empty()) {
        f.mangled = linkage;
        f.function = demangle(linkage);
        return;
    }
    // No linkage name (a static or always_inline function that was never emitted out of line):
    // qualify DW_AT_name with the namespaces and classes around its declaration, so it reads
    // like the demangled names around it ("ns::helper", not "helper").
    f.mangled = attr_string(die, DW_AT_name);
    f.function = qualified_scope(die) + f.mangled;
}

int decl_line(Dwarf_Die* die) {
    int line = 0;
    return dwarf_decl_line(die, &line) == 0 ? line : 0;
}

class DwflSymbolizer final : public Symbolizer {
  public:
    DwflSymbolizer(ProcessImage& image, const SymbolizeOptions& opt) : image_(image), opt_(opt) {}

    const SymbolizedPc& symbolize(const RawFrame& frame) override {
        FrameKey key{frame.pc, frame.exact};
        auto it = cache_.find(key);
        if (it != cache_.end()) return it->second;
        return cache_.emplace(key, compute(frame)).first->second;
    }

  private:
    SymbolizedPc compute(const RawFrame& frame);
    const ModuleInfo& module_info(Dwfl_Module* mod);
    void add_inline_chain(Dwfl_Module* mod, uint64_t lookup_pc, SourceFrame& outer,
                          std::vector<SourceFrame>& frames);

    ProcessImage& image_;
    SymbolizeOptions opt_;
    std::unordered_map<Dwfl_Module*, ModuleInfo> modules_;
    std::unordered_map<FrameKey, SymbolizedPc, FrameKeyHash> cache_;
};

const ModuleInfo& DwflSymbolizer::module_info(Dwfl_Module* mod) {
    auto it = modules_.find(mod);
    if (it != modules_.end()) return it->second;
    ModuleInfo info;
    // dwfl_module_build_id answers only once the ELF is loaded (FACTS.md).
    dwfl_module_getelf(mod, &info.bias);
    const char* name = dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
    info.name = name != nullptr ? name : "";
    const unsigned char* bits = nullptr;
    GElf_Addr vaddr = 0;
    int len = dwfl_module_build_id(mod, &bits, &vaddr);
    if (len > 0) info.build_id = hex_bytes(bits, static_cast<size_t>(len));
    return modules_.emplace(mod, std::move(info)).first->second;
}

/// Fills `frames` with the inlined functions around lookup_pc, innermost first, and gives
/// `outer` (the function the code belongs to) its line: FACTS.md, "Inline chains". Each inlined
/// scope's DW_AT_call_file/call_line is where the next outer function called it.
void DwflSymbolizer::add_inline_chain(Dwfl_Module* mod, uint64_t lookup_pc, SourceFrame& outer,
                                      std::vector<SourceFrame>& frames) {
    Dwarf_Addr dwarf_bias = 0;
    Dwarf_Die* cudie = dwfl_module_addrdie(mod, lookup_pc, &dwarf_bias);
    if (cudie == nullptr) return;
    Dwarf_Die* scopes = nullptr;
    int nscopes = dwarf_getscopes(cudie, lookup_pc - dwarf_bias, &scopes);
    if (nscopes <= 0) return;
    // dwarf_getscopes stops following the concrete tree at the first inlined subroutine; the
    // DIE ancestors of the innermost scope give the whole chain. Without any inlined scope the
    // scopes already are those ancestors, and dwarf_getscopes_die, which walks the CU from its
    // start, was a third of a warm `pmprof stacks` run on libc: skip it then.
    bool any_inlined = false;
    for (int i = 0; i < nscopes; ++i)
        any_inlined = any_inlined || dwarf_tag(&scopes[i]) == DW_TAG_inlined_subroutine;
    Dwarf_Die* chain = nullptr;
    int nchain = 0;
    if (any_inlined) {
        nchain = dwarf_getscopes_die(&scopes[0], &chain);
        free(scopes);
    } else {
        chain = scopes;
        nchain = nscopes;
    }
    if (nchain <= 0) {
        free(chain);
        return;
    }
    Dwarf_Files* files = nullptr;
    size_t nfiles = 0;
    if (dwarf_getsrcfiles(cudie, &files, &nfiles) != 0) files = nullptr;
    std::string file = outer.file;
    int line = outer.line;
    for (int i = 0; i < nchain; ++i) {
        Dwarf_Die* die = &chain[i];
        int tag = dwarf_tag(die);
        if (tag == DW_TAG_subprogram) {
            outer.file = file;
            outer.line = line;
            outer.start_line = decl_line(die);
            break;
        }
        if (tag != DW_TAG_inlined_subroutine) continue;
        SourceFrame f;
        name_from_die(die, f);
        f.file = file;
        f.line = line;
        f.start_line = decl_line(die);
        f.inlined = true;
        frames.push_back(std::move(f));
        file.clear();
        line = 0;
        if (opt_.source_lines) {
            int call_file = attr_int(die, DW_AT_call_file);
            const char* name = files != nullptr && static_cast<size_t>(call_file) < nfiles
                                   ? dwarf_filesrc(files, static_cast<size_t>(call_file), nullptr, nullptr)
                                   : nullptr;
            file = name != nullptr ? name : "";
            line = attr_int(die, DW_AT_call_line);
        }
    }
    free(chain);
}

SymbolizedPc DwflSymbolizer::compute(const RawFrame& frame) {
    SymbolizedPc s;
    s.pc = frame.pc;
    const uint64_t lookup_pc = frame.lookup_pc();
    Dwfl_Module* mod = dwfl_addrmodule(image_.impl().dwfl, lookup_pc);
    if (mod == nullptr) {
        if (const MemoryMap* m = image_.find_map(lookup_pc)) {
            s.module = m->path;
            s.module_offset = frame.pc - m->start + m->file_offset;
        }
        return s;
    }
    const ModuleInfo& info = module_info(mod);
    s.module = info.name;
    s.build_id = info.build_id;
    // The ELF virtual address: `addr2line -e module 0xOFF` and pprof's Mapping agree on it.
    s.module_offset = frame.pc - info.bias;

    GElf_Off offset = 0;
    GElf_Sym sym{};
    const char* symbol = dwfl_module_addrinfo(mod, lookup_pc, &offset, &sym, nullptr, nullptr, nullptr);
    if (symbol == nullptr || !symbol_covers(sym, offset)) return s;

    SourceFrame outer;
    outer.mangled = symbol;
    // Debug-file symbol tables spell versioned symbols "__libc_start_main@@GLIBC_2.34": the
    // version is not part of the function's name (mangled keeps it).
    std::string plain = symbol;
    if (auto at = plain.find('@'); at != std::string::npos && at > 0) plain.resize(at);
    outer.function = demangle(plain);
    // dwfl_module_getsrc answers with the nearest line row even for code no CU covers (_start,
    // from crt1.o without DWARF): use it only when the CU's ranges hold the pc.
    Dwarf_Addr cu_bias = 0;
    Dwarf_Die* cu = dwfl_module_addrdie(mod, lookup_pc, &cu_bias);
    const bool cu_covers = cu != nullptr && dwarf_haspc(cu, lookup_pc - cu_bias) > 0;
    if (opt_.source_lines && cu_covers) {
        if (Dwfl_Line* line = dwfl_module_getsrc(mod, lookup_pc)) {
            int lineno = 0;
            const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr);
            outer.file = file != nullptr ? file : "";
            outer.line = lineno;
        }
    }
    if (opt_.inlines && cu_covers) add_inline_chain(mod, lookup_pc, outer, s.frames);
    s.frames.push_back(std::move(outer));
    return s;
}

}  // namespace

std::unique_ptr<Symbolizer> make_symbolizer(ProcessImage& image, const SymbolizeOptions& opt) {
    return std::make_unique<DwflSymbolizer>(image, opt);
}

}  // namespace pmprof
