// procfs parsers on literal text, and the readers on this test process.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "pmprof/os/procfs.h"

using namespace pmprof;

namespace {

// A real /proc/PID/stat line (kernel 6.x) with the comm replaced.
std::string stat_line(const std::string& comm, char state) {
    return "4242 (" + comm + ") " + std::string(1, state) +
           " 7781 7781 4756 0 -1 4194304 105 0 0 0 11 22 0 0 20 0 3 0 37578 3133440 373 "
           "18446744073709551615 94104746369024 94104746388905 140732748193776 0 0 0 0 0 0 0 0 0 "
           "17 5 0 0 0 0 0 94104746404912 94104746406528 94105802526720 140732748200382 "
           "140732748200402 140732748200402 140732748201963 0\n";
}

}  // namespace

TEST_CASE("parse_stat: comm with spaces and parentheses ends at the last ')'", "[unit][procfs]") {
    auto st = parse_stat(stat_line("a) (b c)", 'S'));
    REQUIRE(st.ok());
    CHECK(st->tid == 4242);
    CHECK(st->comm == "a) (b c)");
    CHECK(st->state == ThreadState::Sleeping);
    CHECK(st->ppid == 7781);
    CHECK(st->utime_ticks == 11);
    CHECK(st->stime_ticks == 22);
    CHECK(st->num_threads == 3);
    CHECK(st->start_time_ticks == 37578);
    CHECK(st->processor == 5);
}

TEST_CASE("parse_stat: empty comm and a comm that is just ')'", "[unit][procfs]") {
    auto empty = parse_stat(stat_line("", 'R'));
    REQUIRE(empty.ok());
    CHECK(empty->comm.empty());
    CHECK(empty->state == ThreadState::Running);
    auto paren = parse_stat(stat_line(")", 'D'));
    REQUIRE(paren.ok());
    CHECK(paren->comm == ")");
    CHECK(paren->state == ThreadState::DiskSleep);
}

TEST_CASE("parse_stat: every state letter", "[unit][procfs]") {
    const std::pair<char, ThreadState> cases[] = {
        {'R', ThreadState::Running}, {'S', ThreadState::Sleeping},    {'D', ThreadState::DiskSleep},
        {'T', ThreadState::Stopped}, {'t', ThreadState::TracingStop}, {'Z', ThreadState::Zombie},
        {'X', ThreadState::Dead},    {'I', ThreadState::Idle},        {'P', ThreadState::Parked},
        {'W', ThreadState::Unknown},
    };
    for (auto [letter, state] : cases) {
        INFO("state letter " << letter);
        auto st = parse_stat(stat_line("x", letter));
        REQUIRE(st.ok());
        CHECK(st->state == state);
    }
}

TEST_CASE("parse_stat: malformed text is an error", "[unit][procfs]") {
    CHECK_FALSE(parse_stat("").ok());
    CHECK_FALSE(parse_stat("4242 (cat").ok());
    CHECK_FALSE(parse_stat("4242 (cat) S 1 2 3").ok());
    CHECK_FALSE(parse_stat("abc (cat) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0").ok());
    auto err = parse_stat("nonsense");
    REQUIRE_FALSE(err.ok());
    CHECK(err.error().message.find("stat") != std::string::npos);
}

