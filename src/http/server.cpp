// `pmprof serve`: the cpp-httplib adapter. Routes Go's /debug/pprof paths to the jobs, enforces
// the token, the methods and the limits before anything reaches the tracer thread, watches the
// client's socket so a disconnect cancels its job, and turns SIGINT/SIGTERM/SIGHUP into an
// orderly stop (the running job detaches first).
#include "pmprof/http/http.h"

// The Debian library (libcpp-httplib.so) is built with these features, and httplib::Request's
// layout depends on them: the header must be compiled with `pkg-config --cflags cpp-httplib`
// (the Makefile's PKGS) or the layouts disagree.
#if !defined(CPPHTTPLIB_OPENSSL_SUPPORT)
#error "compile with `pkg-config --cflags cpp-httplib` (the Debian library's ABI)"
#endif

#include <httplib.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <thread>

#include "http/tracer.h"
#include "pmprof/os/signals.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

using http::Reply;

constexpr size_t kMaxQueuedJobs = 4;          // snapshots waiting behind a profile; then 503
constexpr size_t kMaxRequestBody = 1u << 20;  // a symbol POST; larger: 413
// Connections served at once. A worker is held from the first byte of a request to its answer
// (a profile's whole duration), so a handful of slow or waiting clients must not take them all.
constexpr size_t kHttpWorkers = 32;
// A request head (line and headers) must arrive whole within this, from the connection's
// start or its previous answer (ConnectionGuard); cpp-httplib's own timeout is per recv.
constexpr auto kHeadDeadline = std::chrono::seconds(2);
// The server's RSS may grow this much over its idle size while heads arrive; past it, the
// connections still sending theirs are closed.
constexpr uint64_t kRssGrowthKb = 64 * 1024;
constexpr const char* kKnownPaths[] = {
    "/debug/pprof",         "/debug/pprof/",          "/debug/pprof/profile",
    "/debug/pprof/heap",    "/debug/pprof/goroutine", "/debug/pprof/threads",
    "/debug/pprof/cmdline", "/debug/pprof/symbol",    "/debug/pprof/allocs"};

void send(httplib::Response& res, const Reply& r) {
    res.status = r.status;
    res.set_header("X-Content-Type-Options", "nosniff");
    if (!r.filename.empty())
        res.set_header("Content-Disposition", "attachment; filename=\"" + r.filename + "\"");
    // Go's serveError marks its error answers so clients can tell them from a proxy's.
    if (r.status >= 400) res.set_header("X-Go-Pprof", "1");
    res.set_content(r.body, r.content_type);
}

bool known_path(const std::string& path) {
    for (const char* p : kKnownPaths)
        if (path == p) return true;
    return false;
}

