// The integration-test harness itself: readiness lines, bounded waits, and that everything it
// starts is killed and reaped.
#include "../support/harness.h"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <thread>

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

// A shell "target" that reports like the real ones: its pid, a second line, then it idles.
const std::vector<std::string> kShellTarget = {
    "sh", "-c",
    "echo \"ready $$\" >&$PMPROF_READY_FD; echo second >&$PMPROF_READY_FD; exec sleep 600"};

bool process_gone(pid_t pid) { return kill(pid, 0) == -1 && errno == ESRCH; }

// The pid a shell wrote to `path`, waiting (bounded) for it to appear.
pid_t read_pid_file(const std::string& path) {
    for (int i = 0; i < 500; ++i) {
        std::string text = slurp(path);
        if (!text.empty() && text.back() == '\n') return std::atoi(text.c_str());
        std::this_thread::sleep_for(10ms);
    }
    return -1;
}

}  // namespace

TEST_CASE("Target::start returns after the first line and reads the next ones",
          "[integration][harness]") {
    auto target = Target::start(kShellTarget);
    REQUIRE(target->ready_line() == "ready " + std::to_string(target->pid()));
    CHECK(target->read_line() == "second");
    CHECK(target->read_line(100ms).empty());  // nothing more: times out with ""
    CHECK(target->alive());
    CHECK(getpgid(target->pid()) == target->pid());  // own process group
    REQUIRE(target->tids() == std::vector<pid_t>{target->pid()});

    int status = target->terminate(SIGTERM);
    REQUIRE(status != -1);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGTERM);
    CHECK_FALSE(target->alive());
    CHECK(process_gone(target->pid()));
}

TEST_CASE("Target's destructor kills and reaps", "[integration][harness]") {
    auto target = Target::start(kShellTarget);
    pid_t pid = target->pid();
    REQUIRE_FALSE(process_gone(pid));
    target.reset();
    CHECK(process_gone(pid));  // not even a zombie is left
}

TEST_CASE("Target::start fails cleanly", "[integration][harness]") {
    SECTION("no readiness line before the timeout: killed and reaped") {
        std::string pid_file = temp_path("silent.pid");
        auto started = std::chrono::steady_clock::now();
        std::vector<std::string> silent = {"sh", "-c", "echo $$ > " + pid_file + ";exec sleep 600"};
        REQUIRE_THROWS_WITH(Target::start(silent, 300ms), Catch::Contains("timed out"));
        CHECK(std::chrono::steady_clock::now() - started < 5s);
        pid_t pid = read_pid_file(pid_file);
        REQUIRE(pid > 0);
        CHECK(process_gone(pid));
    }
    SECTION("exits before reporting") {
        REQUIRE_THROWS_WITH(Target::start({"sh", "-c", "exit 5"}),
                            Catch::Contains("exited with status 5"));
    }
    SECTION("cannot be executed") {
        REQUIRE_THROWS_WITH(Target::start({"/nonexistent/pmprof-target"}),
                            Catch::Contains("exec failed"));
    }
}

TEST_CASE("run captures both streams and the exit code", "[integration][harness]") {
    RunResult r = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
    CHECK(r.exit_code == 3);
    CHECK(r.term_signal == 0);
    CHECK_FALSE(r.timed_out);
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
}

TEST_CASE("run drains stdout and stderr together (no pipe deadlock)", "[integration][harness]") {
    // Each stream alone overflows a 64 KiB pipe buffer; draining one at a time would hang.
    RunResult r = run({"sh", "-c", "head -c 300000 /dev/zero >&2; head -c 200000 /dev/zero"}, 20s);
    CHECK(r.exit_code == 0);
    CHECK(r.err.size() == 300000);
    CHECK(r.out.size() == 200000);
}

TEST_CASE("run kills at the timeout", "[integration][harness]") {
    std::string pid_file = temp_path("slow.pid");
    auto started = std::chrono::steady_clock::now();
    RunResult r = run({"sh", "-c", "echo $$ > " + pid_file + "; exec sleep 600"}, 300ms);
    CHECK(std::chrono::steady_clock::now() - started < 5s);
    CHECK(r.timed_out);
    CHECK(r.exit_code == -1);
    CHECK(r.term_signal == SIGKILL);
    pid_t pid = read_pid_file(pid_file);
    REQUIRE(pid > 0);
    CHECK(process_gone(pid));
}

