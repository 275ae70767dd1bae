// Symbolization with libdwfl, cached per (pc, exact): module and build id, the ELF symbol that
// covers the pc (never merely the nearest preceding one), file:line and the inline chain. The
// frames of each lookup address are also kept across runs per module build id
// (src/symbolize/cache.h), so a repeated `pmprof stacks` loads no DWARF for the pcs it has seen.
#include "pmprof/symbolize/symbolize.h"

#include <dwarf.h>
#include <elfutils/libdw.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pmprof/elf/debug_cache.h"
#include "pmprof/elf/image_impl.h"
#include "pmprof/support/log.h"
#include "symbolize/cache.h"
#include "symbolize/dwarf_names.h"
#include "symbolize/dwarf_scopes.h"
#include "symbolize/symbol_table.h"

namespace pmprof {
namespace {

/// One address range of a compilation unit, from its DW_AT_ranges or low_pc/high_pc.
struct CuRange {
    Dwarf_Addr start, end;  // DWARF addresses (module bias not applied)
    size_t cu;              // index into CuIndex::units
};

/// The module's CUs by address, from the CU DIEs themselves: libdw 0.188 finds a pc's CU only
/// through .debug_aranges (dwfl_module_addrdie, dwfl_module_getsrc), which clang does not
/// emit by default and which a linker may leave incomplete; addr2line and gdb read the ranges.
struct CuIndex {
    std::vector<Dwarf_Die> units;
    std::vector<CuRange> ranges;  // sorted by start
    Dwarf_Addr bias = 0;
};

struct ModuleInfo {
    std::string name;
    std::string build_id;
    Dwarf_Addr bias = 0;
    std::unique_ptr<SymbolTable> symbols;  // read on the first lookup the cache cannot answer
    std::unique_ptr<CuIndex> cu_index;     // built on the first pc libdwfl finds no CU for
    // Persistent results (src/symbolize/cache.h): "" path when not cached; `source` is checked
    // once, when this run first computes frames, and nullopt then means "no DWARF: store nothing".
    std::string cache_path;
    CachedFrames cached;
    size_t added = 0;
    bool source_checked = false;
    std::optional<DwarfSource> source;
};

struct FrameKey {
    uint64_t pc;
    bool exact;
    bool operator==(const FrameKey&) const = default;
};
struct FrameKeyHash {
    size_t operator()(const FrameKey& k) const { return std::hash<uint64_t>()(k.pc * 2 + k.exact); }
};

int attr_int(Dwarf_Die* die, int name) {
    Dwarf_Attribute attr;
    Dwarf_Word value = 0;
    if (dwarf_attr(die, name, &attr) == nullptr || dwarf_formudata(&attr, &value) != 0) return 0;
    return static_cast<int>(value);
}

/// The line a function starts at: its DW_AT_decl_line, or for a lambda's operator(), which GCC
/// gives none, the closure type's.
int decl_line(Dwarf_Die* die) {
    if (int line = die_decl_line(die); line > 0) return line;
    Dwarf_Die decl = declaration_of(die);
    std::vector<Dwarf_Die> ancestors = die_ancestors(&decl);
    if (ancestors.size() < 2) return 0;
    const int tag = dwarf_tag(&ancestors[1]);
    if (tag != DW_TAG_structure_type && tag != DW_TAG_class_type) return 0;
    return die_decl_line(&ancestors[1]);
}

/// Legacy Rust mangling names every closure of a function "{{closure}}" and tells them apart
/// only by the hash demangling drops; rustc's DWARF numbers them ("{closure#1}") as gdb shows.
bool is_legacy_rust_closure(const std::string& name) {
    return name.find("{{closure}}") != std::string::npos;
}

/// A source path as addr2line prints it: relative names joined with the CU's DW_AT_comp_dir,
/// then normalized ("a/./b/../c" is "a/c"), so every output names the file from any directory.
std::string absolute_source(const char* file, const char* comp_dir) {
    if (file == nullptr || file[0] == '\0') return {};
    std::filesystem::path path(file);
    if (path.is_relative() && comp_dir != nullptr && comp_dir[0] == '/')
        path = std::filesystem::path(comp_dir) / path;
    return path.lexically_normal().string();
}

const char* comp_dir_of(Dwarf_Die* cudie) {
    Dwarf_Attribute attr;
    return dwarf_attr(cudie, DW_AT_comp_dir, &attr) != nullptr ? dwarf_formstring(&attr) : nullptr;
}

std::unique_ptr<CuIndex> build_cu_index(Dwfl_Module* mod) {
    auto index = std::make_unique<CuIndex>();
    Dwarf* dwarf = dwfl_module_getdwarf(mod, &index->bias);
    if (dwarf == nullptr) return index;
    Dwarf_CU* cu = nullptr;
    Dwarf_Half version = 0;
    uint8_t unit_type = 0;
    Dwarf_Die cudie, subdie;
    while (dwarf_get_units(dwarf, cu, &cu, &version, &unit_type, &cudie, &subdie) == 0) {
        const int tag = dwarf_tag(&cudie);
        if (tag != DW_TAG_compile_unit && tag != DW_TAG_partial_unit && tag != DW_TAG_skeleton_unit)
            continue;
        const size_t at = index->units.size();
        index->units.push_back(cudie);
        Dwarf_Addr base = 0, start = 0, end = 0;
        ptrdiff_t offset = 0;
        while ((offset = dwarf_ranges(&cudie, offset, &base, &start, &end)) > 0)
            if (end > start) index->ranges.push_back(CuRange{start, end, at});
    }
    std::sort(index->ranges.begin(), index->ranges.end(),
              [](const CuRange& a, const CuRange& b) { return a.start < b.start; });
    return index;
}

class DwflSymbolizer final : public Symbolizer {
  public:
    DwflSymbolizer(ProcessImage& image, const SymbolizeOptions& opt)
        : image_(image), opt_(opt), cache_dir_(debug_cache_dir()) {}
    DwflSymbolizer(const DwflSymbolizer&) = delete;
    DwflSymbolizer& operator=(const DwflSymbolizer&) = delete;
    ~DwflSymbolizer() override { save_caches(); }

