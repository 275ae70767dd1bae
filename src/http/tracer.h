// `pmprof serve` internals shared by src/http_*.cpp: the pinned target, the tracer thread and
// its job queue, and the jobs themselves. Not a public header: cpp-httplib stays in
// src/http/server.cpp (docs/design.md §2, third-party APIs inside their adapter).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pmprof/http/http.h"
#include "pmprof/support/error.h"
#include "pmprof/support/fd.h"

namespace pmprof {
class TraceSession;
}

namespace pmprof::http {

/// One HTTP answer, built away from cpp-httplib so jobs stay testable without a socket.
struct Reply {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::string filename;  // set: Content-Disposition: attachment; filename="<filename>"

    static Reply text(int status, std::string body);
    static Reply binary(std::string body, std::string filename);
};

/// The process `pmprof serve` was started for, pinned by a pidfd (pidfd_open(2): it becomes
/// readable when that process exits, and never refers to a later process with the same pid) and
/// by its start time (proc(5) stat field 22), so pid reuse is detected. Thread-safe.
class TargetPin {
  public:
    /// The Error names the pid and the failing call (no such process, a zombie, an old kernel).
    static Result<std::unique_ptr<TargetPin>> pin(pid_t pid);
    pid_t pid() const { return pid_; }
    /// False once the pinned process has exited (or its pid names another process); stays false.
    bool alive() const;

  private:
    TargetPin(pid_t pid, UniqueFd pidfd, uint64_t start_ticks);
    pid_t pid_;
    UniqueFd pidfd_;
    uint64_t start_ticks_;
    mutable std::atomic<bool> gone_{false};
};

/// Why submit() refused a job.
enum class SubmitRefusal { None, ProfileRunning, QueueFull, ShuttingDown };

/// The one thread that makes every ptrace call of the server (docs/design.md §2) and runs one job
/// at a time. A job is cancelled through the process-wide stop flag (include/pmprof/os/signals.h),
/// which the sampler and the snapshot waits already poll: the flag is raised only while the job to
/// cancel is the one running, and cleared before the next job starts, so a late cancel never hits
/// another job.
class Tracer {
  public:
    /// `running`: the session of the profile this job runs inside (a shared job, see submit),
    /// else nullptr and the job traces on its own.
    using Work = std::function<Reply(TraceSession* running)>;
    struct Job;

    explicit Tracer(size_t max_queued);
    ~Tracer();  // shutdown() and join
    Tracer(const Tracer&) = delete;
    Tracer& operator=(const Tracer&) = delete;

    /// Queues `work`. An `exclusive` job (a profile) is refused while another exclusive job is
    /// queued or running. A `shared` job (a thread dump) submitted while a profile runs does not
    /// wait for it: the profile runs it between two ticks on its own session (run_shared).
    /// Returns nullptr and sets *why when refused.
    std::shared_ptr<Job> submit(Work work, bool exclusive, SubmitRefusal* why, bool shared = false);
    /// On the running profile's tracer thread: runs the shared jobs waiting for it.
    void run_shared(TraceSession& session);
    /// Waits until the job is done; every 100 ms asks `client_gone` and cancels the job when it
    /// says so (the reply is then unused). Returns the job's reply.
    Reply wait(const std::shared_ptr<Job>& job, const std::function<bool()>& client_gone);
    /// Cancels the running job and every queued one (they answer 503) and stops taking jobs.
    void shutdown();
    bool shutting_down() const;

  private:
    void run();
    void cancel_locked(Job& job);

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Job>> queue_;
    std::deque<std::shared_ptr<Job>> shared_;  // for the running profile's session
    std::shared_ptr<Job> current_;
    size_t max_queued_;
    bool exclusive_busy_ = false;
    bool shutting_down_ = false;
    std::thread thread_;
};

/// Settings the jobs need from ServeOptions.
struct JobContext {
    const TargetPin* pin = nullptr;
    Tracer* tracer = nullptr;
    UnwinderKind unwinder = UnwinderKind::Dwfl;
    double max_pause_fraction = 0.05;
    CpuBackend backend = CpuBackend::Auto;
};

// Jobs: run on the tracer thread; each seizes, works, detaches, and answers 410 when the pinned
// process is gone before or during the work.
Reply profile_job(const JobContext& ctx, const ProfileRequest& req);
Reply heap_job(const JobContext& ctx, int debug);
/// heap?seconds=N and allocs?seconds=N: allocation sites for N seconds (heap --sites, with its
/// overhead budget max_overhead=PCT), with `default_type` inuse_space (heap) or alloc_space
/// (allocs) as Go's two profiles have.
Reply sites_job(const JobContext& ctx, const ProfileRequest& req, const std::string& default_type);
Reply threads_job(const JobContext& ctx, int debug, const std::string& name,
                  TraceSession* running = nullptr);
Reply symbol_job(const JobContext& ctx, const std::vector<uint64_t>& pcs);

/// The accepted socket of one request, found by its addresses: cpp-httplib 0.11 gives handlers
/// no socket. Borrowed, not owned (cpp-httplib closes it after the handler returns).
class ConnectionWatch {
  public:
    /// Searches /proc/self/fd for the TCP socket with this local port and this peer; nullopt
    /// when there is none (then disconnects go unnoticed).
    static std::optional<ConnectionWatch> find(int local_port, const std::string& remote_addr,
                                               int remote_port);
    /// True once the client closed or reset the connection. A GET has no body, so a readable
    /// socket with nothing to read is an orderly close (EOF), as Go's net/http detects it.
    bool peer_closed() const;

  private:
    explicit ConnectionWatch(int fd) : fd_(fd) {}
    int fd_;
};

/// "addr:port" of the peer of socket `fd` when it is a connection to our `local_port` (the
/// address formatted as cpp-httplib's req.remote_addr), else nullopt.
std::optional<std::string> connection_peer(int fd, int local_port);

/// Bounds what cpp-httplib 0.11 does not (src/http/guard.cpp): a connection that has not sent a
/// whole request head within `head_deadline` (since it opened, or since its previous answer) is
/// shut down, and so is every connection still sending its head when the server's RSS grows by
/// more than `rss_growth_kb`; freed memory is given back (malloc_trim) once idle.
class ConnectionGuard {
  public:
    ConnectionGuard(int port, std::chrono::milliseconds head_deadline, uint64_t rss_growth_kb);
    ~ConnectionGuard();
    ConnectionGuard(const ConnectionGuard&) = delete;
    ConnectionGuard& operator=(const ConnectionGuard&) = delete;
    /// The head of a request from `peer` ("addr:port") arrived: it is being answered.
    void request_started(const std::string& peer);
    /// Its answer was sent: the next head is due within the deadline.
    void request_done(const std::string& peer);

  private:
    struct Conn {
        std::chrono::steady_clock::time_point since;
        bool active = false;
        bool closed = false;
    };
    void run();
    const int port_;
    const std::chrono::milliseconds head_deadline_;
    const uint64_t rss_growth_kb_;
    uint64_t baseline_kb_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, Conn> conns_;
    bool stopping_ = false;
    std::thread thread_;
};

/// Why binding `host`:`port` fails ("Address already in use"), found by trying it.
std::string bind_failure_reason(const std::string& host, int port);

// Answers that need no tracing (any thread).
Reply cmdline_reply(const TargetPin& pin);
Reply index_reply(const TargetPin& pin, int max_seconds);
Reply gone_reply(pid_t pid);

}  // namespace pmprof::http