TEST_CASE("stopped_threads and left_running see stopped threads", "[integration][harness]") {
    auto target = Target::start(kShellTarget);
    pid_t pid = target->pid();
    CHECK(tracer_pid(pid) == 0);
    CHECK(stopped_threads(pid).empty());
    CHECK(left_running(pid) == "");

    REQUIRE(kill(pid, SIGSTOP) == 0);
    std::set<pid_t> stopped;
    for (int i = 0; i < 200 && stopped.empty(); ++i) {
        std::this_thread::sleep_for(5ms);
        stopped = stopped_threads(pid);
    }
    CHECK(stopped == std::set<pid_t>{pid});
    CHECK_THAT(left_running(pid, {}, 50ms), Catch::Contains("state T"));
    CHECK(left_running(pid, stopped, 50ms) == "");  // stopped before: not our doing
    kill(pid, SIGCONT);
    CHECK(left_running(pid) == "");
}

TEST_CASE("marker_line finds exactly one marker", "[integration][harness]") {
    std::string path = temp_path("markers.cpp");
    {
        std::ofstream out(path);
        out << "int a;\n"
               "void f() { g(); }  // @line:call_g\n"
               "void h() { g2(); }  // @line:call_g2 trailing words\n"
               "// @line:twice\n"
               "// @line:twice\n";
    }
    CHECK(marker_line(path, "call_g") == 2);  // not confused by the "call_g2" prefix
    CHECK(marker_line(path, "call_g2") == 3);
    CHECK_THROWS_WITH(marker_line(path, "missing"), Catch::Contains("no // @line:missing"));
    CHECK_THROWS_WITH(marker_line(path, "twice"), Catch::Contains("twice in"));
    CHECK_THROWS(marker_line(temp_path("no-such-file.cpp"), "x"));
}

TEST_CASE("paths come from PMPROF_BUILD", "[integration][harness]") {
    const char* old = std::getenv("PMPROF_BUILD");
    std::string saved = old ? old : "";
    setenv("PMPROF_BUILD", "/some/where/build-x", 1);
    CHECK(build_dir() == "/some/where/build-x");
    CHECK(pmprof_bin() == "/some/where/build-x/pmprof");
    CHECK(target_bin("stacks_target", true) == "/some/where/build-x/targets/stacks_target-fp");
    CHECK(target_bin("stacks_target", false) == "/some/where/build-x/targets/stacks_target-nofp");
    CHECK(example_bin("pprof_tutorial") == "/some/where/build-x/examples/pprof_tutorial");
    if (old) {
        setenv("PMPROF_BUILD", saved.c_str(), 1);
    } else {
        unsetenv("PMPROF_BUILD");
    }
    CHECK(build_dir().front() == '/');  // absolute even by default
}

TEST_CASE("temp_path gives a writable path in a private directory", "[integration][harness]") {
    std::string a = temp_path("a.txt");
    CHECK(a.rfind("/tmp/pmprof-test-", 0) == 0);
    CHECK(temp_path("b.txt").substr(0, a.size() - 5) == a.substr(0, a.size() - 5));
    { std::ofstream(a) << "hello"; }
    CHECK(slurp(a) == "hello");
    CHECK(slurp(temp_path("missing")).empty());
}

TEST_CASE("parse_fields splits key=value words", "[integration][harness]") {
    auto f = parse_fields("ready pid=12 threads=3 worker-1=14 junk =x");
    CHECK(f.size() == 3);
    CHECK(f["pid"] == "12");
    CHECK(f["threads"] == "3");
    CHECK(f["worker-1"] == "14");
}

// ---- the purpose-built targets keep their contracts -------------------------------------------

