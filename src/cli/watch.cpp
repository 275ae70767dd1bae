// `pmprof stacks --watch N`: repeated dumps and a progress verdict per thread.
#include "pmprof/cli/watch.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <thread>

#include "pmprof/os/clock.h"
#include "pmprof/os/procfs.h"
#include "pmprof/threads/locks.h"

namespace pmprof {
namespace {

// A blocked thread resumed by pmprof's detach runs a few microseconds and re-enters its
// syscall (one more voluntary switch) possibly after the settle time: tolerated per gap.
constexpr uint64_t kCpuPerGapNs = 2'000'000;
constexpr uint64_t kSwitchesPerGap = 1;
constexpr double kSpinCpuShare = 0.05;  // of the gaps' wall time (a loaded machine shares cpus)

ThreadCounters read_counters(pid_t pid, pid_t tid) {
    ThreadCounters c;
    auto ss = read_schedstat(pid, tid);
    auto st = read_task_status(pid, tid);
    if (!ss.ok() || !st.ok()) return c;
    c.run_ns = ss->run_ns;
    c.voluntary = st->voluntary_ctxt_switches;
    c.involuntary = st->nonvoluntary_ctxt_switches;
    c.ok = true;
    return c;
}

std::map<pid_t, ThreadCounters> read_all(pid_t pid, const ThreadDump& d) {
    std::map<pid_t, ThreadCounters> out;
    for (const ThreadEntry& t : d.threads) out[t.tid] = read_counters(pid, t.tid);
    return out;
}

std::vector<uint64_t> pcs_of(const ThreadEntry& t) {
    std::vector<uint64_t> pcs;
    for (const RawFrame& f : t.stack.frames) pcs.push_back(f.pc);
    return pcs;
}

std::string innermost_function(const ThreadEntry& t) {
    if (t.frames.empty() || t.frames.front().frames.empty()) return {};
    return t.frames.front().frames.back().function;  // the function the pc's code belongs to
}

const char* verdict_name(Progress p) {
    switch (p) {
    case Progress::Progressing:
        return "progressing";
    case Progress::Stuck:
        return "stuck";
    case Progress::Spinning:
        return "spinning";
    case Progress::Gone:
        return "gone";
    }
    return "?";
}

}  // namespace

ThreadProgress judge_progress(const std::vector<const ThreadEntry*>& seen, uint64_t cpu_ns,
                              uint64_t voluntary, uint64_t involuntary, size_t intervals,
                              uint64_t gap_ns) {
    ThreadProgress p;
    p.cpu_ns = cpu_ns;
    p.voluntary = voluntary;
    p.involuntary = involuntary;
    if (seen.empty()) {
        p.verdict = Progress::Gone;
        return p;
    }
    p.tid = seen.back()->tid;
    p.name = seen.back()->name;
    // Stacks compared between the dumps that captured the thread (a thread that did not stop in
    // time on a busy machine says nothing about its stack).
    std::vector<const ThreadEntry*> captured;
    for (const ThreadEntry* t : seen)
        if (t->captured) captured.push_back(t);
    if (!captured.empty()) p.function = innermost_function(*captured.front());
    for (const ThreadEntry* t : captured) {
        if (pcs_of(*t) != pcs_of(*captured.front())) p.stack_changed = true;
        if (innermost_function(*t) != p.function || p.function.empty()) p.same_function = false;
    }
    if (captured.size() < 2) p.same_function = false;
    if (seen.size() < 2 || intervals == 0) {
        p.verdict = Progress::Gone;  // not seen long enough to judge
        return p;
    }
    const uint64_t switches = voluntary + involuntary;
    if (!p.stack_changed && !captured.empty() && cpu_ns <= kCpuPerGapNs * intervals &&
        switches <= kSwitchesPerGap * intervals) {
        p.verdict = Progress::Stuck;
    } else if (p.same_function && voluntary <= kSwitchesPerGap * intervals &&
               static_cast<double>(cpu_ns) >= kSpinCpuShare * static_cast<double>(gap_ns)) {
        // On cpu most of the time, never blocked, and in the same function at every dump.
        p.verdict = Progress::Spinning;
    } else {
        p.verdict = Progress::Progressing;
    }
    return p;
}

Result<WatchResult> watch_threads(pid_t pid, const DumpOptions& opt, size_t count,
                                  std::chrono::milliseconds interval) {
    WatchResult w;
    w.interval = interval;
    std::vector<ThreadDump> dumps;
    std::vector<std::map<pid_t, ThreadCounters>> before, after;  // per dump
    std::vector<int64_t> taken_ns;
    const auto settle = std::min(interval / 4, std::chrono::milliseconds(20));
    for (size_t i = 0; i < count; ++i) {
        if (i > 0) {
            std::this_thread::sleep_for(interval - settle);
            before.push_back(read_all(pid, dumps.back()));
        }
        auto dump = take_thread_dump(pid, opt);
        if (!dump.ok()) {
            if (dumps.empty()) return dump.error();
            break;  // the target exited: judge what was seen
        }
        taken_ns.push_back(monotonic_ns());
        dumps.push_back(std::move(*dump));
        if (i + 1 < count) {
            std::this_thread::sleep_for(settle);
            after.push_back(read_all(pid, dumps.back()));
        }
    }
    w.dumps = dumps.size();
    if (taken_ns.size() >= 2)
        w.span_s = static_cast<double>(taken_ns.back() - taken_ns.front()) / 1e9;

    // Every thread of the last dump (and those gone before it), judged over its gaps.
    std::map<pid_t, std::vector<const ThreadEntry*>> seen;
    for (const ThreadDump& d : dumps)
        for (const ThreadEntry& t : d.threads) seen[t.tid].push_back(&t);
    for (const auto& [tid, entries] : seen) {
        uint64_t cpu = 0, vol = 0, invol = 0, gap = 0;
        size_t gaps = 0;
        for (size_t g = 0; g < after.size() && g < before.size(); ++g) {
            auto a = after[g].find(tid);
            auto b = before[g].find(tid);
            if (a == after[g].end() || b == before[g].end() || !a->second.ok || !b->second.ok)
                continue;
            cpu += b->second.run_ns - std::min(b->second.run_ns, a->second.run_ns);
            vol += b->second.voluntary - std::min(b->second.voluntary, a->second.voluntary);
            invol += b->second.involuntary - std::min(b->second.involuntary, a->second.involuntary);
            gap += static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(interval - settle).count());
            ++gaps;
        }
        ThreadProgress p = judge_progress(entries, cpu, vol, invol, gaps, gap);
        p.tid = tid;
        if (std::none_of(dumps.back().threads.begin(), dumps.back().threads.end(),
                         [want = tid](const ThreadEntry& t) { return t.tid == want; }))
            p.verdict = Progress::Gone;
        p.watched_s = static_cast<double>(gap) / 1e9;
        w.threads.push_back(std::move(p));
    }
    auto rank = [](Progress v) {
        switch (v) {
        case Progress::Stuck:
            return 0;
        case Progress::Spinning:
            return 1;
        case Progress::Progressing:
            return 2;
        case Progress::Gone:
            return 3;
        }
        return 3;
    };
    std::stable_sort(w.threads.begin(), w.threads.end(),
                     [&](const ThreadProgress& a, const ThreadProgress& b) {
                         return rank(a.verdict) < rank(b.verdict);
                     });
    w.last = std::move(dumps.back());
    return w;
}