std::string url_host(const std::string& host) {
    return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

class PprofServer {
  public:
    PprofServer(const ServeOptions& opt, const http::TargetPin& pin)
        : opt_(opt), pin_(pin), ctx_{&pin, nullptr, opt.unwinder, opt.max_pause_fraction},
          tracer_(kMaxQueuedJobs) {
        ctx_.tracer = &tracer_;
        ctx_.backend = opt.backend;
        configure();
    }
    ~PprofServer() { tracer_.shutdown(); }

    /// Binds; returns the port or an Error naming the address and the reason.
    Result<int> bind();
    /// Serves until stop() (from the signal thread).
    bool listen() { return server_.listen_after_bind(); }
    /// Starts watching the connections of `port` (after bind()).
    void guard(int port) {
        guard_ = std::make_unique<http::ConnectionGuard>(
            port, std::chrono::duration_cast<std::chrono::milliseconds>(kHeadDeadline),
            kRssGrowthKb);
    }
    void stop() {
        tracer_.shutdown();  // first: a running profile detaches, queued jobs answer 503
        server_.stop();
    }

  private:
    void configure();
    void add_routes();
    bool pre_route(const httplib::Request& req, httplib::Response& res);
    /// Runs `work` on the tracer thread, cancelling it if the client goes away.
    Reply run_job(const httplib::Request& req, http::Tracer::Work work, bool exclusive,
                  bool shared = false);
    void handle_profile(const httplib::Request& req, httplib::Response& res);
    void handle_symbol(const httplib::Request& req, httplib::Response& res);
    /// heap, goroutine, threads: a snapshot, pprof or (?debug=N) text.
    void handle_snapshot(const httplib::Request& req, httplib::Response& res,
                         const std::string& name);

    const ServeOptions& opt_;
    const http::TargetPin& pin_;
    http::JobContext ctx_;
    http::Tracer tracer_;
    std::unique_ptr<http::ConnectionGuard> guard_;  // declared before server_: outlives it
    httplib::Server server_;
};

Result<int> PprofServer::bind() {
    const ListenAddress& a = opt_.listen;
    int port = a.port;
    bool ok = false;
    if (port == 0) {
        port = server_.bind_to_any_port(a.host);
        ok = port > 0;
    } else {
        ok = server_.bind_to_port(a.host, port);
    }
    if (ok) return port;
    // cpp-httplib reports only false: bind once more ourselves to learn errno for the message.
    return Error{fmt::format("cannot listen on {}:{}: {}", url_host(a.host), a.port,
                             http::bind_failure_reason(a.host, a.port))};
}

bool PprofServer::pre_route(const httplib::Request& req, httplib::Response& res) {
    if (guard_) guard_->request_started(req.remote_addr + ":" + std::to_string(req.remote_port));
    if (!opt_.token.empty() &&
        !bearer_token_matches(req.get_header_value("Authorization"), opt_.token)) {
        res.set_header("WWW-Authenticate", "Bearer realm=\"pmprof\"");
        send(res, Reply::text(401, "missing or wrong bearer token (Authorization: Bearer ...)"));
        return true;
    }
    if (!known_path(req.path)) {
        send(res, Reply::text(404, "404 page not found"));  // Go's http.NotFound body
        return true;
    }
    const bool symbol = req.path == "/debug/pprof/symbol";
    // Before the body is read (cpp-httplib reads it after this handler): a chunked body has no
    // length to check against the payload limit, so it is refused unread.
    if (req.has_header("Transfer-Encoding")) {
        res.set_header("Connection", "close");
        send(res, Reply::text(411, "a request body needs Content-Length (at most 1 MiB)"));
        return true;
    }
    if (req.method == "GET" || (symbol && req.method == "POST")) return false;
    res.set_header("Allow", symbol ? "GET, POST" : "GET");
    res.set_header("Connection", "close");  // an unread body must not be parsed as a request
    send(res, Reply::text(405, fmt::format("method {} not allowed", req.method)));
    return true;
}

Reply PprofServer::run_job(const httplib::Request& req, http::Tracer::Work work, bool exclusive,
                           bool shared) {
    http::SubmitRefusal why = http::SubmitRefusal::None;
    auto job = tracer_.submit(std::move(work), exclusive, &why, shared);
    switch (why) {
    case http::SubmitRefusal::ProfileRunning:
        return Reply::text(409, "a profile is already running for this process; retry when it "
                                "ends");
    case http::SubmitRefusal::QueueFull:
        return Reply::text(503, "too many requests waiting for the target; retry later");
    case http::SubmitRefusal::ShuttingDown:
        return Reply::text(503, "pmprof serve is shutting down");
    case http::SubmitRefusal::None:
        break;
    }
    auto conn = http::ConnectionWatch::find(req.local_port, req.remote_addr, req.remote_port);
    if (!conn)
        log_debug("no socket found for {}:{}: disconnects go unnoticed", req.remote_addr,
                  req.remote_port);
    return tracer_.wait(job, [&conn] { return conn && conn->peer_closed(); });
}

void PprofServer::handle_profile(const httplib::Request& req, httplib::Response& res) {
    auto params = parse_profile_request(req.params, opt_.max_seconds);
    if (!params.ok()) return send(res, Reply::text(400, params.error().message));
    if (!pin_.alive()) return send(res, http::gone_reply(pin_.pid()));
    const ProfileRequest p = *params;
    send(res, run_job(
                  req, [this, p](TraceSession*) { return http::profile_job(ctx_, p); }, true));
}

void PprofServer::handle_symbol(const httplib::Request& req, httplib::Response& res) {
    // Go reads the addresses from the POST body, or from the raw query of a GET.
    std::string_view text = req.body;
    if (req.method == "GET") {
        const size_t q = req.target.find('?');
        text = q == std::string::npos ? std::string_view()
                                      : std::string_view(req.target).substr(q + 1);
    }
    auto pcs = parse_symbol_addresses(text, kServeMaxSymbolAddresses);
    if (!pcs.ok()) return send(res, Reply::text(400, pcs.error().message));
    if (pcs->empty()) return send(res, Reply::text(200, "num_symbols: 1"));
    auto list = std::move(*pcs);
    // No tracing (maps and symbols only): answered here, never queued behind a profile.
    send(res, http::symbol_job(ctx_, list));
}

void PprofServer::handle_snapshot(const httplib::Request& req, httplib::Response& res,
                                  const std::string& name) {
    auto debug = parse_debug_level(req.params);
    if (!debug.ok()) return send(res, Reply::text(400, debug.error().message));
    const int d = *debug;
    if (name != "heap" && name != "allocs") {
        // Shared: while a profile runs, taken from its session between two ticks.
        send(res, run_job(
                      req,
                      [this, d, name](TraceSession* running) {
                          return http::threads_job(ctx_, d, name, running);
                      },
                      false, true));
        return;
    }
    // heap?seconds=N, allocs?seconds=N: allocation sites recorded for N seconds (Go answers
    // with a delta of two snapshots: the allocations of those N seconds too).
    if (req.has_param("seconds") || name == "allocs") {
        if (!req.has_param("seconds"))
            return send(res, Reply::text(400, "allocs needs seconds=N: allocation sites are "
                                              "recorded only while pmprof's probes are in place"));
        auto params = parse_profile_request(req.params, opt_.max_seconds);
        if (!params.ok()) return send(res, Reply::text(400, params.error().message));
        const std::string type = name == "allocs" ? "alloc_space" : "inuse_space";
        return send(res, run_job(
                             req,
                             [this, p = *params, type](TraceSession*) {
                                 return http::sites_job(ctx_, p, type);
                             },
                             true));
    }
    send(res, run_job(
                  req, [this, d](TraceSession*) { return http::heap_job(ctx_, d); }, false));
}

void PprofServer::configure() {
    // cpp-httplib's default sets SO_REUSEPORT, which lets a second server (ours or anyone's with
    // our uid) bind the same port and take half the connections; SO_REUSEADDR only allows a
    // restart over TIME_WAIT sockets, and a port in use is reported.
    server_.set_socket_options([](int sock) {
        const int yes = 1;
        ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server_.set_payload_max_length(kMaxRequestBody);
    server_.set_keep_alive_timeout(2);
    server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        return pre_route(req, res) ? httplib::Server::HandlerResponse::Handled
                                   : httplib::Server::HandlerResponse::Unhandled;
    });
    server_.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, const std::exception_ptr& ep) {
            std::string what = "unknown exception";
            try {
                if (ep) std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            send(res, Reply::text(500, "internal error: " + what));
        });
    server_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
        if (guard_) guard_->request_done(req.remote_addr + ":" + std::to_string(req.remote_port));
        log_info("{} {} {} -> {}", req.remote_addr, req.method, req.target, res.status);
    });
    server_.new_task_queue = [] { return new httplib::ThreadPool(kHttpWorkers); };
    server_.set_read_timeout(kHeadDeadline);
    server_.set_write_timeout(std::chrono::seconds(10));
    add_routes();
}

