// `pmprof serve`: what cpp-httplib 0.11 does not bound. It reads a request head
// without limit on the number of header lines, grows a line buffer as long as the line lasts,
// and waits up to its read timeout per recv, so one client can hold a worker for as long as it
// trickles bytes and make the server allocate hundreds of MB. The guard looks at the server's
// connections every 50 ms and shuts down (shutdown(2): the worker then sees EOF and closes it)
// those that have not delivered a whole request head in time, and every such connection at once
// when the server's memory grows past its limit; it gives freed memory back to the system
// (malloc_trim) once the server is idle again.
#include <dirent.h>
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string_view>

#include "http/tracer.h"
#include "pmprof/os/procfs.h"
#include "pmprof/support/log.h"

namespace pmprof::http {
namespace {

constexpr auto kTick = std::chrono::milliseconds(50);

/// True when the bytes not yet read from `fd` hold a whole request head (peeked, not taken).
bool head_waiting(int fd) {
    char buf[16384];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 &&
           std::string_view(buf, static_cast<size_t>(n)).find("\r\n\r\n") != std::string_view::npos;
}

uint64_t self_rss_kb() {
    auto s = read_status(::getpid());
    return s.ok() ? s->vm_rss_kb : 0;
}

}  // namespace

ConnectionGuard::ConnectionGuard(int port, std::chrono::milliseconds head_deadline,
                                 uint64_t rss_growth_kb)
    : port_(port), head_deadline_(head_deadline), rss_growth_kb_(rss_growth_kb) {
    baseline_kb_ = self_rss_kb();
    thread_ = std::thread([this] { run(); });
}

ConnectionGuard::~ConnectionGuard() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void ConnectionGuard::request_started(const std::string& peer) {
    std::lock_guard<std::mutex> lk(mu_);
    Conn& c = conns_[peer];
    c.active = true;
}

void ConnectionGuard::request_done(const std::string& peer) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = conns_.find(peer);
    if (it == conns_.end()) return;
    it->second.active = false;
    it->second.since = std::chrono::steady_clock::now();  // the next request head is due from now
}

void ConnectionGuard::run() {
    std::unique_lock<std::mutex> lk(mu_);
    auto last_trim = std::chrono::steady_clock::now();
    while (!stopping_) {
        cv_.wait_for(lk, kTick);
        if (stopping_) break;
        const auto now = std::chrono::steady_clock::now();
        // The server's sockets now, by peer ("addr:port" as cpp-httplib names it).
        std::map<std::string, int> open;
        lk.unlock();
        std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc/self/fd"), ::closedir);
        while (dir) {
            const dirent* e = ::readdir(dir.get());
            if (e == nullptr) break;
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            const int fd = std::atoi(e->d_name);
            if (fd == ::dirfd(dir.get())) continue;
            if (auto peer = connection_peer(fd, port_)) open.emplace(*peer, fd);
        }
        uint64_t rss = self_rss_kb();
        if (rss > baseline_kb_ + rss_growth_kb_ && now - last_trim > 4 * kTick) {
            ::malloc_trim(0);  // what is only freed, not in use, is no reason to close anything
            last_trim = now;
            rss = self_rss_kb();
        }
        lk.lock();
        const bool over = rss > baseline_kb_ + rss_growth_kb_;
        for (auto it = conns_.begin(); it != conns_.end();)
            it = open.contains(it->first) ? std::next(it) : conns_.erase(it);
        bool any_active = false;
        for (const auto& [peer, fd] : open) {
            auto [it, fresh] = conns_.try_emplace(peer);
            Conn& c = it->second;
            if (fresh) c.since = now;
            any_active = any_active || c.active;
            if (c.active || c.closed) continue;
            // A whole head already waiting in the socket is a request queued for a worker.
            const bool late = now - c.since > head_deadline_ && !head_waiting(fd);
            if (!late && !over) continue;
            // Still the same connection (the fd may have been reused since the scan)?
            if (connection_peer(fd, port_) != peer) continue;
            log_info("closing the connection of {}: {}", peer,
                     late ? "no whole request within the read deadline"
                          : "its request is too large (server memory limit)");
            ::shutdown(fd, SHUT_RDWR);
            c.closed = true;
        }
        // Freed request buffers stay in malloc's arenas: give them back once idle.
        if (!any_active && rss > baseline_kb_ * 3 / 2 &&
            now - last_trim > std::chrono::seconds(1)) {
            ::malloc_trim(0);
            last_trim = now;
        }
    }
}

}  // namespace pmprof::http
