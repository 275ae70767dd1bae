// Text and JSON writers for a ThreadDump. Pure functions of the model: no target access.
#include "pmprof/output/threads.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <string>

#include "pmprof/support/path.h"
#include "pmprof/symbolize/symbolize.h"
#include "pmprof/threads/locks.h"

namespace pmprof {
namespace {

/// "sleeping in epoll_wait (wchan do_epoll_wait)".
std::string describe_state(const ThreadEntry& t) {
    std::string s(thread_state_name(t.state));
    if (!t.syscall.empty()) s += " in " + t.syscall;
    if (!t.restarts.empty()) s += " (restarting " + t.restarts + ")";
    if (!t.wchan.empty()) s += " (wchan " + t.wchan + ")";
    return s;
}

void append_frames(std::string& out, const ThreadEntry& t, bool source_lines) {
    // The kernel side first: it is the innermost part of the stack.
    for (const std::string& k : t.kernel_frames) out += fmt::format("    [kernel] {}\n", k);
    if (!t.captured) {
        out += fmt::format("    (no stack: {})\n", t.error);
        return;
    }
    size_t n = 0;
    for (const SymbolizedPc& pc : t.frames) {
        size_t chain = pc.frames.empty() ? 1 : pc.frames.size();
        for (size_t k = 0; k < chain; ++k)
            out += fmt::format("    #{:<3} 0x{:016x} {}\n", n++, pc.pc,
                               format_frame(pc, k, source_lines));
    }
    if (t.stack.truncated)
        out += fmt::format("    ... stack truncated: {}\n",
                           t.stack.stop_reason.empty() ? "unwinding stopped" : t.stack.stop_reason);
}

void json_escape(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\t':
            out += "\\t";
            break;
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

std::string json_tids(const std::vector<pid_t>& tids) {
    std::string out = "[";
    for (size_t i = 0; i < tids.size(); ++i) out += fmt::format("{}{}", i ? "," : "", tids[i]);
    return out + "]";
}

const ThreadEntry* find_entry(const ThreadDump& dump, pid_t tid) {
    for (const ThreadEntry& t : dump.threads)
        if (t.tid == tid) return &t;
    return nullptr;
}

/// [{"threads":[a,b],"locks":["0x..", "0x.."]}]: threads[i] waits for locks[i], held by
/// threads[i + 1].
std::string json_cycles(const ThreadDump& dump) {
    std::string out = "[";
    for (size_t c = 0; c < dump.locks.cycles.size(); ++c) {
        const LockCycle& cy = dump.locks.cycles[c];
        out += fmt::format("{}{{\"threads\":{},\"locks\":[", c ? "," : "", json_tids(cy.threads));
        for (size_t i = 0; i < cy.threads.size(); ++i) {
            const ThreadEntry* t = find_entry(dump, cy.threads[i]);
            out += fmt::format("{}\"0x{:x}\"", i ? "," : "", t ? t->lock.address : 0);
        }
        out += "]}";
    }
    return out + "]";
}

std::string json_chains(const ThreadDump& dump) {
    std::string out = "[";
    for (size_t c = 0; c < dump.locks.chains.size(); ++c) {
        const LockChain& ch = dump.locks.chains[c];
        out += fmt::format("{}{{\"heads\":{},\"threads\":{},\"ends_in_cycle\":{}}}", c ? "," : "",
                           json_tids(ch.heads), json_tids(ch.threads), ch.ends_in_cycle);
    }
    return out + "]";
}

std::string json_lock(const ThreadDump& dump, const ThreadEntry& t) {
    const LockWait& w = t.lock;
    if (w.kind == LockKind::None) return "null";
    return fmt::format("{{\"kind\":{},\"address\":\"0x{:x}\",\"futex\":\"0x{:x}\",\"name\":{},"
                       "\"type\":{},\"owner\":{},\"owner_exited\":{},\"owner_died\":{},"
                       "\"owner_process\":{},\"readers\":{},\"count\":{},\"waiters\":{},"
                       "\"released\":{},\"note\":{},\"text\":{}}}",
                       json_str(lock_kind_name(w.kind)), w.address, w.futex, json_str(w.name),
                       json_str(w.type), w.owner, w.owner_exited, w.owner_died, w.owner_process,
                       w.readers, w.count, w.waiters, w.released, json_str(w.note),
                       json_str(describe_wait(dump, t)));
}

}  // namespace

std::string format_frame(const SymbolizedPc& pc, size_t index_in_chain, bool source_lines) {
    std::string module(base_name(pc.module));
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
    out += format_lock_graph_text(dump);
    std::vector<std::vector<size_t>> groups;
    if (opt.group) {
        groups = group_threads(dump);
    } else {
        for (size_t i = 0; i < dump.threads.size(); ++i) groups.push_back({i});
    }
    // The threads of deadlocks first, then those of lock chains: their stacks are the answer.
    std::set<pid_t> in_cycle, in_chain;
    for (const LockCycle& c : dump.locks.cycles)
        in_cycle.insert(c.threads.begin(), c.threads.end());
    for (const LockChain& c : dump.locks.chains) {
        in_chain.insert(c.heads.begin(), c.heads.end());
        in_chain.insert(c.threads.begin(), c.threads.end());
    }
    auto rank = [&](const std::vector<size_t>& g) {
        int r = 2;
        for (size_t i : g) {
            if (in_cycle.contains(dump.threads[i].tid)) return 0;
            if (in_chain.contains(dump.threads[i].tid)) r = 1;
        }
        return r;
    };
    std::stable_sort(groups.begin(), groups.end(),
                     [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
    for (const std::vector<size_t>& g : groups) {
        out += '\n';
        const ThreadEntry& first = dump.threads[g.front()];
        if (g.size() == 1) {
            out +=
                fmt::format("Thread {} \"{}\" {}\n", first.tid, first.name, describe_state(first));
        } else {
            out += fmt::format("{} threads:", g.size());
            for (size_t k = 0; k < g.size(); ++k) {
                const ThreadEntry& t = dump.threads[g[k]];
                out += fmt::format("{} {} ({})", k ? "," : "", t.name, t.tid);
            }
            out += '\n';
            bool same_state = true;
            for (size_t i : g)
                same_state &= describe_state(dump.threads[i]) == describe_state(first);
            if (same_state) {
                out += "  " + describe_state(first) + "\n";
            } else {
                for (size_t i : g)
                    out += fmt::format("  {} ({}): {}\n", dump.threads[i].name, dump.threads[i].tid,
                                       describe_state(dump.threads[i]));
            }
        }
        if (first.lock.kind != LockKind::None) out += "  " + describe_wait(dump, first) + "\n";
        append_frames(out, first, opt.source_lines);
    }
    return out;
}

std::string format_thread_dump_json(const ThreadDump& dump) {
    std::string out = fmt::format("{{\"pid\":{},\"command\":{},\"time_nanos\":{},"
                                  "\"stop_window_us\":{},\"unwind_failures\":{},\"deadlock\":{},"
                                  "\"deadlocks\":{},\"lock_chains\":{},\"threads\":[",
                                  dump.pid, json_str(dump.command), dump.time_nanos,
                                  dump.stats.stop_window_ns / 1000, dump.unwind_failures,
                                  dump.locks.deadlock(), json_cycles(dump), json_chains(dump));
    for (size_t i = 0; i < dump.threads.size(); ++i) {
        const ThreadEntry& t = dump.threads[i];
        out += fmt::format("{}{{\"tid\":{},\"name\":{},\"state\":{},\"syscall\":{},\"wchan\":{},"
                           "\"captured\":{},\"error\":{},\"truncated\":{},\"stop_reason\":{},",
                           i ? "," : "", t.tid, json_str(t.name),
                           json_str(std::string(thread_state_name(t.state))), json_str(t.syscall),
                           json_str(t.wchan), t.captured, json_str(t.error), t.stack.truncated,
                           json_str(t.stack.stop_reason));
        out += "\"lock\":" + json_lock(dump, t) + ",\"restarts\":" + json_str(t.restarts) +
               ",\"kernel_frames\":[";
        for (size_t k = 0; k < t.kernel_frames.size(); ++k)
            out += (k ? "," : "") + json_str(t.kernel_frames[k]);
        out += "],\"frames\":[";
        for (size_t k = 0; k < t.frames.size(); ++k) {
            const SymbolizedPc& pc = t.frames[k];
            out += fmt::format(
                "{}{{\"pc\":\"0x{:x}\",\"module\":{},\"build_id\":{},\"offset\":\"0x{:x}\","
                "\"functions\":[",
                k ? "," : "", pc.pc, json_str(pc.module), json_str(pc.build_id), pc.module_offset);
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