TEST_CASE("parse_status: the fields pmprof uses, TracerPid included", "[unit][procfs]") {
    const char* text = "Name:\tmy worker 1\n"
                       "Umask:\t0022\n"
                       "State:\tt (tracing stop)\n"
                       "Tgid:\t7826\n"
                       "Ngid:\t0\n"
                       "Pid:\t7830\n"
                       "PPid:\t7781\n"
                       "TracerPid:\t9001\n"
                       "Uid:\t1000\t1001\t1000\t1000\n"
                       "Gid:\t0\t0\t0\t0\n"
                       "Groups:\t \n"
                       "VmRSS:\t    5120 kB\n"
                       "Threads:\t12\n"
                       "CapEff:\t000001ffffffffff\n"
                       "voluntary_ctxt_switches:\t150\n"
                       "nonvoluntary_ctxt_switches:\t7\n";
    auto st = parse_status(text);
    REQUIRE(st.ok());
    CHECK(st->name == "my worker 1");
    CHECK(st->state == ThreadState::TracingStop);
    CHECK(st->tgid == 7826);
    CHECK(st->pid == 7830);
    CHECK(st->ppid == 7781);
    CHECK(st->tracer_pid == 9001);
    CHECK(st->uid_real == 1000);
    CHECK(st->uid_effective == 1001);
    CHECK(st->vm_rss_kb == 5120);
    CHECK(st->threads == 12);
    CHECK(st->cap_eff == 0x1ffffffffffULL);
    CHECK(st->voluntary_ctxt_switches == 150);
    CHECK(st->nonvoluntary_ctxt_switches == 7);
}

TEST_CASE("parse_status: missing Pid or a malformed number is an error", "[unit][procfs]") {
    CHECK_FALSE(parse_status("Name:\tx\nState:\tS (sleeping)\n").ok());
    CHECK_FALSE(parse_status("Name:\tx\nPid:\t12\nTracerPid:\tabc\n").ok());
    auto ok = parse_status("Pid:\t12\nTracerPid:\t0\n");
    REQUIRE(ok.ok());
    CHECK(ok->pid == 12);
    CHECK(ok->tracer_pid == 0);
}

TEST_CASE("parse_schedstat", "[unit][procfs]") {
    auto s = parse_schedstat("123456789 51257 42\n");
    REQUIRE(s.ok());
    CHECK(s->run_ns == 123456789);
    CHECK(s->wait_ns == 51257);
    CHECK(s->timeslices == 42);
    CHECK_FALSE(parse_schedstat("1 2\n").ok());
    CHECK_FALSE(parse_schedstat("").ok());
}

TEST_CASE("parse_syscall: running, outside a syscall, inside one", "[unit][procfs]") {
    auto running = parse_syscall("running\n");
    REQUIRE(running.ok());
    CHECK(running->running);

    auto outside = parse_syscall("-1 0x7ffcb9840278 0x55d1c0a01234\n");
    REQUIRE(outside.ok());
    CHECK_FALSE(outside->running);
    CHECK(outside->nr == -1);
    CHECK(outside->sp == 0x7ffcb9840278ULL);
    CHECK(outside->pc == 0x55d1c0a01234ULL);

    auto inside = parse_syscall(
        "232 0xa0 0x7f744f004000 0xa2 0xffffffff 0xa4 0xa5 0x7ffcb9840278 0x7f744f17e2ad\n");
    REQUIRE(inside.ok());
    CHECK_FALSE(inside->running);
    CHECK(inside->nr == 232);
    CHECK(inside->args[0] == 0xa0);
    CHECK(inside->args[1] == 0x7f744f004000ULL);
    CHECK(inside->args[2] == 0xa2);
    CHECK(inside->args[3] == 0xffffffffULL);
    CHECK(inside->args[4] == 0xa4);
    CHECK(inside->args[5] == 0xa5);
    CHECK(inside->sp == 0x7ffcb9840278ULL);
    CHECK(inside->pc == 0x7f744f17e2adULL);
}

TEST_CASE("parse_syscall: malformed text is an error", "[unit][procfs]") {
    CHECK_FALSE(parse_syscall("").ok());
    CHECK_FALSE(parse_syscall("walking\n").ok());
    CHECK_FALSE(parse_syscall("232 0x1 0x2\n").ok());
    CHECK_FALSE(parse_syscall("-1 0x1\n").ok());
    CHECK_FALSE(parse_syscall("-1 0xzz 0x1\n").ok());
}

