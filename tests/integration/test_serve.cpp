// `pmprof serve` against live targets (issue 6 §5): go tool pprof fetching profile, heap and
// threads; curl for every bad input; concurrency (409); a client that disconnects; the target
// exiting (410); SIGTERM of the server mid-profile; a port in use; bounded memory. Every test
// checks that the target is left running and untraced.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../support/harness.h"
#include "pmprof/output_pprof.h"
#include "pmprof/perf_sampler.h"
#include "pmprof/procfs.h"

using namespace pmprof::test;
using Clock = std::chrono::steady_clock;

namespace {

/// `pmprof serve PID --listen 127.0.0.1:0 ...` started with its stderr on a pipe; ready once it
/// printed the URL. The destructor SIGKILLs (if still alive) and reaps it.
class Server {
  public:
    Server(pid_t target, const std::vector<std::string>& extra = {}) {
        std::vector<std::string> argv = {pmprof_bin(), "serve", std::to_string(target), "--listen",
                                         "127.0.0.1:0"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        int fds[2];
        REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            dup2(fds[1], STDERR_FILENO);
            int devnull = open("/dev/null", O_RDWR);
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
            std::vector<char*> args;
            for (auto& a : argv) args.push_back(a.data());
            args.push_back(nullptr);
            execv(args[0], args.data());
            _exit(127);
        }
        close(fds[1]);
        err_fd_ = fds[0];
        const std::string marker = " on http://127.0.0.1:";
        const auto deadline = Clock::now() + std::chrono::seconds(10);
        while (Clock::now() < deadline && err_.find("/debug/pprof/\n") == std::string::npos) {
            if (!read_some(deadline)) break;
        }
        const size_t at = err_.find(marker);
        INFO("pmprof serve stderr: " << err_);
        REQUIRE(at != std::string::npos);
        port_ = std::stoi(err_.substr(at + marker.size()));
        base_ = "http://127.0.0.1:" + std::to_string(port_) + "/debug/pprof/";
    }
    ~Server() {
        if (!reaped_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        close(err_fd_);
    }
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    pid_t pid() const { return pid_; }
    int port() const { return port_; }
    const std::string& base() const { return base_; }
    /// Waits (bounded) for the server to exit; its exit code, -1 when killed or timed out.
    int wait_exit(std::chrono::milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        while (Clock::now() < deadline) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                reaped_ = true;
                while (read_some(Clock::now() + std::chrono::milliseconds(100))) {
                }
                return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return -1;
    }
    const std::string& stderr_text() const { return err_; }

  private:
    bool read_some(Clock::time_point deadline) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd p{err_fd_, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(std::max<long>(0, left.count()))) <= 0) return false;
        char buf[4096];
        const ssize_t n = read(err_fd_, buf, sizeof buf);
        if (n <= 0) return false;
        err_.append(buf, static_cast<size_t>(n));
        return true;
    }

    pid_t pid_ = -1;
    int err_fd_ = -1;
    int port_ = 0;
    bool reaped_ = false;
    std::string base_, err_;
};

struct HttpAnswer {
    int status = 0;
    std::string body;
};

/// curl -X METHOD URL [args]: the status and the body.
HttpAnswer curl(const std::string& method, const std::string& url,
                const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {"curl",       "-sS", "--path-as-is", "-w", "\n%{http_code}",
                                     "--max-time", "60"};
    if (method == "HEAD") {
        argv.push_back("-I");  // -X HEAD would wait for a body that never comes
    } else {
        argv.insert(argv.end(), {"-X", method});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    RunResult r = run(argv, std::chrono::seconds(90));
    INFO("curl " << method << " " << url << " stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    const size_t nl = r.out.rfind('\n');
    REQUIRE(nl != std::string::npos);
    return {std::stoi(r.out.substr(nl + 1)), r.out.substr(0, nl)};
}

/// A raw HTTP/1.1 request on a fresh connection (Connection: close); returns the socket, or -1.
int open_request(int port, const std::string& path) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(port));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    const std::string req =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        close(fd);
        return -1;
    }
    return fd;
}