    const SymbolizedPc& symbolize(const RawFrame& frame) override {
        FrameKey key{frame.pc, frame.exact};
        auto it = cache_.find(key);
        if (it != cache_.end()) return it->second;
        return cache_.emplace(key, compute(frame)).first->second;
    }

  private:
    SymbolizedPc compute(const RawFrame& frame);
    std::vector<SourceFrame> compute_frames(Dwfl_Module* mod, ModuleInfo& info, uint64_t lookup_pc);
    ModuleInfo& module_info(Dwfl_Module* mod);
    void remember(Dwfl_Module* mod, ModuleInfo& info, uint64_t key,
                  const std::vector<SourceFrame>& frames);
    std::optional<DwarfSource> dwarf_source(Dwfl_Module* mod);
    void save_caches() noexcept;
    Dwarf_Die* cu_at(Dwfl_Module* mod, ModuleInfo& info, uint64_t lookup_pc, Dwarf_Addr* bias);
    void add_inline_chain(Dwarf_Die* cudie, Dwarf_Addr dwarf_bias, uint64_t lookup_pc,
                          SourceFrame& outer, std::vector<SourceFrame>& frames);
    const std::optional<std::string>& declaration_scope(Dwarf_Die* die);
    void name_from_die(Dwarf_Die* die, SourceFrame& f);

