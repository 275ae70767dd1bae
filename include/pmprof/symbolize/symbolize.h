// Symbolization with libdwfl: demangled function (mangled kept), file:line, the whole inline
// chain, module and build id. Cached per pc. An address no symbol's extent covers gets no frames
// (callers print module+0xOFFSET) — never the nearest preceding symbol.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "pmprof/elf/image.h"
#include "pmprof/support/types.h"

namespace pmprof {

struct SymbolizeOptions {
    bool source_lines = true;  // file:line
    bool inlines = true;       // inline chains
};

class Symbolizer {
  public:
    virtual ~Symbolizer() = default;
    /// `frame.lookup_pc()` is what is looked up; the result's pc is frame.pc.
    virtual const SymbolizedPc& symbolize(const RawFrame& frame) = 0;
};

/// `image` must outlive the symbolizer.
std::unique_ptr<Symbolizer> make_symbolizer(ProcessImage& image, const SymbolizeOptions& opt);

/// Demangles a C++ (Itanium, with GCC's clone suffixes) or Rust (legacy or v0) symbol as gdb
/// and perf print it, without Rust's hash and ThinLTO's ".llvm.N"; returns a name that is not
/// mangled unchanged.
std::string demangle(const std::string& mangled);
/// Demangles an Itanium type encoding ("N2ns3FooE" from a type_info's name); unchanged when it
/// is not one.
std::string demangle_type(const std::string& mangled);
/// "libc.so.6+0x1234" style label for a pc without symbol.
std::string module_offset_label(const SymbolizedPc& s);

}  // namespace pmprof
