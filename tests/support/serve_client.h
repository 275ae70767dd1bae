// `pmprof serve` test clients shared by the serve tests: the server started on a free loopback
// port, curl, raw HTTP requests, the server's RSS. Header-only (inline), test code only.
#pragma once

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "pmprof/os/procfs.h"

namespace pmprof::test {

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
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline &&
               err_.find("/debug/pprof/\n") == std::string::npos) {
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
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                reaped_ = true;
                while (
                    read_some(std::chrono::steady_clock::now() + std::chrono::milliseconds(100))) {
                }
                return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return -1;
    }
    const std::string& stderr_text() const { return err_; }

  private:
    bool read_some(std::chrono::steady_clock::time_point deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
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
inline HttpAnswer curl(const std::string& method, const std::string& url,
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

/// Connects to 127.0.0.1:`port` and sends `head` (a request, possibly unfinished) whole;
/// returns the socket, or -1.
inline int connect_and_send(int port, const std::string& head) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(port));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    if (!head.empty() &&
        send(fd, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) {
        close(fd);
        return -1;
    }
    return fd;
}

/// A raw HTTP/1.1 request on a fresh connection (Connection: close); returns the socket, or -1.
inline int open_request(int port, const std::string& path) {
    return connect_and_send(port, "GET " + path +
                                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

/// The status of a raw GET, read to EOF; 0 on failure.
inline int raw_get_status(int port, const std::string& path) {
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

inline uint64_t rss_kb(pid_t pid) {
    auto s = pmprof::read_status(pid);
    return s.ok() ? s->vm_rss_kb : 0;
}

/// Waits up to `timeout` for `pid` to be traced (a job started); true when it is.
inline bool wait_traced(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (tracer_pid(pid) > 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
}

}  // namespace pmprof::test