TEST_CASE("parse_maps_line: file, anonymous, special, deleted, spaces in path", "[unit][procfs]") {
    auto file =
        parse_maps_line("7f744f17d000-7f744f1d5000 r-xp 00028000 fd:01 1835082                    "
                        "/usr/lib/x86_64-linux-gnu/libc.so.6\n");
    REQUIRE(file);
    CHECK(file->start == 0x7f744f17d000ULL);
    CHECK(file->end == 0x7f744f1d5000ULL);
    CHECK(file->perms == "r-xp");
    CHECK(file->file_offset == 0x28000);
    CHECK(file->dev == "fd:01");
    CHECK(file->inode == 1835082);
    CHECK(file->path == "/usr/lib/x86_64-linux-gnu/libc.so.6");
    CHECK_FALSE(file->deleted);
    CHECK(file->readable());
    CHECK(file->executable());
    CHECK_FALSE(file->writable());
    CHECK(file->file_backed());
    CHECK(file->contains(0x7f744f17d000ULL));
    CHECK_FALSE(file->contains(0x7f744f1d5000ULL));

    auto anon = parse_maps_line("7f744f004000-7f744f026000 rw-p 00000000 00:00 0 ");
    REQUIRE(anon);
    CHECK(anon->path.empty());
    CHECK_FALSE(anon->file_backed());
    CHECK(anon->writable());

    auto heap = parse_maps_line("55d1c1a3c000-55d1c1a5d000 rw-p 00000000 00:00 0          [heap]");
    REQUIRE(heap);
    CHECK(heap->path == "[heap]");
    CHECK_FALSE(heap->file_backed());

    auto deleted = parse_maps_line(
        "7f0000000000-7f0000001000 r-xp 00001000 08:02 77  /tmp/my dir/lib x.so (deleted)\n");
    REQUIRE(deleted);
    CHECK(deleted->deleted);
    CHECK(deleted->path == "/tmp/my dir/lib x.so");

    auto spaces = parse_maps_line("400000-401000 r--p 00000000 08:02 99   /opt/a b/  c  ");
    REQUIRE(spaces);
    CHECK(spaces->path == "/opt/a b/  c  ");
    CHECK_FALSE(spaces->deleted);
}

TEST_CASE("parse_maps_line: malformed lines", "[unit][procfs]") {
    CHECK_FALSE(parse_maps_line(""));
    CHECK_FALSE(parse_maps_line("garbage"));
    CHECK_FALSE(parse_maps_line("1000-zz r-xp 0 fd:01 1 /x"));
    CHECK_FALSE(parse_maps_line("2000-1000 r-xp 0 fd:01 1 /x"));
    CHECK_FALSE(parse_maps_line("1000-2000 r-x 0 fd:01 1 /x"));
    CHECK_FALSE(parse_maps_line("1000-2000 r-xp 0 fd01 1 /x"));
}

TEST_CASE("parse_maps: whole file, malformed lines skipped", "[unit][procfs]") {
    const char* text =
        "55d1c0a00000-55d1c0a02000 r--p 00000000 fd:01 2097 /usr/bin/cat\n"
        "not a maps line\n"
        "7ffcb9821000-7ffcb9842000 rw-p 00000000 00:00 0                          [stack]\n"
        "7ffcb98f4000-7ffcb98f6000 r-xp 00000000 00:00 0                          [vdso]";
    auto maps = parse_maps(text);
    REQUIRE(maps.size() == 3);
    CHECK(maps[0].path == "/usr/bin/cat");
    CHECK(maps[1].path == "[stack]");
    CHECK(maps[2].path == "[vdso]");
    CHECK(maps[2].executable());
}

TEST_CASE("syscall_name from the generated table", "[unit][procfs]") {
    CHECK(syscall_name(232) == "epoll_wait");
    CHECK(syscall_name(0) == "read");
    CHECK(syscall_name(202) == "futex");
    CHECK(syscall_name(99999) == "syscall_99999");
    CHECK(syscall_name(-1) == "syscall_-1");
}

