// `pmprof stacks` against tests/targets/stacks_target: exact frames with file:line, grouping,
// thread states and syscalls, every output format checked by its consumer, eu-stack as a
// reference, and the target left running and untraced every time.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../support/harness.h"
#include "pmprof/os/procfs.h"
#include "pmprof/support/fd.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

/// "name=TID" pairs from the target's ready line.
std::map<std::string, pid_t> tids_from_ready(const std::string& line) {
    std::map<std::string, pid_t> out;
    std::istringstream in(line);
    std::string word;
    while (in >> word) {
        auto eq = word.find('=');
        if (eq != std::string::npos) out[word.substr(0, eq)] = std::atoi(word.c_str() + eq + 1);
    }
    return out;
}

/// Function names (the text after the address) of the frame lines of a block, in order.
std::vector<std::string> frame_texts(const std::string& block) {
    std::vector<std::string> out;
    static const std::regex kFrame(R"(#\d+\s+0x[0-9a-f]+ (.*))");
    std::istringstream in(block);
    std::string line;
    std::smatch m;
    while (std::getline(in, line))
        if (std::regex_search(line, m, kFrame)) out.push_back(m[1]);
    return out;
}

/// True when `frames` contains `wanted` as an ordered (not necessarily adjacent) subsequence.
bool has_in_order(const std::vector<std::string>& frames, const std::vector<std::string>& wanted) {
    size_t k = 0;
    for (const std::string& f : frames)
        if (k < wanted.size() && f.find(wanted[k]) != std::string::npos) ++k;
    return k == wanted.size();
}

std::string at(const std::string& marker) {
    static const std::string src = target_source("stacks_target");
    return "(stacks_target.cpp:" + std::to_string(marker_line(src, marker)) + ")";
}

std::string fn(const std::string& name, const std::string& marker) {
    return "stacks_target::" + name + " " + at(marker);
}

RunResult stacks(pid_t pid, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{pmprof_bin(), "stacks", std::to_string(pid)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, 60s);
}

}  // namespace

TEST_CASE("stacks: exact frames with file:line for every thread shape", "[integration][stacks]") {
    for (bool fp : {true, false}) {
        DYNAMIC_SECTION((fp ? "frame pointers" : "no frame pointers")) {
            auto target = Target::start({target_bin("stacks_target", fp)});
            auto tids = tids_from_ready(target->ready_line());
            RunResult r = stacks(target->pid(), {"--no-group"});
            INFO(r.out << r.err);
            REQUIRE(r.exit_code == 0);
            REQUIRE(r.err.find("target stopped") != std::string::npos);

            auto frames = [&](const std::string& name) {
                return frame_texts(thread_block(r.out, tids.at(name)));
            };
            CHECK(thread_block(r.out, tids.at("reader")).find("sleeping in read") !=
                  std::string::npos);
            CHECK(has_in_order(frames("reader"),
                               {"read", fn("blocked_in_read()", "read"),
                                fn("reader_thread(void*)", "reader_call"), "start_thread"}));
            CHECK(thread_block(r.out, tids.at("condwait")).find("in futex") != std::string::npos);
            CHECK(has_in_order(frames("condwait"),
                               {"pthread_cond_wait", fn("wait_on_condition()", "condwait"),
                                fn("condwait_thread(void*)", "condwait_call")}));
            CHECK(thread_block(r.out, tids.at("epoller")).find("in epoll_wait") !=
                  std::string::npos);
            CHECK(has_in_order(frames("epoller"), {"epoll_wait", fn("wait_in_epoll()", "epoll")}));
            CHECK(thread_block(r.out, tids.at("sleeper")).find("nanosleep") != std::string::npos);
            CHECK(has_in_order(frames("sleeper"),
                               {"nanosleep", fn("sleep_in_nanosleep()", "nanosleep")}));
            CHECK(has_in_order(frames("spinner"), {fn("spin_leaf()", "spin"),
                                                   fn("spinner_thread(void*)", "spin_call")}));

            auto rec = frames("recurser");
            CHECK(has_in_order(rec, {fn("recurse_leaf()", "recurse_leaf"),
                                     fn("recurse(int)", "recurse_bottom"),
                                     fn("recurse(int)", "recurse_call"),
                                     fn("recurser_thread(void*)", "recurse_start")}));
            CHECK(std::count_if(rec.begin(), rec.end(), [](const std::string& f) {
                      return f.find("stacks_target::recurse(int)") != std::string::npos;
                  }) == 21);

            // Through libc: qsort calls back into the target.
            CHECK(has_in_order(frames("sorter"),
                               {fn("block_in_comparator()", "comparator_read"),
                                fn("compare_ints(void const*, void const*)", "comparator_call"),
                                "msort", fn("sort_with_libc()", "qsort_call")}));
            // Through a signal frame.
            CHECK(has_in_order(frames("sighandler"),
                               {fn("handler_blocks()", "sighandler_read"),
                                fn("on_sigusr2(int)", "sighandler_call"), "__restore_rt",
                                fn("raise_and_block()", "raise")}));
            // An inlined frame, marked, at the inlined call's line, inside its real function.
            auto inl = frames("inliner");
            // Never emitted out of line, it has no linkage name: named as one would demangle,
            // with its parameter list, like the functions around it.
            CHECK(has_in_order(inl, {fn("inline_read_helper()", "inline_read"),
                                     fn("blocked_via_inline()", "inline_call")}));
            bool marked = false;
            for (const auto& f : inl)
                marked |= f.find("inline_read_helper") != std::string::npos &&
                          f.find(at("inline_read")) != std::string::npos &&
                          f.find("(inlined)") != std::string::npos;
            CHECK(marked);
            REQUIRE(left_running(target->pid()) == "");
        }
    }
}

