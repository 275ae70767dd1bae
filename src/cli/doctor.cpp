// `pmprof doctor PID`: the command line and the two renderings of the report (src/doctor/checks.cpp
// has the checks). Exit 0 fine, 1 something stops pmprof, 3 pmprof works with less.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <memory>
#include <string>

#include "cli/command.h"
#include "cli/options.h"
#include "pmprof/doctor/doctor.h"
#include "pmprof/os/procfs.h"
#include "pmprof/support/error.h"

namespace pmprof {

const char* verdict_name(Verdict v) {
    switch (v) {
    case Verdict::Ok:
        return "ok";
    case Verdict::Info:
        return "info";
    case Verdict::Degraded:
        return "degraded";
    case Verdict::Blocker:
        return "blocker";
    }
    return "?";
}

namespace {

const char* section_title(const std::string& s) {
    if (s == "tracing") return "Tracing (ptrace)";
    if (s == "memory") return "Reading memory";
    if (s == "perf") return "Kernel sampling (perf events)";
    if (s == "debug") return "Debug information (symbols, file:line)";
    if (s == "unwind") return "Unwind information";
    if (s == "allocator") return "Allocator (pmprof heap)";
    return "Threads";
}

const char* tag(Verdict v) {
    switch (v) {
    case Verdict::Ok:
        return "ok  ";
    case Verdict::Info:
        return "info";
    case Verdict::Degraded:
        return "WARN";
    case Verdict::Blocker:
        return "FAIL";
    }
    return "?";
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            out += fmt::format("\\u{:04x}", c);
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

struct DoctorArgs {
    std::string pid;
    std::string format;  // "" : from -o's name (.json), else text
    std::string output;
};

int run_doctor_command(const DoctorArgs& a) {
    const pid_t pid = parse_pid(a.pid);
    const OutputPath out = prepare_output(a.output, false);
    if (process_start_ticks(pid) == 0) throw FatalError(fmt::format("no process with pid {}", pid));
    const DoctorReport r = run_doctor(pid);
    const bool json = format_for_output(a.format, a.output, "text", /*json=*/true) == "json";
    write_output(out, json ? format_doctor_json(r) : format_doctor_text(r));
    return doctor_exit_code(r);
}

}  // namespace

std::string format_doctor_text(const DoctorReport& r) {
    std::string out = fmt::format("pmprof doctor: pid {} ({})\n", r.pid,
                                  r.command.empty() ? "no command line" : r.command);
    std::string section;
    size_t blockers = 0, degraded = 0;
    for (const Finding& f : r.findings) {
        if (f.section != section) {
            section = f.section;
            out += fmt::format("\n{}\n", section_title(section));
        }
        out += fmt::format("  {}  {}\n", tag(f.verdict), f.message);
        if (!f.fix.empty()) out += fmt::format("        fix: {}\n", f.fix);
        blockers += f.verdict == Verdict::Blocker;
        degraded += f.verdict == Verdict::Degraded;
    }
    if (blockers != 0)
        out +=
            fmt::format("\n{} problem{} pmprof, {} more degrade{} it (exit status 1)\n", blockers,
                        blockers == 1 ? " stops" : "s stop", degraded, degraded == 1 ? "s" : "");
    else if (degraded != 0)
        out += fmt::format("\npmprof can trace pid {}; {} finding{} what it shows (exit "
                           "status 3)\n",
                           r.pid, degraded, degraded == 1 ? " degrades" : "s degrade");
    else
        out += fmt::format("\nnothing stops or degrades pmprof on pid {}\n", r.pid);
    return out;
}

std::string format_doctor_json(const DoctorReport& r) {
    std::string out = fmt::format("{{\"pid\":{},\"command\":{},\"status\":{},\"findings\":[", r.pid,
                                  json_string(r.command), json_string(verdict_name(r.worst())));
    for (size_t i = 0; i < r.findings.size(); ++i) {
        const Finding& f = r.findings[i];
        out += fmt::format("{}{{\"section\":{},\"subject\":{},\"verdict\":{},\"message\":{},"
                           "\"fix\":{}}}",
                           i ? "," : "", json_string(f.section), json_string(f.subject),
                           json_string(verdict_name(f.verdict)), json_string(f.message),
                           json_string(f.fix));
    }
    return out + "]}\n";
}

void add_doctor_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<DoctorArgs>();
    CLI::App* cmd = app.add_subcommand(
        "doctor", "Say what would stop or degrade pmprof on a process, and how to fix it");
    cmd->footer(
        "\nChecks, reading /proc and files only (PID is never traced or stopped): permission to "
        "trace (both uids, CAP_SYS_PTRACE, ptrace_scope, a seccomp filter on pmprof, another "
        "tracer), memory reads (process_vm_readv or its fallbacks), perf_event_paranoid, debug "
        "and unwind information of every module (symtab, DWARF, build id, separate debug file, "
        "DEBUGINFOD_URLS, .eh_frame_hdr, frame pointers), the allocator, the thread count and "
        "the pauses to expect, threads in D state.\n"
        "Exit status: 0 nothing to fix (info lines aside), 1 something stops pmprof, 3 pmprof "
        "works but shows less (degraded), 2 no such process, 64 usage error.");
    add_pid_option(cmd, &args->pid);
    cmd->add_option("-f,--format", args->format,
                    "text or json (default: json when -o ends in "
                    ".json, else text)")
        ->check(CLI::IsMember({"text", "json"}));
    cmd->add_option("-o,--output", args->output, kOutputHelp);
    cmd->callback([runner, args] { *runner = [args] { return run_doctor_command(*args); }; });
}

}  // namespace pmprof
