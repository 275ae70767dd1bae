// Lock wait-for analysis of `pmprof stacks` on tests/targets/locks_target: every owner and lock
// name exact (from the target's own ready line), cycles found where they exist and nowhere
// else, chains, conditions and semaphores without owners, --watch verdicts, and the target left
// running, untraced and killable.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "../support/harness.h"
#include "pmprof/cli/watch.h"
#include "pmprof/threads/dump.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

struct LockTarget {
    std::unique_ptr<Target> target;
    std::map<std::string, std::string> fields;

    pid_t tid(const std::string& name) const { return std::atoi(fields.at(name).c_str()); }
    uint64_t addr(const std::string& name) const {
        return std::strtoull(fields.at(name).c_str(), nullptr, 16);
    }
};

LockTarget start(std::vector<std::string> scenarios, bool fp = true) {
    std::vector<std::string> argv{target_bin("locks_target", fp)};
    argv.insert(argv.end(), scenarios.begin(), scenarios.end());
    LockTarget t;
    t.target = Target::start(argv);
    t.fields = parse_fields(t.target->ready_line());
    return t;
}

const pmprof::ThreadEntry& thread(const pmprof::ThreadDump& d, pid_t tid) {
    for (const pmprof::ThreadEntry& t : d.threads)
        if (t.tid == tid) return t;
    FAIL("no thread " << tid);
    throw 0;
}

/// A stop timeout for a machine loaded by parallel builds: a thread that does not stop in time
/// has no stack and so no lock.
pmprof::DumpOptions patient() {
    pmprof::DumpOptions opt;
    opt.capture.stop_timeout = std::chrono::milliseconds(3000);
    return opt;
}

pmprof::ThreadDump dump_of(pid_t pid) {
    auto d = pmprof::take_thread_dump(pid, patient());
    REQUIRE(d.ok());
    return std::move(*d);
}

/// The target survived pmprof untouched and a SIGKILL still ends it (deadlocked or not).
void check_unharmed(LockTarget& t) {
    REQUIRE(t.target->alive());
    REQUIRE(left_running(t.target->pid()) == "");
    int status = t.target->terminate(SIGKILL);
    REQUIRE(status != -1);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
}

std::string hex(uint64_t a) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(a));
    return buf;
}

RunResult stacks(pid_t pid, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{pmprof_bin(), "stacks", std::to_string(pid), "--stop-timeout",
                                  "3000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, 60s);
}

}  // namespace

TEST_CASE("locks: three-thread pthread deadlock named, exit status 3",
          "[integration][stacks][locks]") {
    const bool fp = GENERATE(true, false);
    LockTarget t = start({"deadlock3"}, fp);
    const pid_t a = t.tid("dl3-a"), b = t.tid("dl3-b"), c = t.tid("dl3-c");
    RunResult r = stacks(t.target->pid());
    INFO(r.out << r.err);
    CHECK(r.exit_code == 3);
    auto m = [&](const char* n) {
        return "mutex " + hex(t.addr(n)) + " (locks_target::" + n + ", normal)";
    };
    CHECK(r.out.find("Deadlock: 3 threads wait for each other\n") != std::string::npos);
    CHECK(r.out.find("  thread " + std::to_string(a) + " \"dl3-a\" holds " + m("g_fork_a") +
                     " and waits for " + m("g_fork_b") + "\n") != std::string::npos);
    CHECK(r.out.find("  thread " + std::to_string(b) + " \"dl3-b\" holds " + m("g_fork_b") +
                     " and waits for " + m("g_fork_c") + "\n") != std::string::npos);
    CHECK(r.out.find("  thread " + std::to_string(c) + " \"dl3-c\" holds " + m("g_fork_c") +
                     " and waits for " + m("g_fork_a") + "\n") != std::string::npos);
    CHECK(r.out.find("take_two_posix") != std::string::npos);
    CHECK(r.out.find("Lock chain") == std::string::npos);
    CHECK(r.err.find("deadlock") != std::string::npos);

    pmprof::ThreadDump d = dump_of(t.target->pid());
    REQUIRE(d.locks.cycles.size() == 1);
    CHECK(d.locks.cycles[0].threads == std::vector<pid_t>{a, b, c});
    CHECK(thread(d, a).lock.owner == b);
    CHECK(thread(d, b).lock.owner == c);
    CHECK(thread(d, c).lock.owner == a);
    CHECK(thread(d, a).lock.name == "locks_target::g_fork_b");
    CHECK(thread(d, a).lock.address == t.addr("g_fork_b"));
    check_unharmed(t);
}

