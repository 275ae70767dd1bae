// analyze_locks (naming each lock and checking its owner after the threads run again) and the
// text of the lock lines and of the deadlock and chain section.
#include <fmt/format.h>
#include <unistd.h>

#include <sys/syscall.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "pmprof/os/procfs.h"
#include "pmprof/support/path.h"
#include "pmprof/symbolize/data_symbol.h"
#include "pmprof/threads/dump.h"
#include "pmprof/threads/locks.h"

namespace pmprof {
namespace {

/// The object size of a lock kind and the offsets of the words its waiters sleep on.
struct KindShape {
    uint64_t size;
    std::vector<uint64_t> futex_offsets;
};

KindShape shape_of(LockKind k) {
    switch (k) {
    case LockKind::RwLockRead:
        return {56, {8, 0}};
    case LockKind::RwLockWrite:
        return {56, {12, 8}};
    case LockKind::CondVar:
        return {48, {40, 44}};
    default:
        return {0, {}};
    }
}

const ThreadEntry* find_thread(const ThreadDump& dump, pid_t tid) {
    for (const ThreadEntry& t : dump.threads)
        if (t.tid == tid) return &t;
    return nullptr;
}

bool is_shared_library(const std::string& module) {
    return module.find(".so") != std::string::npos;
}

/// Names the lock by the variable holding it, else by where it lives.
void name_lock(LockWait& w, const ThreadDump& dump, ProcessImage& image) {
    KindShape shape = shape_of(w.kind);
    if (w.address == 0 && shape.size != 0) {
        // An rwlock or condition variable inside a symbol: the symbol (or, for an array, the
        // element) starts the object, which tells which inner word the futex is.
        if (auto sym = find_data_symbol(image, w.futex)) {
            uint64_t rel = sym->offset;
            if (sym->size > shape.size && sym->size % shape.size == 0) rel %= shape.size;
            for (uint64_t off : shape.futex_offsets)
                if (rel == off) w.address = w.futex - off;
        }
    }
    const uint64_t at = w.address != 0 ? w.address : w.futex;
    if (auto sym = find_data_symbol(image, at)) {
        w.name = sym->offset == 0 ? sym->name : fmt::format("{}+0x{:x}", sym->name, sym->offset);
        if (is_shared_library(sym->module)) w.name += " in " + sym->module;
        return;
    }
    const MemoryMap* map = find_mapping(dump.maps, at);
    if (map == nullptr) {
        w.name = "unmapped";
        return;
    }
    if (map->path == "[stack]") {
        w.name = fmt::format("stack of thread {}", dump.pid);
        return;
    }
    if (map->path.empty() || map->path == "[heap]") {
        for (const ThreadEntry& t : dump.threads)
            if (t.captured && map->contains(t.regs.sp()) && at >= t.regs.sp()) {
                w.name = fmt::format("stack of thread {}", t.tid);
                return;
            }
        w.name = "heap";
        return;
    }
    w.name = fmt::format("{}+0x{:x}", base_name(map->path), at - map->start + map->file_offset);
    if (!map->file_backed()) w.name = map->path;
}

/// Owner checks: a tid outside the dump is looked for in the process (born since, or left out
/// by --thread), then system-wide (a process-shared lock), else it exited.
void check_owner(LockWait& w, const ThreadDump& dump) {
    if (w.owner == 0 || find_thread(dump, w.owner) != nullptr) return;
    std::string task = fmt::format("/proc/{}/task/{}", dump.pid, w.owner);
    if (::access(task.c_str(), F_OK) == 0) return;
    if (auto st = read_status(w.owner); st.ok() && st->tgid != 0 && st->tgid != dump.pid) {
        w.owner_process = st->tgid;
        return;
    }
    w.owner_exited = true;
}

std::string thread_label(const ThreadDump& dump, pid_t tid) {
    const ThreadEntry* t = find_thread(dump, tid);
    if (t == nullptr) return fmt::format("thread {}", tid);
    return fmt::format("thread {} \"{}\"", tid, t->name);
}

bool in_runtime_library(const SymbolizedPc& pc) {
    const std::string_view base = base_name(pc.module);
    return base.starts_with("libc.so") || base.starts_with("ld-linux") ||
           base.starts_with("libpthread") || base.starts_with("libstdc++") || base == "[vdso]";
}

/// The lock is read after the threads ran again: a waiter that no longer sleeps on the same
/// futex got its lock (or gave up) meanwhile, and what was read may already be its own hold.
/// A thread just detached may not have re-entered its wait yet (it waits for a cpu to return
/// from pmprof's stop, and shows "running" meanwhile): it is looked at again, 1 ms apart, within
/// a budget shared by the whole dump.
bool still_waiting(pid_t pid, const ThreadEntry& t, int& retries_left) {
    while (true) {
        auto sc = read_syscall(pid, t.tid);
        if (!sc.ok()) return false;
        if (!sc->running && sc->nr == SYS_futex) return sc->args[0] == t.lock.futex;
        if (!sc->running && sc->nr == SYS_restart_syscall)
            return t.syscall_nr == SYS_restart_syscall;
        if (!sc->running && sc->nr >= 0) return false;  // in another syscall
        if (retries_left-- <= 0) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void read_and_check(LockWait& w, const ThreadEntry& t, const ThreadDump& dump, MemoryReader& mem,
                    int& retries_left) {
    read_lock_state(w, mem);
    check_owner(w, dump);
    if (!still_waiting(dump.pid, t, retries_left)) {
        w.released = true;
        w.note = "the wait ended after the snapshot";
    }
}

}  // namespace

void analyze_locks(ThreadDump& dump, ProcessImage& image, MemoryReader& mem) {
    int retries_left = 50;  // ms
    // Many threads wait on one lock: it is named once (a symbol lookup scans a module's table).
    std::map<std::pair<uint64_t, LockKind>, std::pair<uint64_t, std::string>> named;
    for (ThreadEntry& t : dump.threads) {
        t.lock = identify_lock_wait(t);
        if (t.lock.kind == LockKind::None) continue;
        auto key = std::make_pair(t.lock.futex, t.lock.kind);
        if (auto it = named.find(key); it != named.end()) {
            t.lock.address = it->second.first;
            t.lock.name = it->second.second;
        } else {
            name_lock(t.lock, dump, image);
            named[key] = {t.lock.address, t.lock.name};
        }
        read_and_check(t.lock, t, dump, mem, retries_left);
    }
    LockGraph first = build_lock_graph(dump.threads);
    if (first.cycles.empty()) {
        dump.locks = std::move(first);
        return;
    }
    // A deadlock does not change: the threads of each cycle are read once more, and only a
    // cycle both readings show is reported.
    for (const LockCycle& c : first.cycles)
        for (pid_t tid : c.threads)
            for (ThreadEntry& t : dump.threads)
                if (t.tid == tid) {
                    LockWait again = t.lock;
                    again.owner = 0;
                    again.released = false;
                    again.note.clear();
                    read_and_check(again, t, dump, mem, retries_left);
                    t.lock = std::move(again);
                }
    dump.locks = build_lock_graph(dump.threads);
    std::erase_if(dump.locks.cycles, [&](const LockCycle& c) {
        return std::none_of(first.cycles.begin(), first.cycles.end(),
                            [&](const LockCycle& f) { return f.threads == c.threads; });
    });
}

std::string describe_lock(const LockWait& w) {
    std::string s =
        fmt::format("{} 0x{:x}", lock_kind_name(w.kind), w.address ? w.address : w.futex);
    std::string inner = w.name;
    if (!w.type.empty()) inner += (inner.empty() ? "" : ", ") + w.type;
    if (!inner.empty()) s += " (" + inner + ")";
    return s;
}

std::string describe_activity(const ThreadEntry& t) {
    std::string s(thread_state_name(t.state));
    if (!t.syscall.empty()) s += " in " + t.syscall;
    if (!t.restarts.empty()) s += " (restarting " + t.restarts + ")";
    if (t.lock.kind != LockKind::None) s = "waiting for " + describe_lock(t.lock);
    // The first frame of the program itself says more than libc's syscall wrapper.
    // Functions inlined from the standard library's headers (std::mutex::lock) are skipped too.
    const SourceFrame* top = nullptr;
    for (const SymbolizedPc& pc : t.frames) {
        if (pc.frames.empty() || in_runtime_library(pc)) continue;
        for (const SourceFrame& f : pc.frames)
            if (!f.file.starts_with("/usr/include/") && !f.file.starts_with("/usr/lib/gcc/")) {
                top = &f;
                break;
            }
        if (top != nullptr) break;
    }
    if (top == nullptr && !t.frames.empty() && !t.frames.front().frames.empty())
        top = &t.frames.front().frames.front();
    if (top != nullptr) {
        const SourceFrame& f = *top;
        s += " at " + f.function;
        if (!f.file.empty()) s += fmt::format(" ({}:{})", base_name(f.file), f.line);
    }
    return s;
}

std::string describe_wait(const ThreadDump& dump, const ThreadEntry& t) {
    const LockWait& w = t.lock;
    if (w.kind == LockKind::None) return {};
    std::string s;
    switch (w.kind) {
    case LockKind::CondVar:
        return "waiting on " + describe_lock(w) + ": a condition variable has no owner";
    case LockKind::Semaphore:
        s = "waiting on " + describe_lock(w);
        if (w.read) s += fmt::format(": value {}, {} waiting", w.count, w.waiters);
        s += w.read ? "; a semaphore has no owner" : ": a semaphore has no owner";
        if (w.released) s += " (its value rose since the snapshot: the thread is being woken)";
        return s;
    case LockKind::Futex:
        if (!w.note.empty()) return "waiting on " + describe_lock(w) + ": " + w.note;
        return "waiting on " + describe_lock(w) +
               ": not a glibc lock pmprof knows (a custom lock or an atomic wait), no owner known";
    default:
        break;
    }
    s = "waiting for " + describe_lock(w);
    if (w.released) {
        s += w.note.empty()
                 ? ", free when read after the snapshot (released since: the thread is being woken)"
                 : ": " + w.note + " (it got the lock or gave up; the dump is older than that)";
        return s;
    } else if (w.owner != 0) {
        if (w.owner == t.tid) {
            s += " held by this thread itself (it locked it twice)";
        } else {
            s += " held by " + thread_label(dump, w.owner);
            if (w.owner_exited)
                s += ", which no longer exists (leaked by a thread that exited holding it)";
            else if (w.owner_process != 0)
                s += fmt::format(" of process {}", w.owner_process);
            else if (const ThreadEntry* o = find_thread(dump, w.owner))
                s += ", which is " + describe_activity(*o);
        }
        if (w.count > 1) s += fmt::format("; held {} times (recursive)", w.count);
    } else if (w.readers > 0) {
        s += fmt::format(" held for reading by {} thread{} (glibc does not record which)",
                         w.readers, w.readers == 1 ? "" : "s");
    } else if (w.kind == LockKind::LowLevel) {
        s += ": glibc records no owner for its internal locks";
    } else if (w.read && w.note.empty()) {
        s += ", no owner recorded";
    }
    if (!w.note.empty()) s += "; " + w.note;
    return s;
}

std::string format_lock_graph_text(const ThreadDump& dump) {
    std::string out;
    for (const LockCycle& c : dump.locks.cycles) {
        out += fmt::format("\nDeadlock: {} thread{} wait{} for each other\n", c.threads.size(),
                           c.threads.size() == 1 ? "" : "s", c.threads.size() == 1 ? "s" : "");
        for (size_t i = 0; i < c.threads.size(); ++i) {
            const ThreadEntry* t = find_thread(dump, c.threads[i]);
            const ThreadEntry* prev =
                find_thread(dump, c.threads[(i + c.threads.size() - 1) % c.threads.size()]);
            if (t == nullptr || prev == nullptr) continue;
            out += fmt::format("  {} holds {} and waits for {}\n", thread_label(dump, t->tid),
                               describe_lock(prev->lock), describe_lock(t->lock));
        }
    }
    for (const ThreadEntry& t : dump.threads)
        if (t.lock.owner_exited && !t.lock.released)
            out += fmt::format("\nLeaked lock: {} waits for {} held by thread {}, which no longer "
                               "exists (it exited holding it)\n",
                               thread_label(dump, t.tid), describe_lock(t.lock), t.lock.owner);
    for (const LockChain& ch : dump.locks.chains) {
        std::string heads;
        for (size_t i = 0; i < ch.heads.size(); ++i) {
            if (i == 5) {
                heads += fmt::format(" and {} more", ch.heads.size() - 5);
                break;
            }
            heads += (i ? ", " : "") + thread_label(dump, ch.heads[i]);
        }
        out += fmt::format("\nLock chain (not a deadlock): {} wait{}", heads,
                           ch.heads.size() == 1 ? "s" : "");
        for (size_t i = 0; i + 1 < ch.threads.size(); ++i) {
            const ThreadEntry* t = find_thread(dump, ch.threads[i]);
            if (t == nullptr) break;
            if (i > 0) out += fmt::format(";\n  {} waits", thread_label(dump, t->tid));
            out += fmt::format(" for {} held by {}", describe_lock(t->lock),
                               thread_label(dump, ch.threads[i + 1]));
        }
        const ThreadEntry* last = find_thread(dump, ch.threads.back());
        if (ch.ends_in_cycle)
            out += ", which is in the deadlock above\n";
        else if (last != nullptr)
            out += ", which is " + describe_activity(*last) + "\n";
        else
            out += "\n";
    }
    return out;
}

}  // namespace pmprof