namespace {

std::string thread_comm(pid_t pid, pid_t tid) {
    std::string comm =
        slurp("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    return comm;
}

char thread_state_of(pid_t pid, pid_t tid) {
    std::string stat =
        slurp("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
    size_t close = stat.rfind(')');
    return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

std::unique_ptr<Target> start_built(const std::string& path, std::vector<std::string> args = {}) {
    INFO("built by `make " << path << "`");
    REQUIRE(!slurp(path).empty());
    args.insert(args.begin(), path);
    return Target::start(args);
}

const char* const kStacksThreads[] = {"reader",  "condwait", "epoller",  "sleeper",
                                      "spinner", "recurser", "sorter",   "sighandler",
                                      "inliner", "worker-1", "worker-2", "worker-3"};

}  // namespace

TEST_CASE("stacks_target reports ready with every named thread blocked", "[integration][harness]") {
    bool fp = GENERATE(true, false);
    auto target = start_built(target_bin("stacks_target", fp));
    pid_t pid = target->pid();
    auto fields = parse_fields(target->ready_line());
    REQUIRE(fields["pid"] == std::to_string(pid));
    CHECK(std::stoul(fields["threads"]) == target->tids().size());
    CHECK(target->tids().size() == 13);
    for (const char* name : kStacksThreads) {
        INFO(name);
        REQUIRE(fields.count(name) == 1);
        pid_t tid = std::stoi(fields[name]);
        CHECK(thread_comm(pid, tid) == name);
        if (std::string(name) != "spinner") CHECK(thread_state_of(pid, tid) == 'S');
    }
    CHECK(left_running(pid) == "");
}

TEST_CASE("stacks_target markers exist once each", "[integration][harness]") {
    std::string source = target_source("stacks_target");
    for (const char* marker : {"read",
                               "condwait",
                               "epoll",
                               "nanosleep",
                               "spin",
                               "recurse_leaf",
                               "recurse_bottom",
                               "recurse_call",
                               "recurse_start",
                               "comparator_read",
                               "comparator_call",
                               "qsort_call",
                               "sighandler_read",
                               "sighandler_call",
                               "raise",
                               "inline_read",
                               "inline_call",
                               "worker_wait",
                               "idle_read",
                               "vfork",
                               "main_join",
                               "main_call",
                               "reader_call"}) {
        INFO(marker);
        CHECK(marker_line(source, marker) > 0);
    }
}

TEST_CASE("stacks_target modes", "[integration][harness]") {
    std::string bin = target_bin("stacks_target", true);
    SECTION("--main-exits leaves a zombie leader with live threads") {
        auto target = start_built(bin, {"--main-exits"});
        pid_t pid = target->pid();
        char leader = '?';
        for (int i = 0; i < 500 && leader != 'Z'; ++i) {
            std::this_thread::sleep_for(2ms);
            leader = thread_state_of(pid, pid);
        }
        CHECK(leader == 'Z');
        CHECK(target->alive());
        CHECK(target->tids().size() == 13);
        int status = target->terminate(SIGTERM);
        CHECK((status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM));
    }
    SECTION("--dstate has a thread in D, and its vfork child goes with it") {
        auto target = start_built(bin, {"--dstate", "--no-spinner"});
        pid_t pid = target->pid();
        pid_t vforker = std::stoi(parse_fields(target->ready_line())["vforker"]);
        CHECK(thread_state_of(pid, vforker) == 'D');
        pid_t child = std::atoi(
            slurp("/proc/" + std::to_string(pid) + "/task/" + std::to_string(vforker) + "/children")
                .c_str());
        REQUIRE(child > 0);
        target.reset();
        CHECK(process_gone(pid));
        bool child_gone = false;  // SIGKILLed with the group, reaped by init
        for (int i = 0; i < 500 && !child_gone; ++i) {
            std::string st = slurp("/proc/" + std::to_string(child) + "/stat");
            child_gone = st.empty() || thread_state_of(child, child) == 'Z';
            if (!child_gone) std::this_thread::sleep_for(2ms);
        }
        CHECK(child_gone);
    }
    SECTION("--threads 100 adds idle threads") {
        auto target = start_built(bin, {"--threads", "100"});
        CHECK(target->tids().size() == 113);
        CHECK(parse_fields(target->ready_line())["threads"] == "113");
    }
}

TEST_CASE("churn_target creates and ends threads continuously", "[integration][harness]") {
    auto target = start_built(target_bin("churn_target", false));
    pid_t pid = target->pid();
    auto fields = parse_fields(target->ready_line());
    std::set<pid_t> long_lived = {pid, std::stoi(fields["long-sleep"]),
                                  std::stoi(fields["long-spin"]), std::stoi(fields["churner"])};
    std::set<pid_t> short_seen;
    // Bounded by time, not by rounds: on a loaded machine the churner may wait for a CPU.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (short_seen.size() < 3 && std::chrono::steady_clock::now() < deadline) {
        for (pid_t tid : target->tids()) {
            if (!long_lived.count(tid)) short_seen.insert(tid);
        }
        std::this_thread::sleep_for(100us);
    }
    CHECK(short_seen.size() >= 3);
    CHECK(thread_comm(pid, std::stoi(fields["churner"])) == "churner");
}

TEST_CASE("pprof_tutorial runs its threads and stops cleanly on SIGTERM",
          "[integration][harness]") {
    auto target = start_built(example_bin("pprof_tutorial"));
    pid_t pid = target->pid();
    CHECK(parse_fields(target->ready_line())["pid"] == std::to_string(pid));
    std::set<std::string> names;
    for (pid_t tid : target->tids()) names.insert(thread_comm(pid, tid));
    CHECK(names.count("runcputest") == 1);
    CHECK(names.count("timer") == 1);
    CHECK(names.count("signals") == 1);
    int status = target->terminate(SIGTERM);
    REQUIRE(status != -1);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}
