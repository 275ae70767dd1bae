// `pmprof serve` under abuse: a target thread in D state while a request
// traces it (never left stopped when the D state ends, the next request still works), oversized
// and malformed requests (memory back under twice the idle RSS), and clients that never finish
// their request head (others are still answered). Loopback only, bounded in count and time.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../support/harness.h"
#include "../support/serve_client.h"
#include "pmprof/os/procfs.h"

using namespace pmprof::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

/// Sends `bytes` more of `chunk` repeated (stops early when the server closes); true when all
/// were sent.
bool send_repeated(int fd, const std::string& chunk, size_t bytes) {
    for (size_t sent = 0; sent < bytes; sent += chunk.size())
        if (send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) <= 0) return false;
    return true;
}

/// Whatever the server answers before closing, up to 10 s ("" when it just closed).
std::string drain(int fd) {
    std::string out;
    char buf[4096];
    pollfd p{fd, POLLIN, 0};
    const auto deadline = Clock::now() + 10s;
    while (Clock::now() < deadline && poll(&p, 1, 1000) > 0) {
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return out;
}

}  // namespace

TEST_CASE("serve: a D-state thread is never left stopped and the next request works",
          "[integration][serve][stops]") {
    // Longer than the two 3 s waits the server used to spend trying to detach it.
    auto target =
        Target::start({target_bin("ptrace_target", true), "--dstate-ms", "8000", "--threads", "2"});
    const pid_t pid = target->pid();
    const pid_t dtid = std::stoi(parse_fields(target->ready_line()).at("dstate"));
    Server server(pid);
    // At the start of a D state: the vforker writes "vfork K" right before it vforks.
    for (int i = 0; i < 20 && target->read_line(20s).rfind("vfork ", 0) != 0; ++i) {
    }
    const auto in_d = Clock::now() + 2s;
    while (Clock::now() < in_d &&
           pmprof::read_task_stat(pid, dtid)->state != pmprof::ThreadState::DiskSleep)
        std::this_thread::sleep_for(1ms);
    const auto t0 = Clock::now();
    HttpAnswer dump = curl("GET", server.base() + "goroutine?debug=2");
    const double took = std::chrono::duration<double>(Clock::now() - t0).count();
    CHECK(dump.status == 200);
    INFO(dump.body);
    CHECK(dump.body.find("(vforker) not stopped within") != std::string::npos);
    CHECK(took < 3.0);  // one stop timeout, not two 3 s detach waits
    // When the D state ends the vforker must not enter a ptrace-stop nobody answers.
    const auto until = Clock::now() + 8500ms;
    std::string left_stopped;
    while (Clock::now() < until && left_stopped.empty()) {
        auto st = pmprof::read_task_status(pid, dtid);
        if (st.ok() && st->state == pmprof::ThreadState::TracingStop)
            left_stopped = "vforker in t, TracerPid " + std::to_string(st->tracer_pid);
        std::this_thread::sleep_for(5ms);
    }
    CHECK(left_stopped == "");
    CHECK(tracer_pid(pid) == 0);
    // The server does not take its own leftover trace for another tracer's.
    HttpAnswer again = curl("GET", server.base() + "heap?debug=1");
    INFO(again.body);
    CHECK(again.status == 200);
    CHECK(again.body.find("already traced") == std::string::npos);
    REQUIRE(left_running(pid) == "");
}

TEST_CASE("serve: oversized and malformed requests leave memory under twice the idle RSS",
          "[integration][serve]") {
    auto target = Target::start({target_bin("split_target", true), "--busy", "1", "--idle", "1"});
    Server server(target->pid());
    for (int i = 0; i < 20; ++i) REQUIRE(raw_get_status(server.port(), "/debug/pprof/") == 200);
    const uint64_t idle = rss_kb(server.pid());
    REQUIRE(idle > 0);
    const std::string line = "X-Filler: " + std::string(8000, 'a') + "\r\n";
    const size_t flood = 200u << 20;  // 200 MB per request
    struct Case {
        const char* what;
        std::string head;
        std::string chunk;
    };
    const std::vector<Case> cases = {
        {"header lines", "GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\n", line},
        {"one endless header",
         "GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\nX-Long: ", std::string(65536, 'b')},
        {"endless URI", "GET /debug/pprof/?", std::string(65536, 'c')},
        {"chunked body",
         "POST /debug/pprof/symbol HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         "10000\r\n" + std::string(65536, '1') + "\r\n"},
        {"huge Content-Length",
         "POST /debug/pprof/symbol HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 209715200\r\n\r\n",
         std::string(65536, '2')},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        const int fd = connect_and_send(server.port(), c.head);
        REQUIRE(fd >= 0);
        send_repeated(fd, c.chunk, flood);  // the server may close early: that is fine
        const std::string answer = drain(fd);
        if (!answer.empty()) CHECK(answer.rfind("HTTP/1.1 200", 0) != 0);
        // The server still answers, and gives the memory back.
        REQUIRE(raw_get_status(server.port(), "/debug/pprof/") == 200);
    }
    uint64_t after = rss_kb(server.pid());
    for (int i = 0; i < 40 && after > 2 * idle; ++i) {  // the guard trims within ~1 s of idle
        std::this_thread::sleep_for(100ms);
        after = rss_kb(server.pid());
    }
    INFO("idle RSS " << idle << " kB, after " << after << " kB");
    CHECK(after <= 2 * idle);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve: clients that never finish their request do not block the others",
          "[integration][serve]") {
    auto target = Target::start({target_bin("split_target", true), "--busy", "1", "--idle", "1"});
    Server server(target->pid());
    // More unfinished heads than the server has workers (it had 8, each held 5 s per recv).
    std::vector<int> slow;
    for (int i = 0; i < 40; ++i) {
        const int fd = connect_and_send(server.port(), "GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\n");
        REQUIRE(fd >= 0);
        slow.push_back(fd);
    }
    std::this_thread::sleep_for(100ms);
    const auto t0 = Clock::now();
    CHECK(raw_get_status(server.port(), "/debug/pprof/") == 200);
    const double took = std::chrono::duration<double>(Clock::now() - t0).count();
    CHECK(took < 3.5);  // at most the head deadline (2 s), not 40 / 8 x 5 s
    // The slow ones are closed by the server within its head deadline.
    size_t closed = 0;
    for (int fd : slow) {
        // Readable: closed (EOF) or answered with an error, either way no longer waiting.
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 5000) > 0) ++closed;
        close(fd);
    }
    CHECK(closed == slow.size());
    REQUIRE(left_running(target->pid()) == "");
}