TEST_CASE("stacks: identical stacks are grouped", "[integration][stacks]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    auto tids = tids_from_ready(target->ready_line());
    RunResult r = stacks(target->pid());
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    std::string group = "3 threads: worker-1 (" + std::to_string(tids.at("worker-1")) +
                        "), worker-2 (" + std::to_string(tids.at("worker-2")) + "), worker-3 (" +
                        std::to_string(tids.at("worker-3")) + ")";
    REQUIRE(r.out.find(group) != std::string::npos);
    // Printed once: the worker function appears in exactly one frame line.
    size_t count = 0;
    for (size_t p = r.out.find("stacks_target::worker_wait()"); p != std::string::npos;
         p = r.out.find("stacks_target::worker_wait()", p + 1))
        ++count;
    REQUIRE(count == 1);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("stacks: function sequences agree with eu-stack", "[integration][stacks]") {
    auto target = Target::start({target_bin("stacks_target", false), "--no-spinner"});
    auto tids = tids_from_ready(target->ready_line());
    RunResult ours = stacks(target->pid(), {"--no-group", "--no-inline", "--no-source"});
    REQUIRE(ours.exit_code == 0);
    RunResult ref = run({"eu-stack", "-p", std::to_string(target->pid())}, 60s);
    REQUIRE(ref.exit_code == 0);
    // eu-stack: "TID n:" then "#k 0x... name" lines. Compare the target's own functions.
    std::map<pid_t, std::vector<std::string>> theirs;
    pid_t cur = 0;
    std::istringstream in(ref.out);
    std::string line;
    static const std::regex kTid(R"(^TID (\d+):)"),
        kFn(R"(#\d+\s+0x[0-9a-f]+\s+(stacks_target::\S+))");
    std::smatch m;
    while (std::getline(in, line)) {
        if (std::regex_search(line, m, kTid))
            cur = std::stoi(m[1]);
        else if (std::regex_search(line, m, kFn))
            theirs[cur].push_back(m[1]);
    }
    size_t compared = 0;
    for (const auto& [name, tid] : tids) {
        if (name == "pid" || name == "threads") continue;
        std::vector<std::string> mine;
        for (const std::string& f : frame_texts(thread_block(ours.out, tid))) {
            if (f.rfind("stacks_target::", 0) != 0) continue;
            mine.push_back(f.substr(0, f.find(' ', f.find('('))));
        }
        INFO("thread " << name << " (" << tid << ")\n" << ours.out << "\n---\n" << ref.out);
        REQUIRE(!mine.empty());
        CHECK(mine == theirs[tid]);
        ++compared;
    }
    REQUIRE(compared >= 10);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("stacks: options select threads, depth and detail", "[integration][stacks]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    auto tids = tids_from_ready(target->ready_line());

    // A thread blocked for good runs only if something wakes it: a ptrace stop would (it has to
    // run to enter the stop). With --thread, the other threads are never seized or stopped.
    auto timeslices = [&](pid_t tid) {
        auto text = pmprof::read_file("/proc/" + std::to_string(target->pid()) + "/task/" +
                                      std::to_string(tid) + "/schedstat");
        REQUIRE(text.ok());
        auto s = pmprof::parse_schedstat(*text);
        REQUIRE(s.ok());
        return s->timeslices;
    };
    const uint64_t condwait_before = timeslices(tids.at("condwait"));
    const uint64_t reader_before = timeslices(tids.at("reader"));
    RunResult one = stacks(target->pid(), {"--thread", "reader"});
    REQUIRE(one.exit_code == 0);
    REQUIRE(one.out.find("1 threads") != std::string::npos);
    REQUIRE(one.out.find("blocked_in_read") != std::string::npos);
    REQUIRE(one.out.find("wait_on_condition") == std::string::npos);
    CHECK(timeslices(tids.at("condwait")) == condwait_before);
    CHECK(timeslices(tids.at("reader")) > reader_before);  // the chosen one was stopped

    RunResult held = stacks(target->pid(), {"--consistent"});
    REQUIRE(held.exit_code == 0);
    CHECK(held.out.find("blocked_in_read") != std::string::npos);
    CHECK(held.out.find("wait_on_condition") != std::string::npos);

    RunResult by_tid = stacks(target->pid(), {"--thread", std::to_string(tids.at("condwait"))});
    REQUIRE(by_tid.out.find("wait_on_condition") != std::string::npos);
    REQUIRE(by_tid.out.find("blocked_in_read") == std::string::npos);

    RunResult shallow = stacks(target->pid(), {"--thread", "recurser", "--max-depth", "5"});
    REQUIRE(shallow.out.find("stack truncated") != std::string::npos);
    REQUIRE(frame_texts(shallow.out).size() <= 6);  // 5 frames (+1 inline line at most)

    RunResult nosrc = stacks(target->pid(), {"--no-source"});
    REQUIRE(nosrc.exit_code == 0);
    REQUIRE(nosrc.out.find("stacks_target.cpp:") == std::string::npos);
    REQUIRE(nosrc.out.find("stacks_target::blocked_in_read()") != std::string::npos);

    RunResult noinl = stacks(target->pid(), {"--no-inline", "--thread", "inliner"});
    REQUIRE(noinl.out.find("(inlined)") == std::string::npos);
    REQUIRE(noinl.out.find("blocked_via_inline") != std::string::npos);

    RunResult lu = stacks(target->pid(), {"--unwinder", "libunwind", "--thread", "recurser"});
    REQUIRE(lu.exit_code == 0);
    REQUIRE(lu.out.find("stacks_target::recurser_thread(void*)") != std::string::npos);

    RunResult nomatch = stacks(target->pid(), {"--thread", "no-such-thread"});
    REQUIRE(nomatch.exit_code == 2);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("stacks: json, folded and pprof outputs", "[integration][stacks]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    auto tids = tids_from_ready(target->ready_line());

    RunResult json = stacks(target->pid(), {"--format", "json"});
    REQUIRE(json.exit_code == 0);
    REQUIRE(json.out.rfind("{\"pid\":" + std::to_string(target->pid()), 0) == 0);
    REQUIRE(json.out.find("\"name\":\"reader\"") != std::string::npos);
    REQUIRE(json.out.find("\"function\":\"stacks_target::blocked_in_read()\"") !=
            std::string::npos);
    REQUIRE(json.out.find("\"mangled\":\"_ZN13stacks_target15blocked_in_readEv\"") !=
            std::string::npos);

    RunResult folded = stacks(target->pid(), {"--format", "folded"});
    REQUIRE(folded.exit_code == 0);
    REQUIRE(folded.out.find("reader;") != std::string::npos);
    REQUIRE(std::regex_search(
        folded.out, std::regex(R"(reader;[^\n]*stacks_target::blocked_in_read\(\);[^\n]* 1\n)")));
    REQUIRE(std::regex_search(
        folded.out, std::regex(R"(worker-1;[^\n]*stacks_target::worker_wait\(\)[^\n]* 1\n)")));

    std::string pb = temp_path("threads.pb.gz");
    RunResult pprof = stacks(target->pid(), {"--format", "pprof", "-o", pb});
    REQUIRE(pprof.exit_code == 0);
    RunResult check = run({build_dir() + "/pprofcheck", pb});
    INFO(check.out << check.err);
    REQUIRE(check.exit_code == 0);
    RunResult raw = run_go_tool_pprof({"-raw", pb});
    INFO(raw.out << raw.err);
    REQUIRE(raw.exit_code == 0);
    REQUIRE(raw.out.find("threads/count") != std::string::npos);
    REQUIRE(raw.out.find("thread_name:[reader]") != std::string::npos);
    REQUIRE(raw.out.find("stacks_target::blocked_in_read") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("stacks: a SIGSTOPped target is still stopped afterwards", "[integration][stacks]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    REQUIRE(::kill(target->pid(), SIGSTOP) == 0);
    for (int i = 0; i < 400 && stopped_threads(target->pid()).size() < target->tids().size(); ++i)
        std::this_thread::sleep_for(5ms);
    auto before = stopped_threads(target->pid());
    REQUIRE(before.size() == target->tids().size());

    RunResult r = stacks(target->pid());
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(r.out.find("stopped") != std::string::npos);
    REQUIRE(r.out.find("blocked_in_read") != std::string::npos);
    std::this_thread::sleep_for(100ms);
    REQUIRE(tracer_pid(target->pid()) == 0);
    REQUIRE(stopped_threads(target->pid()) == before);  // still job-control stopped

    REQUIRE(::kill(target->pid(), SIGCONT) == 0);
    REQUIRE(left_running(target->pid(), {}, 5s) == "");
}

TEST_CASE("stacks: main thread exited, other threads still dumped", "[integration][stacks]") {
    auto target = Target::start({target_bin("stacks_target", false), "--main-exits"});
    auto tids = tids_from_ready(target->ready_line());
    std::this_thread::sleep_for(50ms);  // let the leader finish pthread_exit
    RunResult r = stacks(target->pid(), {"--no-group"});
    INFO(r.out << r.err);
    REQUIRE((r.exit_code == 0 || r.exit_code == 1));
    REQUIRE(r.out.find(fn("blocked_in_read()", "read")) != std::string::npos);
    REQUIRE(thread_block(r.out, tids.at("recurser")).find("recurser_thread") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("stacks: a thread in uninterruptible sleep is reported, never a hang",
          "[integration][stacks]") {
    auto target = Target::start({target_bin("stacks_target", true), "--dstate"});
    auto tids = tids_from_ready(target->ready_line());
    auto t0 = std::chrono::steady_clock::now();
    RunResult r = stacks(target->pid(), {"--no-group", "--stop-timeout", "200"});
    auto took = std::chrono::steady_clock::now() - t0;
    INFO(r.out << r.err);
    REQUIRE(!r.timed_out);
    REQUIRE(took < 20s);
    REQUIRE(r.exit_code == 1);  // partial: the vforker could not be captured
    std::string block = thread_block(r.out, tids.at("vforker"));
    REQUIRE(block.find("disk sleep") != std::string::npos);
    REQUIRE(block.find("no stack") != std::string::npos);
    // Everyone else was captured.
    REQUIRE(r.out.find(fn("blocked_in_read()", "read")) != std::string::npos);
    REQUIRE(left_running(target->pid(), {}, 10s) == "");
}

TEST_CASE("stacks: threads created and exiting during the snapshot", "[integration][stacks]") {
    auto target = Target::start({target_bin("churn_target", true)});
    for (int i = 0; i < 20; ++i) {
        RunResult r = stacks(target->pid());
        INFO(r.out << r.err);
        REQUIRE(!r.timed_out);
        REQUIRE((r.exit_code == 0 || r.exit_code == 1));
        REQUIRE(r.out.find("churn_target::") != std::string::npos);
        REQUIRE(target->alive());
    }
    REQUIRE(left_running(target->pid(), {}, 5s) == "");
}