TEST_CASE("locks: two-thread std::mutex deadlock, json says so", "[integration][stacks][locks]") {
    LockTarget t = start({"deadlock2"});
    const pid_t a = t.tid("dl2-a"), b = t.tid("dl2-b");
    pmprof::ThreadDump d = dump_of(t.target->pid());
    REQUIRE(d.locks.cycles.size() == 1);
    CHECK(d.locks.cycles[0].threads == std::vector<pid_t>{std::min(a, b), std::max(a, b)});
    CHECK(thread(d, a).lock.kind == pmprof::LockKind::Mutex);
    CHECK(thread(d, a).lock.owner == b);
    CHECK(thread(d, a).lock.name == "locks_target::g_dl_m2");
    CHECK(thread(d, b).lock.owner == a);
    CHECK(thread(d, b).lock.name == "locks_target::g_dl_m1");
    CHECK(thread(d, b).lock.address == t.addr("g_dl_m1"));

    RunResult r = stacks(t.target->pid(), {"--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 3);
    CHECK(r.out.find("\"deadlock\":true") != std::string::npos);
    CHECK(r.out.find("\"owner\":" + std::to_string(b)) != std::string::npos);
    check_unharmed(t);
}

TEST_CASE("locks: rwlock writer blocks readers and a writer", "[integration][stacks][locks]") {
    LockTarget t = start({"rwlock"}, GENERATE(true, false));
    pmprof::ThreadDump d = dump_of(t.target->pid());
    const pid_t writer = t.tid("rw-writer");
    for (const char* r : {"rw-reader-1", "rw-reader-2"}) {
        const pmprof::LockWait& w = thread(d, t.tid(r)).lock;
        CHECK(w.kind == pmprof::LockKind::RwLockRead);
        CHECK(w.owner == writer);
        CHECK(w.address == t.addr("g_rwlock"));
        CHECK(w.name == "locks_target::g_rwlock");
    }
    const pmprof::LockWait& w2 = thread(d, t.tid("rw-writer-2")).lock;
    CHECK(w2.kind == pmprof::LockKind::RwLockWrite);
    CHECK(w2.owner == writer);
    CHECK(w2.address == t.addr("g_rwlock"));
    CHECK_FALSE(d.locks.deadlock());
    CHECK(thread(d, writer).lock.kind == pmprof::LockKind::None);
    check_unharmed(t);
}

TEST_CASE("locks: recursive, error-checking, robust, PI, stack and heap mutexes",
          "[integration][stacks][locks]") {
    LockTarget t = start({"heapmutex", "recursive", "errorcheck", "robust", "pi", "stackmutex"});
    pmprof::ThreadDump d = dump_of(t.target->pid());
    CHECK_FALSE(d.locks.deadlock());

    // Each waiter waits for its holder's lock, of this type (nullptr: not checked) and name.
    struct Wait {
        const char* waiter;
        const char* holder;
        const char* type;
        std::string name;
    };
    const Wait waits[] = {
        {"rec-waiter", "rec-holder", "recursive", "locks_target::g_recursive"},
        {"ec-waiter", "ec-holder", "error-checking", "locks_target::g_errorcheck"},
        {"rb-waiter", "rb-heir", "normal, robust", "locks_target::g_robust"},
        {"pi-waiter", "pi-holder", "normal, priority-inheritance", "locks_target::g_pi"},
        {"st-waiter", "st-holder", nullptr,
         "stack of thread " + std::to_string(t.tid("st-holder"))},
        {"hp-waiter", "hp-holder", nullptr, "heap"},
    };
    for (const Wait& e : waits) {
        INFO(e.waiter);
        const pmprof::LockWait& w = thread(d, t.tid(e.waiter)).lock;
        CHECK(w.owner == t.tid(e.holder));
        if (e.type != nullptr) CHECK(w.type == e.type);
        CHECK(w.name == e.name);
    }
    CHECK(thread(d, t.tid("rec-waiter")).lock.count == 3);
    CHECK(thread(d, t.tid("rb-waiter")).lock.owner_died);
    CHECK(thread(d, t.tid("st-waiter")).lock.address == t.addr("stack_mutex"));
    CHECK(thread(d, t.tid("hp-waiter")).lock.address == t.addr("heap_mutex"));

    RunResult r = stacks(t.target->pid());
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("held 3 times (recursive)") != std::string::npos);
    CHECK(r.out.find("took it with EOWNERDEAD") != std::string::npos);
    check_unharmed(t);
}

TEST_CASE("locks: a mutex leaked by an exited thread", "[integration][stacks][locks]") {
    LockTarget t = start({"leaked"});
    pmprof::ThreadDump d = dump_of(t.target->pid());
    const pmprof::LockWait& w = thread(d, t.tid("lk-waiter")).lock;
    CHECK(w.owner == t.tid("lk-leaker"));
    CHECK(w.owner_exited);
    CHECK(w.name == "locks_target::g_leaked");
    RunResult r = stacks(t.target->pid());
    INFO(r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("held by thread " + std::to_string(t.tid("lk-leaker")) +
                     ", which no longer exists") != std::string::npos);
    check_unharmed(t);
}

TEST_CASE("locks: a holder blocked in read is a chain, not a deadlock",
          "[integration][stacks][locks]") {
    LockTarget t = start({"pipe"});
    const pid_t holder = t.tid("pp-holder"), w1 = t.tid("pp-waiter"), w2 = t.tid("pp-waiter-2");
    pmprof::ThreadDump d = dump_of(t.target->pid());
    CHECK(d.locks.cycles.empty());
    REQUIRE(d.locks.chains.size() == 1);
    CHECK(d.locks.chains[0].threads == std::vector<pid_t>{w2, w1, holder});
    CHECK(thread(d, w1).lock.owner == holder);
    CHECK(thread(d, w1).lock.name == "locks_target::g_pipe_lock");
    CHECK(thread(d, w2).lock.owner == w1);
    CHECK(thread(d, w2).lock.name == "locks_target::g_outer");
    RunResult r = stacks(t.target->pid());
    INFO(r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("Lock chain (not a deadlock): thread " + std::to_string(w2)) !=
          std::string::npos);
    CHECK(r.out.find("which is sleeping in read at locks_target::block_in_read()") !=
          std::string::npos);
    CHECK(r.out.find("Deadlock") == std::string::npos);
    check_unharmed(t);
}

TEST_CASE("locks: condition variables and semaphores have no owner",
          "[integration][stacks][locks]") {
    LockTarget t = start({"cond", "sem"});
    pmprof::ThreadDump d = dump_of(t.target->pid());
    const pmprof::LockWait& cv = thread(d, t.tid("cv-std")).lock;
    CHECK(cv.kind == pmprof::LockKind::CondVar);
    CHECK(cv.owner == 0);
    CHECK(cv.name == "locks_target::g_cv");
    CHECK(cv.address == t.addr("g_cv"));
    const pmprof::LockWait& pc = thread(d, t.tid("cv-posix")).lock;
    CHECK(pc.kind == pmprof::LockKind::CondVar);
    CHECK(pc.owner == 0);
    CHECK(pc.name == "locks_target::g_pcond");
    for (const char* s : {"sem-1", "sem-2"}) {
        const pmprof::LockWait& w = thread(d, t.tid(s)).lock;
        CHECK(w.kind == pmprof::LockKind::Semaphore);
        CHECK(w.owner == 0);
        CHECK(w.name == "locks_target::g_sem");
        CHECK(w.address == t.addr("g_sem"));
        CHECK(w.count == 0);
    }
    CHECK(d.locks.cycles.empty());
    CHECK(d.locks.chains.empty());
    RunResult r = stacks(t.target->pid());
    INFO(r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("a condition variable has no owner") != std::string::npos);
    CHECK(r.out.find("a semaphore has no owner") != std::string::npos);
    CHECK(r.out.find("held by") == std::string::npos);
    check_unharmed(t);
}

TEST_CASE("locks: --watch tells stuck, spinning and progressing threads apart",
          "[integration][stacks][locks]") {
    LockTarget t = start({"contended", "spin", "deadlock2"});
    auto w = pmprof::watch_threads(t.target->pid(), patient(), 3, 400ms);
    REQUIRE(w.ok());
    std::map<pid_t, pmprof::Progress> verdict;
    for (const pmprof::ThreadProgress& p : w->threads) verdict[p.tid] = p.verdict;
    for (const char* n : {"ct-1", "ct-2", "ct-3"})
        CHECK(verdict[t.tid(n)] == pmprof::Progress::Progressing);
    CHECK(verdict[t.tid("sp-spinner")] == pmprof::Progress::Spinning);
    CHECK(verdict[t.tid("sp-waiter")] == pmprof::Progress::Stuck);
    CHECK(verdict[t.tid("dl2-a")] == pmprof::Progress::Stuck);
    CHECK(verdict[t.tid("dl2-b")] == pmprof::Progress::Stuck);
    CHECK(w->threads.front().verdict == pmprof::Progress::Stuck);  // stuck threads first
    CHECK(w->last.locks.cycles.size() == 1);
    // The contended lock is no deadlock and nobody waits for it forever.
    for (const pmprof::LockCycle& c : w->last.locks.cycles)
        for (pid_t tid : c.threads) CHECK((tid == t.tid("dl2-a") || tid == t.tid("dl2-b")));

    RunResult r = stacks(t.target->pid(), {"--watch", "2", "--interval", "300ms"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 3);
    CHECK(r.out.find("Stuck (same stack") != std::string::npos);
    CHECK(r.out.find("\"sp-spinner\": spinning in locks_target::spin_forever()") !=
          std::string::npos);
    CHECK(r.out.find("Last dump:") != std::string::npos);
    check_unharmed(t);
}

TEST_CASE("locks: a contended but progressing lock is no deadlock",
          "[integration][stacks][locks]") {
    LockTarget t = start({"contended"});
    for (int i = 0; i < 3; ++i) {
        RunResult r = stacks(t.target->pid());
        INFO(r.out << r.err);
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("Deadlock") == std::string::npos);
    }
    check_unharmed(t);
}
