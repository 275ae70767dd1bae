// TraceSession: seizing a running process or launching one under trace, and detaching.
// Stop rounds live in src/ptrace/capture.cpp, the event dispatcher in src/ptrace/events.cpp.
#include "pmprof/ptrace/session.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/log.h"
#include "ptrace/session_core.h"

namespace pmprof {

namespace {

// Not PTRACE_O_EXITKILL: a process we did not start must outlive pmprof (docs/design.md §1.1).
constexpr long kSeizeOptions = PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC;
// How long detach_all waits for a running thread to stop so it can be detached. A thread in
// D state longer than this stays traced until pmprof exits (the kernel then releases it).
constexpr std::chrono::milliseconds kDetachTimeout{3000};
// How long launch() waits for the child to reach its execve.
constexpr std::chrono::milliseconds kExecTimeout{10000};

Error no_process(pid_t pid) { return Error{fmt::format("no process with pid {}", pid), ESRCH}; }

bool has_live_thread(pid_t pid) {
    auto tids = list_tasks(pid);
    if (!tids) return false;
    for (pid_t tid : *tids) {
        auto st = read_task_stat(pid, tid);
        if (st && st->state != ThreadState::Zombie && st->state != ThreadState::Dead) return true;
    }
    return false;
}

}  // namespace

Result<void> check_traceable(pid_t pid) {
    if (pid <= 0) return no_process(pid);
    auto status = read_status(pid);
    if (!status) {
        if (::access(fmt::format("/proc/{}", pid).c_str(), F_OK) != 0) return no_process(pid);
        return status.error();
    }
    if (status->tgid != 0 && status->tgid != pid)
        return Error{
            fmt::format("{} is a thread of process {}: give the process id", pid, status->tgid), 0};
    if (pid == ::getpid()) return Error{fmt::format("process {} is pmprof itself", pid), 0};
    if (pid == ::getppid())
        return Error{fmt::format("process {} is pmprof's parent (it would wait on pmprof while "
                                 "stopped)",
                                 pid),
                     0};
    // The leader of a process whose main thread exited is a zombie while its threads run.
    if (status->state == ThreadState::Zombie && !has_live_thread(pid))
        return Error{fmt::format("process {} is a zombie", pid), 0};
    if (status->tracer_pid != 0) {
        std::string comm = "unknown";
        if (auto c = read_file(fmt::format("/proc/{}/comm", status->tracer_pid)); c.ok()) {
            comm = *c;
            while (!comm.empty() && comm.back() == '\n') comm.pop_back();
        }
        return Error{
            fmt::format("process {} is already traced by {} ({})", pid, status->tracer_pid, comm),
            EPERM};
    }
    return {};
}

TraceSession::TraceSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TraceSession::~TraceSession() {
    try {
        detach_all();
    } catch (...) {
        // Only a log line can throw (allocation); every detach was attempted before.
    }
}

Result<std::unique_ptr<TraceSession>> TraceSession::seize(pid_t pid,
                                                          const std::function<bool(pid_t)>& want) {
    if (auto ok = check_traceable(pid); !ok) return ok.error();
    auto impl = std::make_unique<Impl>();
    impl->pid = pid;
    impl->tracer_tid = static_cast<pid_t>(::gettid());
    Impl& d = *impl;
    // From here on the destructor detaches whatever was seized, on every early return.
    std::unique_ptr<TraceSession> session(new TraceSession(std::move(impl)));

    // Threads may be created while we seize: list again until a pass finds no new one. Clones
    // of an already seized thread are attached by the kernel (PTRACE_O_TRACECLONE).
    for (bool added = true; added;) {
        added = false;
        auto tids = list_tasks(pid);
        if (!tids) {
            if (d.threads.empty()) return no_process(pid);
            break;
        }
        for (pid_t tid : *tids) {
            if (d.threads.contains(tid) || (want && !want(tid))) continue;
            if (::ptrace(PTRACE_SEIZE, tid, nullptr, kSeizeOptions) == 0) {
                d.threads.emplace(tid, TracedThread{});
                added = true;
                continue;
            }
            const int err = errno;
            if (err == ESRCH) continue;  // exited meanwhile
            auto st = read_task_status(pid, tid);
            if (st && st->tracer_pid == ::getpid()) {  // auto-attached clone of a seized thread
                d.threads.emplace(tid, TracedThread{});
                added = true;
                continue;
            }
            // A zombie thread (the leader after its main thread exited) cannot be seized and
            // has nothing to sample.
            if (st && (st->state == ThreadState::Zombie || st->state == ThreadState::Dead))
                continue;
            if (d.threads.empty())
                return err == EPERM || err == ENOSYS  // ENOSYS: a seccomp filter
                           ? permission_error(pid, err)
                           : Error::from_errno(fmt::format("PTRACE_SEIZE pid {}", pid), err);
            log_warn("{}: thread skipped",
                     Error::from_errno(fmt::format("PTRACE_SEIZE tid {}", tid), err).message);
        }
    }
    if (d.threads.empty())
        return Error{fmt::format("process {} has no thread that can be traced", pid), 0};
    // A process stopped before we came reports a group-stop per thread right after the seize;
    // answer those (PTRACE_LISTEN) now.
    d.poll_all();
    return session;
}

namespace {

// PATH lookup done in the parent, so the child runs only async-signal-safe code after fork.
std::string resolve_executable(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* env = std::getenv("PATH");
    std::string path = env != nullptr && *env != '\0' ? env : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(start, end - start);
        std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
        struct stat sb {};
        if (::stat(candidate.c_str(), &sb) == 0 && S_ISREG(sb.st_mode) &&
            ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        start = end + 1;
    }
    return {};
}

// The forked child: waits for the parent's go (sent once it is seized), then execs. Only
// async-signal-safe calls (signal-safety(7)): the parent may have other threads.
[[noreturn]] void child_exec(const char* path, char* const* argv, int go_fd, int err_fd) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // our SIGCHLD block must not leak into it
    ::signal(SIGPIPE, SIG_DFL);                  // pmprof ignores SIGPIPE; the program must not
    char go = 0;
    ssize_t n;
    do {
        n = ::read(go_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(127);  // the parent gave up
    ::execv(path, argv);
    int err = errno;
    ssize_t w = ::write(err_fd, &err, sizeof err);
    (void)w;
    ::_exit(127);
}

// The pipes between launch() and its forked child, both close-on-exec: the child execs once
// it reads the go byte (sent when it is seized), and writes execv's errno to `err` if that fails;
// a successful exec closes the write end with nothing written.
struct LaunchPipes {
    UniqueFd go_read, go_write, err_read, err_write;
};

Result<LaunchPipes> open_launch_pipes() {
    int go[2], err[2];
    if (::pipe2(go, O_CLOEXEC) != 0) return Error::from_errno("pipe2", errno);
    LaunchPipes p;
    p.go_read.reset(go[0]);
    p.go_write.reset(go[1]);
    if (::pipe2(err, O_CLOEXEC | O_NONBLOCK) != 0) return Error::from_errno("pipe2", errno);
    p.err_read.reset(err[0]);
    p.err_write.reset(err[1]);
    return p;
}

// PTRACE_SEIZE of the child just forked (still waiting for its go byte). EXITKILL only here: a
// process we started dies with pmprof if asked (docs/design.md §1.1). On failure the child is
// killed and reaped, and the error says why the seize was refused.
Result<void> seize_child(pid_t child, bool exit_kill) {
    const long options = kSeizeOptions | (exit_kill ? PTRACE_O_EXITKILL : 0);
    if (::ptrace(PTRACE_SEIZE, child, nullptr, options) == 0) return {};
    const int seize_err = errno;
    Error e = seize_err == EPERM || seize_err == ENOSYS
                  ? permission_error(child, seize_err)
                  : Error::from_errno(fmt::format("PTRACE_SEIZE pid {}", child), seize_err);
    ::kill(child, SIGKILL);
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    return e;
}

// Handles the child's events (the dispatcher resumes each stop) until `done()` or `deadline`.
// SIGCHLD is blocked across the poll and the wait, so a stop reported in between is not missed.
template <typename Done>
void poll_child_until(SessionCore& d, pid_t child, SteadyClock::time_point deadline, Done done) {
    SignalBlock block({SIGCHLD});
    while (!done() && SteadyClock::now() < deadline)
        if (!d.poll_one(child)) d.wait_for_event(deadline, std::chrono::milliseconds(10));
}

// Lets the seized child exec and waits for its exec event (the dispatcher resumes the new
// program at once). An error when execv failed (the child has exited and is reaped) or the
// exec did not come in time (the child is killed, it is ours).
Result<void> run_to_exec(TraceSession& session, SessionCore& d, LaunchPipes& pipes,
                         const std::string& name) {
    const pid_t child = d.pid;
    ssize_t w = ::write(pipes.go_write.get(), "g", 1);
    (void)w;  // a failed write makes the child exit 127, seen below
    pipes.go_write.reset();
    poll_child_until(d, child, SteadyClock::now() + kExecTimeout,
                     [&] { return d.counters.exec_seen || d.exit.exited; });
    int exec_errno = 0;
    if (::read(pipes.err_read.get(), &exec_errno, sizeof exec_errno) == sizeof exec_errno) {
        // The child _exits right after writing; reap it so no zombie is left behind.
        poll_child_until(d, child, SteadyClock::now() + std::chrono::seconds(2),
                         [&] { return d.exit.exited; });
        return Error::from_errno(fmt::format("cannot run {}", name), exec_errno);
    }
    if (!d.counters.exec_seen) {
        if (!d.exit.exited) {
            ::kill(child, SIGKILL);  // we started it: do not leave it behind
            session.detach_all();
            while (::waitpid(child, nullptr, __WALL) < 0 && errno == EINTR) {
            }
        }
        return Error{fmt::format("cannot run {}: it did not reach execve", name), 0};
    }
    return {};
}

}  // namespace

Result<std::unique_ptr<TraceSession>> TraceSession::launch(const std::vector<std::string>& argv,
                                                           bool exit_kill, bool hold_at_exec) {
    if (argv.empty()) return Error{"launch: empty command line", EINVAL};
    const std::string path = resolve_executable(argv[0]);
    if (path.empty()) return Error::from_errno(fmt::format("cannot run {}", argv[0]), ENOENT);
    std::vector<char*> cargv;
    cargv.reserve(argv.size() + 1);
    for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    auto pipes = open_launch_pipes();
    if (!pipes) return pipes.error();

    pid_t child = ::fork();
    if (child < 0) return Error::from_errno("fork", errno);
    if (child == 0)
        child_exec(path.c_str(), cargv.data(), pipes->go_read.get(), pipes->err_write.get());
    pipes->go_read.reset();
    pipes->err_write.reset();
    if (auto seized = seize_child(child, exit_kill); !seized) return seized.error();

    auto impl = std::make_unique<Impl>();
    impl->pid = child;
    impl->tracer_tid = static_cast<pid_t>(::gettid());
    impl->launched = true;
    impl->hold_at_exec = hold_at_exec;
    impl->threads.emplace(child, TracedThread{});
    Impl& d = *impl;
    // From here on the destructor detaches the child on every early return.
    std::unique_ptr<TraceSession> session(new TraceSession(std::move(impl)));
    if (auto ran = run_to_exec(*session, d, *pipes, argv[0]); !ran) return ran.error();
    d.counters = SessionCounters{};  // the launch's own exec is not "the target called execve"
    d.maps.clear();
    return session;
}

pid_t TraceSession::pid() const { return impl_->pid; }

std::vector<pid_t> TraceSession::threads() const {
    std::vector<pid_t> out;
    out.reserve(impl_->threads.size());
    for (const auto& [tid, t] : impl_->threads)
        if (t.state != TraceState::Gone && !t.foreign) out.push_back(tid);
    return out;
}

const std::vector<MemoryMap>& TraceSession::maps() const { return impl_->maps; }

void TraceSession::poll_events() {
    impl_->pump_captures();  // first: a stopped thread of the window is waiting for us
    impl_->poll_all();
    impl_->refill_captures();  // the window has room for the stops just handled
    impl_->pump_captures();
}

void TraceSession::release_exec_hold() {
    Impl& d = *impl_;
    d.hold_at_exec = false;
    if (!d.exec_held || !d.on_tracer_thread("release_exec_hold")) return;
    d.exec_held = false;
    auto it = d.threads.find(d.pid);
    if (it == d.threads.end()) return;
    it->second.want_stop = false;
    d.resume(d.pid, it->second);
}

void TraceSession::service_captures() {
    if (impl_->capture_window.empty() && impl_->capture_queue.empty()) return;
    if (!impl_->on_tracer_thread("service_captures")) return;
    impl_->refill_captures();
    impl_->pump_captures();
}

void TraceSession::detach_all() {
    Impl& d = *impl_;
    if (d.detached || !d.on_tracer_thread("detach_all")) return;
    // On a tracer thread of its own, its exit detaches without a stop
    // (src/ptrace/tracer_thread.cpp).
    if (tracer_thread_exits()) return detach_stopped(d);
    // From now on the dispatcher detaches every thread at its next stop (ptrace(2): PTRACE_DETACH
    // needs a ptrace-stop), re-injecting a pending signal; group-stopped threads are detached
    // with 0 and stay stopped, as the process is.
    d.detaching = true;
    d.poll_all();
    // Passes until no thread is left to stop: a thread created during a pass (its clone event
    // arrives while we wait) is auto-attached, and would otherwise sit in its first ptrace-stop
    // until pmprof exits.
    const auto deadline = SteadyClock::now() + kDetachTimeout;
    for (int pass = 0; pass < 16; ++pass) {
        std::vector<pid_t> tids;
        for (auto& [tid, t] : d.threads) {
            if (t.state == TraceState::Trapped) {
                d.detach_now(tid, t);
            } else if (t.state != TraceState::Gone && !t.released) {
                tids.push_back(tid);
            }
        }
        d.drop_detached();
        if (tids.empty()) break;
        {
            StopRound round(d, tids);
            round.wait(deadline, nullptr, /*honor_stop_request=*/false);
        }
        d.poll_all();
        if (SteadyClock::now() >= deadline) break;
    }
    d.poll_all();  // reap what exec left behind
    std::vector<pid_t> left;
    for (const auto& [tid, t] : d.threads) left.push_back(tid);
    for (pid_t tid : left) d.poll_one(tid);  // ECHILD drops what is not ours any more
    for (const auto& [tid, t] : d.threads)
        if (t.state != TraceState::Gone)
            log_warn("tid {} did not stop within {} ms to be detached (D state?); it is released "
                     "when pmprof exits",
                     tid, kDetachTimeout.count());
    d.detached = d.threads.empty();
}

void TraceSession::acknowledge_exec() { impl_->counters.exec_seen = false; }
bool TraceSession::process_exited() const { return impl_->exit.exited; }
const ExitInfo& TraceSession::exit_info() const { return impl_->exit; }
const SessionCounters& TraceSession::counters() const { return impl_->counters; }

}  // namespace pmprof
