// `pmprof doctor PID`: what would stop or degrade pmprof on this target and host, each finding
// with its fix. Reads /proc and files only: the target is never traced or stopped.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "pmprof/support/types.h"

namespace pmprof {

enum class Verdict { Ok, Info, Degraded, Blocker };

struct Finding {
    std::string section;  // "tracing", "memory", "perf", "debug", "unwind", "allocator", "threads"
    std::string subject;  // "ptrace", "libc.so.6", ...
    Verdict verdict = Verdict::Ok;
    std::string message;
    std::string fix;  // "" when nothing is to be done
};

struct DoctorReport {
    pid_t pid = 0;
    std::string command;
    std::vector<Finding> findings;
    Verdict worst() const;
};

/// Every check; `pid` must exist (the caller refuses a missing process first).
DoctorReport run_doctor(pid_t pid);

/// The debug and unwind findings of one ELF module (src/doctor/modules.cpp): symtab, DWARF,
/// build id, separate debug file, debuginfod; .eh_frame_hdr and frame pointers.
void inspect_module(pid_t pid, const MemoryMap& map, std::vector<Finding>* out);

/// "ok", "info", "degraded", "blocker".
const char* verdict_name(Verdict v);
/// Readable text, one line per finding (fixes indented under it), and the summary line.
std::string format_doctor_text(const DoctorReport& r);
std::string format_doctor_json(const DoctorReport& r);

/// Exit status: 0 all fine (info only), 1 something stops pmprof, 3 only degradations.
int doctor_exit_code(const DoctorReport& r);

}  // namespace pmprof