void PprofServer::add_routes() {
    using Req = httplib::Request;
    using Res = httplib::Response;
    auto index = [this](const Req&, Res& res) {
        send(res, http::index_reply(pin_, opt_.max_seconds));
    };
    server_.Get("/debug/pprof", index);
    server_.Get("/debug/pprof/", index);
    server_.Get("/debug/pprof/cmdline",
                [this](const Req&, Res& res) { send(res, http::cmdline_reply(pin_)); });
    server_.Get("/debug/pprof/profile",
                [this](const Req& req, Res& res) { handle_profile(req, res); });
    for (const char* name : {"heap", "allocs", "goroutine", "threads"}) {
        server_.Get(std::string("/debug/pprof/") + name,
                    [this, name](const Req& req, Res& res) { handle_snapshot(req, res, name); });
    }
    auto symbol = [this](const Req& req, Res& res) { handle_symbol(req, res); };
    server_.Get("/debug/pprof/symbol", symbol);
    server_.Post("/debug/pprof/symbol", symbol);
}

/// Waits for SIGINT/SIGTERM/SIGHUP (blocked everywhere else) and stops the server; ends on its
/// own when `done` is set.
void wait_for_stop_signal(const sigset_t& set, PprofServer& server, std::atomic<bool>& done) {
    while (!done.load()) {
        siginfo_t info{};
        const int sig = wait_for_signal(set, 200'000'000, &info);
        if (sig <= 0) continue;
        log_warn("{}: stopping (the target is detached and keeps running)", ::strsignal(sig));
        server.stop();
        return;
    }
}

}  // namespace

Result<void> serve_pprof(const ServeOptions& opt) {
    auto pin = http::TargetPin::pin(opt.pid);
    if (!pin.ok()) return pin.error();
    if (!is_loopback_host(opt.listen.host))
        log_warn("warning: {} is not a loopback address: anyone who can reach it can profile pid "
                 "{}{}",
                 opt.listen.host, opt.pid, opt.token.empty() ? " (consider --token)" : "");
    // SIGINT, SIGTERM and SIGHUP blocked before any thread exists, so every thread inherits the
    // mask and only the waiter thread (wait_for_stop_signal) receives them.
    SignalBlock block({SIGINT, SIGTERM, SIGHUP});
    // A fixed mmap threshold: glibc's dynamic one rises to the largest block freed (32 MiB at
    // most), after which a big request's buffers stay in the heap when freed.
    ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    if (stop_requested()) return {};
    PprofServer server(opt, **pin);
    auto port = server.bind();
    if (!port.ok()) return port.error();
    server.guard(*port);
    if (opt.on_listening)
        opt.on_listening(
            fmt::format("http://{}:{}/debug/pprof/", url_host(opt.listen.host), *port));
    std::atomic<bool> done{false};
    std::thread waiter([&] { wait_for_stop_signal(block.set(), server, done); });
    const bool ok = server.listen();
    done = true;
    waiter.join();
    if (!ok && !stop_requested()) return Error{"the HTTP server stopped unexpectedly"};
    return {};
}

}  // namespace pmprof
