// `pmprof serve`: socket-level helpers cpp-httplib 0.11 does not offer: noticing that the client
// of a running request went away, and the reason a bind failed.
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "http/tracer.h"

namespace pmprof::http {
namespace {

int port_of(const sockaddr_storage& a) {
    if (a.ss_family == AF_INET) {
        sockaddr_in sin{};
        std::memcpy(&sin, &a, sizeof sin);
        return ntohs(sin.sin_port);
    }
    if (a.ss_family == AF_INET6) {
        sockaddr_in6 sin6{};
        std::memcpy(&sin6, &a, sizeof sin6);
        return ntohs(sin6.sin6_port);
    }
    return -1;
}

/// Does socket `fd` have local port `local_port` and the peer `remote_addr`:`remote_port`? The
/// peer address is formatted as cpp-httplib formats req.remote_addr (getnameinfo NUMERICHOST).
bool is_connection(int fd, int local_port, const std::string& remote_addr, int remote_port) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
        port_of(local) != local_port)
        return false;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 ||
        port_of(peer) != remote_port)
        return false;
    std::array<char, NI_MAXHOST> host{};
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&peer), peer_len, host.data(), host.size(),
                      nullptr, 0, NI_NUMERICHOST) != 0)
        return false;
    return remote_addr == host.data();
}

}  // namespace

std::optional<std::string> connection_peer(int fd, int local_port) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return std::nullopt;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
        port_of(local) != local_port)
        return std::nullopt;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) return std::nullopt;
    std::array<char, NI_MAXHOST> host{};
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&peer), peer_len, host.data(), host.size(),
                      nullptr, 0, NI_NUMERICHOST) != 0)
        return std::nullopt;
    return std::string(host.data()) + ":" + std::to_string(port_of(peer));
}

std::optional<ConnectionWatch> ConnectionWatch::find(int local_port, const std::string& remote_addr,
                                                     int remote_port) {
    if (local_port <= 0 || remote_port <= 0) return std::nullopt;
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc/self/fd"), ::closedir);
    if (!dir) return std::nullopt;
    while (const dirent* e = ::readdir(dir.get())) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        const int fd = std::atoi(e->d_name);
        if (fd != ::dirfd(dir.get()) && is_connection(fd, local_port, remote_addr, remote_port))
            return ConnectionWatch(fd);
    }
    return std::nullopt;
}

bool ConnectionWatch::peer_closed() const {
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    char c = 0;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    // n > 0: the client sent more (a pipelined request), it is still there.
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

std::string bind_failure_reason(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* list = nullptr;
    const std::string service = std::to_string(port);
    if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0)
        return ::gai_strerror(rc);
    std::string reason = "unknown reason";
    for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            reason = std::strerror(errno);
            continue;
        }
        const int yes = 1;  // as cpp-httplib does, so a TIME_WAIT socket is not reported
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        const bool bound = ::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        const int err = errno;
        ::close(fd);
        if (!bound) {
            reason = std::strerror(err);
            break;
        }
    }
    ::freeaddrinfo(list);
    return reason;
}

}  // namespace pmprof::http