    ProcessImage& image_;
    SymbolizeOptions opt_;
    std::string cache_dir_;  // "" when the persistent cache is off
    std::unordered_map<Dwfl_Module*, ModuleInfo> modules_;
    std::unordered_map<FrameKey, SymbolizedPc, FrameKeyHash> cache_;
    // Both keyed by a DIE's address in the mapped debug data (unique per DIE): the scope of a
    // declaration, and the children of a CU that may hold pcs (ranged_children).
    std::unordered_map<const void*, std::optional<std::string>> decl_scopes_;
    struct CuChildren {
        std::vector<Dwarf_Die> top;                    // ranged_children
        std::optional<std::vector<Dwarf_Die>> nested;  // nested_ranged_children, when needed
    };
    std::unordered_map<const void*, CuChildren> cu_children_;
};

ModuleInfo& DwflSymbolizer::module_info(Dwfl_Module* mod) {
    auto it = modules_.find(mod);
    if (it != modules_.end()) return it->second;
    ModuleInfo info;
    // dwfl_module_build_id answers only once the ELF is loaded (docs/facts.md).
    dwfl_module_getelf(mod, &info.bias);
    const char* name =
        dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
    info.name = name != nullptr ? name : "";
    const unsigned char* bits = nullptr;
    GElf_Addr vaddr = 0;
    int len = dwfl_module_build_id(mod, &bits, &vaddr);
    if (len > 0) info.build_id = hex_bytes(bits, static_cast<size_t>(len));
    const std::string variant = fmt::format("l{:d}i{:d}", opt_.source_lines, opt_.inlines);
    info.cache_path = symbol_cache_path(cache_dir_, info.build_id, variant);
    if (!info.cache_path.empty()) {
        auto& files = image_.impl().main_files;
        auto file = files.find(mod);
        auto loaded = load_symbol_cache(
            info.cache_path,
            file != files.end() ? std::optional<FileIdentity>(file->second) : std::nullopt);
        if (loaded) info.cached = std::move(*loaded);
    }
    return modules_.emplace(mod, std::move(info)).first->second;
}

/// Where libdwfl found the module's DWARF (loading it if this run has not yet): the module's
/// own file or a separate debug file; nullopt without DWARF, or for a debug file reached
/// through /proc (another mount namespace: the path would not name it in the next run).
std::optional<DwarfSource> DwflSymbolizer::dwarf_source(Dwfl_Module* mod) {
    Dwarf_Addr bias = 0;
    Dwarf* dwarf = dwfl_module_getdwarf(mod, &bias);
    if (dwarf == nullptr) return std::nullopt;
    DwarfSource src;
    if (dwarf_getelf(dwarf) == dwfl_module_getelf(mod, &bias)) {
        auto& files = image_.impl().main_files;
        auto file = files.find(mod);
        if (file == files.end()) return std::nullopt;
        src.in_main_file = true;
        src.identity = file->second;
        return src;
    }
    const char* debug_file = nullptr;
    dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &debug_file);
    if (debug_file == nullptr || debug_file[0] != '/' ||
        std::string_view(debug_file).starts_with("/proc/"))
        return std::nullopt;
    auto id = identity_of_path(debug_file);
    if (!id) return std::nullopt;
    src.debug_path = debug_file;
    src.identity = *id;
    return src;
}

void DwflSymbolizer::remember(Dwfl_Module* mod, ModuleInfo& info, uint64_t key,
                              const std::vector<SourceFrame>& frames) {
    if (info.cache_path.empty()) return;
    if (!info.source_checked) {
        info.source_checked = true;
        info.source = dwarf_source(mod);
    }
    if (!info.source) return;
    if (info.cached.emplace(key, frames).second) ++info.added;
}

/// Writes back the files of modules that gained entries. Runs in the destructor: never throws.
void DwflSymbolizer::save_caches() noexcept {
    for (auto& [mod, info] : modules_) {
        if (info.added == 0 || !info.source) continue;
        try {
            save_symbol_cache(info.cache_path, *info.source, info.cached);
        } catch (const std::exception& e) {
            log_debug("symbol cache: {}", e.what());
        }
    }
}

/// Where a DIE's name is declared: "ns::Class::" (cached per declaration), or nullopt when
/// dwarf_getscopes_die would not find the declaration.
const std::optional<std::string>& DwflSymbolizer::declaration_scope(Dwarf_Die* die) {
    Dwarf_Die decl = declaration_of(die);
    auto it = decl_scopes_.find(decl.addr);
    if (it != decl_scopes_.end()) return it->second;
    std::vector<Dwarf_Die> ancestors = die_ancestors(&decl);
    std::optional<std::string> prefix;
    if (!ancestors.empty()) prefix = scope_prefix(ancestors);
    return decl_scopes_.emplace(decl.addr, std::move(prefix)).first->second;
}

/// Function name of a subprogram or inlined-subroutine DIE: the linkage name demangled (so C++
/// qualifiers and parameters show), else DW_AT_name.
void DwflSymbolizer::name_from_die(Dwarf_Die* die, SourceFrame& f) {
    std::string linkage = die_linkage_name(die);
    if (!linkage.empty()) {
        f.mangled = linkage;
        f.function = demangle(linkage);
        if (!is_legacy_rust_closure(f.function)) return;
        f.function = declaration_scope(die).value_or("") + die_string(die, DW_AT_name);
        return;
    }
    // No linkage name (a lambda, a static or always_inline function never emitted out of
    // line): its name as the linkage name would demangle, from the scopes around its
    // declaration ("ns::helper(int)", "f()::{lambda()#1}::operator()() const").
    f.mangled = die_string(die, DW_AT_name);
    f.function = function_name(die, declaration_scope(die).value_or(""));
    if (f.function.empty()) f.function = f.mangled;
}

/// Fills `frames` with the inlined functions around lookup_pc, innermost first, and gives
/// `outer` (the function the code belongs to) its line: docs/facts.md, "Inline chains". Each
/// inlined scope's DW_AT_call_file/call_line is where the next outer function called it.
void DwflSymbolizer::add_inline_chain(Dwarf_Die* cudie, Dwarf_Addr dwarf_bias, uint64_t lookup_pc,
                                      SourceFrame& outer, std::vector<SourceFrame>& frames) {
    // The DIE ancestors of the innermost scope holding the pc, up to the CU: what
    // dwarf_getscopes + dwarf_getscopes_die gave, without their walks of the whole CU
    // (src/symbolize/dwarf_scopes.cpp).
    auto children = cu_children_.find(cudie->addr);
    if (children == cu_children_.end())
        children = cu_children_.emplace(cudie->addr, CuChildren{ranged_children(cudie), {}}).first;
    std::vector<Dwarf_Die> chain =
        scopes_at_pc(cudie, children->second.top, lookup_pc - dwarf_bias);
    if (chain.empty()) {
        // GCC and clang put C++ function definitions at unit level; rustc nests them in
        // namespaces (and both may nest class-scope ones), which the unit-level list skips.
        auto& nested = children->second.nested;
        if (!nested) nested = nested_ranged_children(cudie);
        chain = scopes_at_pc(cudie, *nested, lookup_pc - dwarf_bias);
    }
    if (chain.empty()) return;
    // dwarf_getscopes answered nothing when it could not find the abstract origin of the
    // innermost inlined scope (dwarf_getscopes.c): keep that, so the frames stay the same.
    for (Dwarf_Die& scope : chain) {
        if (dwarf_tag(&scope) != DW_TAG_inlined_subroutine) continue;
        Dwarf_Attribute attr;
        Dwarf_Die origin;
        if (dwarf_attr(&scope, DW_AT_abstract_origin, &attr) == nullptr ||
            dwarf_formref_die(&attr, &origin) == nullptr || die_ancestors(&origin).empty())
            return;
        break;
    }
    Dwarf_Files* files = nullptr;
    size_t nfiles = 0;
    if (dwarf_getsrcfiles(cudie, &files, &nfiles) != 0) files = nullptr;
    const char* comp_dir = comp_dir_of(cudie);
    std::string file = outer.file;
    int line = outer.line;
    for (Dwarf_Die& scope : chain) {
        Dwarf_Die* die = &scope;
        int tag = dwarf_tag(die);
        if (tag == DW_TAG_subprogram) {
            outer.file = file;
            outer.line = line;
            outer.start_line = decl_line(die);
            if (is_legacy_rust_closure(outer.function))
                if (std::string name = die_string(die, DW_AT_name); !name.empty())
                    outer.function = declaration_scope(die).value_or("") + name;
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
            const char* name =
                files != nullptr && static_cast<size_t>(call_file) < nfiles
                    ? dwarf_filesrc(files, static_cast<size_t>(call_file), nullptr, nullptr)
                    : nullptr;
            file = absolute_source(name, comp_dir);
            line = attr_int(die, DW_AT_call_line);
        }
    }
}

/// The CU whose ranges hold lookup_pc, or nullptr: libdwfl's (from .debug_aranges) when its
/// ranges really hold the pc, else the one cu_index finds.
Dwarf_Die* DwflSymbolizer::cu_at(Dwfl_Module* mod, ModuleInfo& info, uint64_t lookup_pc,
                                 Dwarf_Addr* bias) {
    Dwarf_Die* cu = dwfl_module_addrdie(mod, lookup_pc, bias);
    if (cu != nullptr && dwarf_haspc(cu, lookup_pc - *bias) > 0) return cu;
    if (info.cu_index == nullptr) info.cu_index = build_cu_index(mod);
    const CuIndex& index = *info.cu_index;
    const Dwarf_Addr pc = lookup_pc - index.bias;
    auto it = std::upper_bound(index.ranges.begin(), index.ranges.end(), pc,
                               [](Dwarf_Addr a, const CuRange& r) { return a < r.start; });
    // Ranges of different CUs do not overlap, but one CU's may sit inside a gap of another's
    // list: look back over the few that start below pc.
    for (int back = 0; it != index.ranges.begin() && back < 8; ++back) {
        --it;
        if (pc >= it->start && pc < it->end) {
            *bias = index.bias;
            return &info.cu_index->units[it->cu];
        }
    }
    return nullptr;
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
    ModuleInfo& info = module_info(mod);
    s.module = info.name;
    s.build_id = info.build_id;
    // The ELF virtual address: `addr2line -e module 0xOFF` and pprof's Mapping agree on it.
    s.module_offset = frame.pc - info.bias;
    // Everything below depends on the lookup address within the module only.
    const uint64_t key = lookup_pc - info.bias;
    if (auto hit = info.cached.find(key); hit != info.cached.end()) {
        s.frames = hit->second;
        return s;
    }
    s.frames = compute_frames(mod, info, lookup_pc);
    remember(mod, info, key, s.frames);
    return s;
}

std::vector<SourceFrame> DwflSymbolizer::compute_frames(Dwfl_Module* mod, ModuleInfo& info,
                                                        uint64_t lookup_pc) {
    std::vector<SourceFrame> frames;
    if (info.symbols == nullptr) info.symbols = std::make_unique<SymbolTable>(mod);
    GElf_Off offset = 0;
    GElf_Sym sym{};
    const char* symbol = info.symbols->addrinfo(lookup_pc, &offset, &sym);
    if (symbol == nullptr || !symbol_covers(sym, offset)) return frames;

    SourceFrame outer;
    outer.mangled = symbol;
    outer.function = demangle(unversioned_name(symbol));  // mangled keeps the version
    // dwfl_module_getsrc answers with the nearest line row even for code no CU covers (_start,
    // from crt1.o without DWARF): use it only when the CU's ranges hold the pc.
    Dwarf_Addr cu_bias = 0;
    Dwarf_Die* cu = cu_at(mod, info, lookup_pc, &cu_bias);
    if (opt_.source_lines && cu != nullptr) {
        int lineno = 0;
        const char* file = nullptr;
        const char* comp_dir = nullptr;
        if (Dwfl_Line* line = dwfl_module_getsrc(mod, lookup_pc)) {
            file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr);
            comp_dir = dwfl_line_comp_dir(line);
        } else if (Dwarf_Line* dline = dwarf_getsrc_die(cu, lookup_pc - cu_bias)) {
            // The CU came from cu_index (no .debug_aranges entry): libdwfl cannot find its lines.
            file = dwarf_linesrc(dline, nullptr, nullptr);
            dwarf_lineno(dline, &lineno);
            comp_dir = comp_dir_of(cu);
        }
        outer.file = absolute_source(file, comp_dir);
        outer.line = file != nullptr ? lineno : 0;
    }
    if (opt_.inlines && cu != nullptr) add_inline_chain(cu, cu_bias, lookup_pc, outer, frames);
    frames.push_back(std::move(outer));
    return frames;
}

}  // namespace

std::unique_ptr<Symbolizer> make_symbolizer(ProcessImage& image, const SymbolizeOptions& opt) {
    return std::make_unique<DwflSymbolizer>(image, opt);
}

}  // namespace pmprof