std::string format_watch_text(const WatchResult& w, const ThreadTextOptions& opt) {
    std::string out = fmt::format("Watched process {} ({}): {} dumps {} ms apart, {:.1f} s\n",
                                  w.last.pid, w.last.command.empty() ? "?" : w.last.command,
                                  w.dumps, w.interval.count(), w.span_s);
    auto section = [&](Progress v, const char* title) {
        bool any = false;
        for (const ThreadProgress& p : w.threads) {
            if (p.verdict != v) continue;
            if (!any) out += fmt::format("\n{}\n", title);
            any = true;
            out += fmt::format("  thread {} \"{}\"", p.tid, p.name);
            const ThreadEntry* t = nullptr;
            for (const ThreadEntry& e : w.last.threads)
                if (e.tid == p.tid) t = &e;
            switch (v) {
            case Progress::Stuck:
                out += fmt::format(": stuck for at least {:.1f} s", p.watched_s);
                if (t != nullptr)
                    out += ", " + (t->lock.kind != LockKind::None ? describe_wait(w.last, *t)
                                                                  : describe_activity(*t));
                break;
            case Progress::Spinning:
                out += fmt::format(": spinning in {}, on cpu {:.0f} ms of {:.1f} s, never blocked",
                                   p.function, static_cast<double>(p.cpu_ns) / 1e6, p.watched_s);
                break;
            case Progress::Progressing:
                out += fmt::format(": cpu {:.1f} ms, {} context switches{}",
                                   static_cast<double>(p.cpu_ns) / 1e6, p.voluntary + p.involuntary,
                                   p.stack_changed ? ", stack changed" : ", same stack");
                break;
            case Progress::Gone:
                out += ": not in every dump (born or exited meanwhile)";
                break;
            }
            out += '\n';
        }
    };
    section(Progress::Stuck, "Stuck (same stack, no cpu, no context switch):");
    section(Progress::Spinning,
            "Spinning (on cpu in the same function at every dump, never blocked):");
    section(Progress::Progressing, "Progressing:");
    section(Progress::Gone, "Not judged:");
    out += "\nLast dump:\n" + format_thread_dump_text(w.last, opt);
    return out;
}

std::string format_watch_json(const WatchResult& w) {
    std::string out = fmt::format("{{\"watch\":{{\"dumps\":{},\"interval_ms\":{},\"span_s\":{:.3f},"
                                  "\"threads\":[",
                                  w.dumps, w.interval.count(), w.span_s);
    for (size_t i = 0; i < w.threads.size(); ++i) {
        const ThreadProgress& p = w.threads[i];
        std::string fn;
        for (char c : p.function) {
            if (c == '"' || c == '\\') fn += '\\';
            fn += c;
        }
        out += fmt::format("{}{{\"tid\":{},\"verdict\":\"{}\",\"cpu_ns\":{},\"voluntary\":{},"
                           "\"involuntary\":{},\"stack_changed\":{},\"function\":\"{}\","
                           "\"watched_s\":{:.3f}}}",
                           i ? "," : "", p.tid, verdict_name(p.verdict), p.cpu_ns, p.voluntary,
                           p.involuntary, p.stack_changed, fn, p.watched_s);
    }
    std::string last = format_thread_dump_json(w.last);
    while (!last.empty() && last.back() == '\n') last.pop_back();
    out += "]},\"dump\":" + last + "}\n";
    return out;
}

}  // namespace pmprof
