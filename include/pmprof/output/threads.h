// Writers for a ThreadDump: grouped or per-thread text, and JSON.
#pragma once

#include <string>

#include "pmprof/threads/dump.h"

namespace pmprof {

struct ThreadTextOptions {
    bool group = true;         // identical stacks printed once, with every thread named
    bool source_lines = true;  // "(file.cc:42)"
};

/// The human-readable dump `pmprof stacks` prints.
std::string format_thread_dump_text(const ThreadDump& dump, const ThreadTextOptions& opt);
/// Machine-readable: process, threads with states and frames (inline chains), groups.
std::string format_thread_dump_json(const ThreadDump& dump);
/// "frame text" for one function of a pc: "name (file:line) [module]" or "module+0xOFF".
std::string format_frame(const SymbolizedPc& pc, size_t index_in_chain, bool source_lines);

}  // namespace pmprof