TEST_CASE("readers on this process", "[unit][procfs]") {
    pid_t pid = ::getpid();
    auto stat = read_task_stat(pid, pid);
    REQUIRE(stat.ok());
    CHECK(stat->tid == pid);
    CHECK(stat->state == ThreadState::Running);  // we are reading it
    CHECK(stat->ppid == ::getppid());

    auto status = read_status(pid);
    REQUIRE(status.ok());
    CHECK(status->pid == pid);
    CHECK(status->tgid == pid);
    CHECK(status->threads >= 1);

    auto sched = read_schedstat(pid, pid);
    REQUIRE(sched.ok());
    CHECK(sched->run_ns > 0);

    // A task reading its own syscall file sees the read(2) it is in (lib/syscall.c,
    // task_current_syscall collects the current task's own syscall).
    auto sc = read_syscall(pid, pid);
    REQUIRE(sc.ok());
    CHECK_FALSE(sc->running);
    CHECK(sc->nr == 0);

    CHECK_FALSE(read_cmdline(pid).empty());
    int scope = read_ptrace_scope();
    CHECK(scope >= -1);
    CHECK(scope <= 3);

    auto missing = read_task_stat(pid, 0x7ffffff0);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().message.find("/proc/") != std::string::npos);
    CHECK(missing.error().errno_value == ENOENT);
}

TEST_CASE("read_maps(getpid()) contains the test binary", "[unit][procfs]") {
    char exe[4096];
    ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0);
    std::string self(exe, static_cast<size_t>(n));
    auto maps = read_maps(::getpid());
    REQUIRE(maps.ok());
    bool found_exec = std::any_of(maps->begin(), maps->end(), [&](const MemoryMap& m) {
        return m.path == self && m.executable();
    });
    CHECK(found_exec);
    bool found_stack = std::any_of(maps->begin(), maps->end(),
                                   [](const MemoryMap& m) { return m.path == "[stack]"; });
    CHECK(found_stack);
}

TEST_CASE("list_tasks sees a thread we start, and wchan of a sleeping one", "[unit][procfs]") {
    std::mutex mu;
    std::condition_variable cv;
    bool release = false;
    std::atomic<pid_t> tid{0};
    std::thread worker([&] {
        tid = ::gettid();
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return release; });
    });
    while (tid.load() == 0) std::this_thread::yield();
    // Wait (bounded) until the worker is asleep in the condition variable's futex.
    bool asleep = false;
    for (int i = 0; i < 200 && !asleep; ++i) {
        auto st = read_task_stat(::getpid(), tid.load());
        asleep = st.ok() && st->state == ThreadState::Sleeping;
        if (!asleep) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    auto sc = read_syscall(::getpid(), tid.load());

    auto tasks = list_tasks(::getpid());
    bool sorted = tasks.ok() && std::is_sorted(tasks->begin(), tasks->end());
    bool has_main = tasks.ok() && std::count(tasks->begin(), tasks->end(), ::getpid()) == 1;
    bool has_worker = tasks.ok() && std::count(tasks->begin(), tasks->end(), tid.load()) == 1;
    std::string wchan = read_wchan(::getpid(), tid.load());
    {
        std::lock_guard<std::mutex> lock(mu);
        release = true;
    }
    cv.notify_one();
    worker.join();

    REQUIRE(tasks.ok());
    CHECK(sorted);
    CHECK(has_main);
    CHECK(has_worker);
    REQUIRE(asleep);
    REQUIRE(sc.ok());
    CHECK(sc->nr == 202);  // futex
    CHECK(syscall_name(sc->nr) == "futex");
    // A sleeping thread's wchan is the kernel function it waits in ("futex_wait_queue", ...).
    CHECK_FALSE(wchan.empty());
    CHECK(wchan != "0");
    CHECK_FALSE(list_tasks(0x7ffffff0).ok());
}

TEST_CASE("thread_selected: by name or tid; an empty filter takes every thread", "[unit][procfs]") {
    CHECK(thread_selected({}, 42, "worker"));
    CHECK(thread_selected({"worker"}, 42, "worker"));
    CHECK(thread_selected({"7", "42"}, 42, "worker"));
    CHECK_FALSE(thread_selected({"work", "4"}, 42, "worker"));
    CHECK(map_files_path(12, MemoryMap{0x1000, 0x2f000, "r-xp", 0, "fd:01", 5, "/bin/x", false}) ==
          "/proc/12/map_files/1000-2f000");
}