/// The status of a raw GET, read to EOF; 0 on failure.
int raw_get_status(int port, const std::string& path) {
    int fd = open_request(port, path);
    if (fd < 0) return 0;
    std::string answer;
    char buf[8192];
    pollfd p{fd, POLLIN, 0};
    while (poll(&p, 1, 10000) > 0) {
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        answer.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return answer.rfind("HTTP/1.1 ", 0) == 0 ? std::stoi(answer.substr(9, 3)) : 0;
}

uint64_t rss_kb(pid_t pid) {
    auto s = pmprof::read_status(pid);
    return s.ok() ? s->vm_rss_kb : 0;
}

/// Waits up to `timeout` for `pid` to be traced (a job started); true when it is.
bool wait_traced(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (tracer_pid(pid) > 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
}

std::unique_ptr<Target> start_split() {
    return Target::start({target_bin("split_target", true), "--busy", "1", "--idle", "1"});
}

}  // namespace

TEST_CASE("go tool pprof reads profile, heap and threads from pmprof serve",
          "[integration][serve]") {
    auto target = start_split();
    Server server(target->pid());

    RunResult prof = run(go_tool_pprof_argv({"-raw", server.base() + "profile?seconds=2"}),
                         std::chrono::seconds(120));
    INFO("pprof stderr: " << prof.err);
    REQUIRE(prof.exit_code == 0);
    CHECK(prof.out.find("cpu/nanoseconds") != std::string::npos);
    CHECK(prof.out.find("work_seventy") != std::string::npos);
    CHECK(prof.out.find("descend") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");

    RunResult heap =
        run(go_tool_pprof_argv({"-raw", server.base() + "heap"}), std::chrono::seconds(120));
    INFO("pprof heap stderr: " << heap.err);
    REQUIRE(heap.exit_code == 0);
    CHECK(heap.out.find("inuse_space/bytes") != std::string::npos);

    for (const char* name : {"goroutine", "threads"}) {
        RunResult t =
            run(go_tool_pprof_argv({"-raw", server.base() + name}), std::chrono::seconds(120));
        INFO("pprof " << name << " stderr: " << t.err);
        REQUIRE(t.exit_code == 0);
        CHECK(t.out.find("descend") != std::string::npos);
        CHECK(t.out.find("threads/count") != std::string::npos);
    }
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve: text endpoints answer like Go's", "[integration][serve]") {
    auto target = start_split();
    Server server(target->pid());

    HttpAnswer index = curl("GET", server.base());
    CHECK(index.status == 200);
    CHECK(index.body.find("<a href='goroutine?debug=1'>goroutine</a>") != std::string::npos);
    CHECK(curl("GET", server.base().substr(0, server.base().size() - 1)).status == 200);

    HttpAnswer cmdline = curl("GET", server.base() + "cmdline");
    CHECK(cmdline.status == 200);
    std::string expected;  // Go's cmdline: the arguments joined by NUL bytes
    for (const char* arg : {"--busy", "1", "--idle", "1"}) expected += '\0' + std::string(arg);
    CHECK(cmdline.body == target_bin("split_target", true) + expected);

    HttpAnswer grouped = curl("GET", server.base() + "goroutine?debug=1");
    CHECK(grouped.status == 200);
    CHECK(grouped.body.find("work_") != std::string::npos);
    HttpAnswer every = curl("GET", server.base() + "goroutine?debug=2");
    CHECK(every.status == 200);
    CHECK(every.body.size() >= grouped.body.size() / 2);

    HttpAnswer heap = curl("GET", server.base() + "heap?debug=1");
    CHECK(heap.status == 200);
    CHECK_FALSE(heap.body.empty());

    HttpAnswer sym = curl("GET", server.base() + "symbol");
    CHECK(sym.status == 200);
    CHECK(sym.body == "num_symbols: 1\n");
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve: every bad input gets its status and reason, the target is never touched",
          "[integration][serve]") {
    auto target = start_split();
    Server server(target->pid(), {"--max-seconds", "60"});
    const std::string& b = server.base();

    struct Case {
        const char* method;
        std::string url;
        int status;
        const char* reason;
    };
    const std::vector<Case> cases = {
        {"GET", b + "profile?seconds=0", 400, "bad seconds '0'"},
        {"GET", b + "profile?seconds=abc", 400, "bad seconds"},
        {"GET", b + "profile?seconds=61", 400, "from 1 to 60"},
        {"GET", b + "profile?rate=0.5", 400, "bad rate"},
        {"GET", b + "profile?rate=5000", 400, "bad rate"},
        {"GET", b + "profile?mode=bogus", 400, "bad mode"},
        {"GET", b + "heap?debug=x", 400, "bad debug"},
        {"GET", b + "heap?seconds=5", 400, "delta profiles"},
        {"GET", b + "goroutine?debug=-1", 400, "bad debug"},
        {"POST", b + "profile", 405, "method POST not allowed"},
        {"PUT", b + "heap", 405, "method PUT not allowed"},
        {"DELETE", b, 405, "method DELETE not allowed"},
        {"PUT", b + "symbol", 405, "method PUT not allowed"},
        {"GET", b + "block", 404, "404 page not found"},
        {"GET", b + "../../../etc/passwd", 404, "404 page not found"},
        {"GET", "http://127.0.0.1:" + std::to_string(server.port()) + "/etc/passwd", 404,
         "404 page not found"},
    };
    for (const Case& c : cases) {
        INFO(c.method << " " << c.url);
        HttpAnswer a = curl(c.method, c.url);
        CHECK(a.status == c.status);
        CHECK(a.body.find(c.reason) != std::string::npos);
    }
    CHECK(curl("HEAD", b + "profile").status == 405);
    CHECK(tracer_pid(target->pid()) == 0);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve --token: every request needs the bearer token", "[integration][serve]") {
    auto target = start_split();
    Server server(target->pid(), {"--token", "s3cret"});
    CHECK(curl("GET", server.base()).status == 401);
    CHECK(curl("GET", server.base() + "nope").status == 401);  // paths are not revealed either
    CHECK(curl("GET", server.base(), {"-H", "Authorization: Bearer wrong"}).status == 401);
    CHECK(curl("GET", server.base() + "cmdline", {"-H", "Authorization: Bearer s3cret"}).status ==
          200);
}

TEST_CASE("serve: a second concurrent profile gets 409 at once; other requests still work",
          "[integration][serve]") {
    auto target = start_split();
    // Traced while it profiles: the ptrace backend (auto takes perf where allowed).
    Server server(target->pid(), {"--backend", "ptrace"});
    auto first = std::async(std::launch::async,
                            [&] { return curl("GET", server.base() + "profile?seconds=3"); });
    REQUIRE(wait_traced(target->pid(), std::chrono::seconds(5)));

    const auto t0 = Clock::now();
    HttpAnswer second = curl("GET", server.base() + "profile?seconds=1");
    CHECK(second.status == 409);
    CHECK(Clock::now() - t0 < std::chrono::seconds(1));
    CHECK(curl("GET", server.base()).status == 200);  // the index needs no tracing
    // A thread dump waits for the profile to end, then runs.
    HttpAnswer dump = curl("GET", server.base() + "threads?debug=1");
    CHECK(dump.status == 200);

    HttpAnswer done = first.get();
    CHECK(done.status == 200);
    CHECK(done.body.size() > 100);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve: a client that disconnects cancels its profile; detached within a second",
          "[integration][serve]") {
    auto target = start_split();
    // Traced while it profiles: the ptrace backend (auto takes perf where allowed).
    Server server(target->pid(), {"--backend", "ptrace"});
    int fd = open_request(server.port(), "/debug/pprof/profile?seconds=30");
    REQUIRE(fd >= 0);
    REQUIRE(wait_traced(target->pid(), std::chrono::seconds(5)));
    close(fd);
    REQUIRE(left_running(target->pid(), {}, std::chrono::milliseconds(1000)) == "");
    // The server took the cancel, not a crash: the next profile runs.
    HttpAnswer next = curl("GET", server.base() + "profile?seconds=1");
    CHECK(next.status == 200);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve: after the target exits every request gets 410 Gone", "[integration][serve]") {
    auto target = start_split();
    const pid_t pid = target->pid();
    Server server(pid);
    REQUIRE(curl("GET", server.base()).status == 200);
    REQUIRE(target->terminate(SIGTERM) != -1);
    for (const char* path : {"profile?seconds=1", "heap", "goroutine", "cmdline", ""}) {
        HttpAnswer a = curl("GET", server.base() + path);
        INFO(path);
        CHECK(a.status == 410);
        CHECK(a.body.find("pid " + std::to_string(pid) + " has exited") != std::string::npos);
    }
}

TEST_CASE("serve: SIGTERM mid-profile leaves the target running and untraced",
          "[integration][serve]") {
    auto target = start_split();
    // Traced while it profiles: the ptrace backend (auto takes perf where allowed).
    Server server(target->pid(), {"--backend", "ptrace"});
    int fd = open_request(server.port(), "/debug/pprof/profile?seconds=30");
    REQUIRE(fd >= 0);
    REQUIRE(wait_traced(target->pid(), std::chrono::seconds(5)));
    REQUIRE(kill(server.pid(), SIGTERM) == 0);
    CHECK(server.wait_exit(std::chrono::seconds(5)) == 0);
    close(fd);
    CHECK(target->alive());
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve: mode=cpu profiles take attach's backend choice; perf traces nothing",
          "[integration][serve]") {
    auto target = start_split();
    const bool perf = pmprof::probe_perf_access(getpid()).allowed;
    for (const std::string backend : {"auto", "ptrace"}) {
        INFO("serve --backend " << backend);
        Server server(target->pid(), {"--backend", backend});
        auto answer = std::async(std::launch::async, [&] {
            return curl("GET", server.base() + "profile?seconds=2&mode=cpu");
        });
        bool traced = false;
        for (int i = 0; i < 150 && !traced; ++i) {
            traced = tracer_pid(target->pid()) > 0;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        HttpAnswer a = answer.get();
        REQUIRE(a.status == 200);
        auto p = pmprof::decode_pprof(a.body);
        REQUIRE(p.ok());
        const std::string expect =
            backend == "auto" && perf ? "pmprof backend: perf" : "pmprof backend: ptrace";
        bool said = false;
        for (const std::string& c : p->comments) said |= c.rfind(expect, 0) == 0;
        CHECK(said);
        CHECK(traced == (expect == "pmprof backend: ptrace"));
        REQUIRE(left_running(target->pid()) == "");
    }
}

TEST_CASE("serve: a port in use is a one-line error with exit 2", "[integration][serve]") {
    auto target = start_split();
    Server server(target->pid());
    const std::string addr = "127.0.0.1:" + std::to_string(server.port());
    RunResult r = run({pmprof_bin(), "serve", std::to_string(target->pid()), "--listen", addr},
                      std::chrono::seconds(20));
    CHECK(r.exit_code == 2);
    CHECK(r.err == "pmprof: cannot listen on " + addr + ": Address already in use\n");
    RunResult usage = run({pmprof_bin(), "serve", std::to_string(target->pid()), "--listen", "x"});
    CHECK(usage.exit_code == 64);
}

TEST_CASE("serve: memory stays bounded over 1000 index requests", "[integration][serve]") {
    auto target = start_split();
    Server server(target->pid());
    for (int i = 0; i < 100; ++i) REQUIRE(raw_get_status(server.port(), "/debug/pprof/") == 200);
    const uint64_t before = rss_kb(server.pid());
    REQUIRE(before > 0);
    int ok = 0;
    for (int i = 0; i < 1000; ++i) ok += raw_get_status(server.port(), "/debug/pprof/") == 200;
    const uint64_t after = rss_kb(server.pid());
    CHECK(ok == 1000);
    INFO("RSS before " << before << " kB, after " << after << " kB");
    CHECK(after <= before + 1024);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve: goroutine?debug=1 and 2 carry the lock lines and the deadlock", "[integration][serve][locks]") {
    auto target = Target::start({target_bin("locks_target", true), "deadlock2", "pipe"});
    auto f = parse_fields(target->ready_line());
    Server server(target->pid());
    for (const char* debug : {"1", "2"}) {
        HttpAnswer a = curl("GET", server.base() + "goroutine?debug=" + debug);
        INFO(a.body);
        CHECK(a.status == 200);
        CHECK(a.body.find("Deadlock: 2 threads wait for each other") != std::string::npos);
        CHECK(a.body.find("waiting for mutex " + f.at("g_pipe_lock") +
                          " (locks_target::g_pipe_lock, normal) held by thread " + f.at("pp-holder") +
                          " \"pp-holder\"") != std::string::npos);
        CHECK(a.body.find("Lock chain (not a deadlock): thread " + f.at("pp-waiter-2")) !=
              std::string::npos);
    }
    REQUIRE(left_running(target->pid()) == "");
}
