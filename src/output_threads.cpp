// Text and JSON writers for a ThreadDump. Pure functions of the model: no target access.
#include "pmprof/output_threads.h"

#include <fmt/format.h>

#include <string>

#include "pmprof/symbolize.h"

namespace pmprof {
namespace {

std::string base_name(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

/// "sleeping in epoll_wait (wchan do_epoll_wait)".
std::string describe_state(const ThreadEntry& t) {
    std::string s(thread_state_name(t.state));
    if (!t.syscall.empty()) s += " in " + t.syscall;
    if (!t.wchan.empty()) s += " (wchan " + t.wchan + ")";
    return s;
}

void append_frames(std::string& out, const ThreadEntry& t, bool source_lines) {
    if (!t.captured) {
        out += fmt::format("    (no stack: {})\n", t.error);
        return;
    }
    size_t n = 0;
    for (const SymbolizedPc& pc : t.frames) {
        size_t chain = pc.frames.empty() ? 1 : pc.frames.size();
        for (size_t k = 0; k < chain; ++k)
            out += fmt::format("    #{:<3} 0x{:016x} {}\n", n++, pc.pc, format_frame(pc, k, source_lines));
    }
    if (t.stack.truncated)
        out += fmt::format("    ... stack truncated: {}\n",
                           t.stack.stop_reason.empty() ? "unwinding stopped" : t.stack.stop_reason);
}

void json_escape(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20)
                out += fmt::format("\\u{:04x}", c);
            else
                out += static_cast<char>(c);
        }
    }
    out += '"';
}

std::string json_str(const std::string& s) {
    std::string out;
    json_escape(out, s);
    return out;
}

}  // namespace

std::string format_frame(const SymbolizedPc& pc, size_t index_in_chain, bool source_lines) {
    std::string module = pc.module.empty() ? "" : base_name(pc.module);
    if (pc.frames.empty()) {
        if (module.empty()) return "??";
        return module_offset_label(pc);
    }
    const SourceFrame& f = pc.frames[index_in_chain];
    std::string text = f.function.empty() ? module_offset_label(pc) : f.function;
    if (source_lines && !f.file.empty()) text += fmt::format(" ({}:{})", base_name(f.file), f.line);
    if (!module.empty()) text += " [" + module + "]";
    if (index_in_chain + 1 < pc.frames.size()) text += " (inlined)";
    return text;
}

std::string format_thread_dump_text(const ThreadDump& dump, const ThreadTextOptions& opt) {
    std::string out = fmt::format("Process {} ({}): {} threads\n", dump.pid,
                                  dump.command.empty() ? "?" : dump.command, dump.threads.size());
    std::vector<std::vector<size_t>> groups;
    if (opt.group) {
        groups = group_threads(dump);
    } else {
        for (size_t i = 0; i < dump.threads.size(); ++i) groups.push_back({i});
    }
    for (const std::vector<size_t>& g : groups) {
        out += '\n';
        const ThreadEntry& first = dump.threads[g.front()];
        if (g.size() == 1) {
            out += fmt::format("Thread {} \"{}\" {}\n", first.tid, first.name, describe_state(first));
        } else {
            out += fmt::format("{} threads:", g.size());
            for (size_t k = 0; k < g.size(); ++k) {
                const ThreadEntry& t = dump.threads[g[k]];
                out += fmt::format("{} {} ({})", k ? "," : "", t.name, t.tid);
            }
            out += '\n';
            bool same_state = true;
            for (size_t i : g) same_state &= describe_state(dump.threads[i]) == describe_state(first);
            if (same_state) {
                out += "  " + describe_state(first) + "\n";
            } else {
                for (size_t i : g)
                    out += fmt::format("  {} ({}): {}\n", dump.threads[i].name, dump.threads[i].tid,
                                       describe_state(dump.threads[i]));
            }
        }
        append_frames(out, first, opt.source_lines);
    }
    return out;
}

std::string format_thread_dump_json(const ThreadDump& dump) {
    std::string out = fmt::format("{{\"pid\":{},\"command\":{},\"time_nanos\":{},"
                                  "\"stop_window_us\":{},\"unwind_failures\":{},\"threads\":[",
                                  dump.pid, json_str(dump.command), dump.time_nanos,
                                  dump.stats.stop_window_ns / 1000, dump.unwind_failures);
    for (size_t i = 0; i < dump.threads.size(); ++i) {
        const ThreadEntry& t = dump.threads[i];
        out += fmt::format("{}{{\"tid\":{},\"name\":{},\"state\":{},\"syscall\":{},\"wchan\":{},"
                           "\"captured\":{},\"error\":{},\"truncated\":{},\"stop_reason\":{},\"frames\":[",
                           i ? "," : "", t.tid, json_str(t.name),
                           json_str(std::string(thread_state_name(t.state))), json_str(t.syscall),
                           json_str(t.wchan), t.captured, json_str(t.error), t.stack.truncated,
                           json_str(t.stack.stop_reason));
        for (size_t k = 0; k < t.frames.size(); ++k) {
            const SymbolizedPc& pc = t.frames[k];
            out += fmt::format("{}{{\"pc\":\"0x{:x}\",\"module\":{},\"build_id\":{},\"offset\":\"0x{:x}\","
                               "\"functions\":[",
                               k ? "," : "", pc.pc, json_str(pc.module), json_str(pc.build_id),
                               pc.module_offset);
            for (size_t j = 0; j < pc.frames.size(); ++j) {
                const SourceFrame& f = pc.frames[j];
                out += fmt::format("{}{{\"function\":{},\"mangled\":{},\"file\":{},\"line\":{},"
                                   "\"inlined\":{}}}",
                                   j ? "," : "", json_str(f.function), json_str(f.mangled),
                                   json_str(f.file), f.line, f.inlined);
            }
            out += "]}";
        }
        out += "]}";
    }
    out += "],\"groups\":[";
    auto groups = group_threads(dump);
    for (size_t g = 0; g < groups.size(); ++g) {
        out += g ? ",[" : "[";
        for (size_t k = 0; k < groups[g].size(); ++k)
            out += fmt::format("{}{}", k ? "," : "", dump.threads[groups[g][k]].tid);
        out += ']';
    }
    out += "]}\n";
    return out;
}

}  // namespace pmprof
