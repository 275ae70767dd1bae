// `pmprof serve`: the pinned target and the tracer thread that owns every ptrace call.
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <fmt/format.h>

#include "http/tracer.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/support/log.h"

namespace pmprof::http {

Reply Reply::text(int status, std::string body) {
    Reply r;
    r.status = status;
    r.body = std::move(body);
    if (!r.body.empty() && r.body.back() != '\n') r.body += '\n';
    return r;
}

Reply Reply::binary(std::string body, std::string filename) {
    Reply r;
    r.content_type = "application/octet-stream";
    r.body = std::move(body);
    r.filename = std::move(filename);
    return r;
}

// ---- TargetPin ------------------------------------------------------------------------------

TargetPin::TargetPin(pid_t pid, UniqueFd pidfd, uint64_t start_ticks)
    : pid_(pid), pidfd_(std::move(pidfd)), start_ticks_(start_ticks) {}

Result<std::unique_ptr<TargetPin>> TargetPin::pin(pid_t pid) {
    auto before = read_task_stat(pid, pid);
    if (!before.ok()) return Error{fmt::format("pid {}: no such process", pid), ESRCH};
    if (before->state == ThreadState::Zombie || before->state == ThreadState::Dead)
        return Error{fmt::format("pid {} has exited (zombie)", pid)};
    // pidfd_open(2), Linux 5.3; called through syscall(2) so older glibc builds too.
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return Error::from_errno(fmt::format("pidfd_open pid {}", pid), errno);
    UniqueFd pidfd(fd);
    // The start time read after pidfd_open proves the pidfd names the process we looked at.
    auto after = read_task_stat(pid, pid);
    if (!after.ok() || after->start_time_ticks != before->start_time_ticks)
        return Error{fmt::format("pid {} exited while pmprof was starting", pid), ESRCH};
    return std::unique_ptr<TargetPin>(
        new TargetPin(pid, std::move(pidfd), before->start_time_ticks));
}

bool TargetPin::alive() const {
    if (gone_.load()) return false;
    pollfd p{pidfd_.get(), POLLIN, 0};
    const bool exited = ::poll(&p, 1, 0) > 0;  // readable once the process has exited
    auto stat = exited ? Result<TaskStat>(Error{"exited"}) : read_task_stat(pid_, pid_);
    if (exited || !stat.ok() || stat->start_time_ticks != start_ticks_ ||
        stat->state == ThreadState::Zombie || stat->state == ThreadState::Dead) {
        if (!gone_.exchange(true))
            log_warn("pid {} has exited; answering 410 Gone from now on", pid_);
        return false;
    }
    return true;
}

// ---- Tracer ---------------------------------------------------------------------------------

struct Tracer::Job {
    Work work;
    bool exclusive = false;
    bool shared = false;
    bool cancelled = false;
    bool done = false;
    Reply reply;
};

Tracer::Tracer(size_t max_queued) : max_queued_(max_queued), thread_([this] { run(); }) {}

Tracer::~Tracer() {
    shutdown();
    if (thread_.joinable()) thread_.join();
}

std::shared_ptr<Tracer::Job> Tracer::submit(Work work, bool exclusive, SubmitRefusal* why,
                                            bool shared) {
    std::lock_guard<std::mutex> lk(mu_);
    // Inside the profile that runs now (not one still queued: its session does not exist yet).
    const bool inside = shared && current_ && current_->exclusive && !current_->cancelled;
    auto& queue = inside ? shared_ : queue_;
    *why = SubmitRefusal::None;
    if (shutting_down_)
        *why = SubmitRefusal::ShuttingDown;
    else if (exclusive && exclusive_busy_)
        *why = SubmitRefusal::ProfileRunning;
    else if (queue.size() >= max_queued_)
        *why = SubmitRefusal::QueueFull;
    if (*why != SubmitRefusal::None) return nullptr;
    auto job = std::make_shared<Job>();
    job->work = std::move(work);
    job->exclusive = exclusive;
    job->shared = inside;
    exclusive_busy_ = exclusive_busy_ || exclusive;
    queue.push_back(job);
    cv_.notify_all();
    return job;
}

void Tracer::run_shared(TraceSession& session) {
    for (;;) {
        std::shared_ptr<Job> job;
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (shared_.empty()) return;
            job = shared_.front();
            shared_.pop_front();
        }
        Reply reply;
        try {
            reply = job->work(&session);
        } catch (const std::exception& e) {
            reply = Reply::text(500, fmt::format("internal error: {}", e.what()));
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            job->reply = std::move(reply);
            job->done = true;
        }
        cv_.notify_all();
    }
}

void Tracer::cancel_locked(Job& job) {
    if (job.cancelled || job.done) return;
    job.cancelled = true;
    if (current_.get() == &job) {
        request_stop();  // the sampler and the stop waits poll it: detached within ~20 ms
        return;
    }
    for (auto* queue : {&queue_, &shared_}) {
        for (auto it = queue->begin(); it != queue->end(); ++it) {
            if (it->get() != &job) continue;
            queue->erase(it);
            job.done = true;
            job.reply = Reply::text(503, "cancelled");
            if (job.exclusive) exclusive_busy_ = false;
            break;
        }
    }
    cv_.notify_all();
}

Reply Tracer::wait(const std::shared_ptr<Job>& job, const std::function<bool()>& client_gone) {
    std::unique_lock<std::mutex> lk(mu_);
    while (!job->done) {
        cv_.wait_for(lk, std::chrono::milliseconds(100));
        if (job->done || job->cancelled || !client_gone) continue;
        lk.unlock();
        const bool gone = client_gone();
        lk.lock();
        if (gone) {
            log_info("client disconnected: cancelling its request");
            cancel_locked(*job);
        }
    }
    return job->reply;
}

void Tracer::shutdown() {
    std::lock_guard<std::mutex> lk(mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    request_stop();  // ends a running profile; its session detaches before the job returns
    for (auto* queue : {&queue_, &shared_}) {
        for (auto& job : *queue) {
            job->done = true;
            job->reply = Reply::text(503, "pmprof serve is shutting down");
        }
        queue->clear();
    }
    exclusive_busy_ = current_ && current_->exclusive;
    cv_.notify_all();
}

bool Tracer::shutting_down() const {
    std::lock_guard<std::mutex> lk(mu_);
    return shutting_down_;
}

void Tracer::run() {
    for (;;) {
        std::shared_ptr<Job> job;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return shutting_down_ || !queue_.empty(); });
            if (queue_.empty()) return;  // shutting down, nothing left
            job = queue_.front();
            queue_.pop_front();
            current_ = job;
            // A cancel aimed at the previous job must not stop this one (see the class comment).
            if (!shutting_down_) clear_stop_request();
        }
        Reply reply;
        try {
            reply = job->work(nullptr);
        } catch (const std::exception& e) {  // a bug, not a target problem: still answer
            reply = Reply::text(500, fmt::format("internal error: {}", e.what()));
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            current_.reset();
            // Shared jobs the profile ended before: next, each tracing on its own.
            while (!shared_.empty()) {
                queue_.push_front(shared_.back());
                shared_.pop_back();
            }
            if (!shutting_down_) clear_stop_request();
            job->reply = std::move(reply);
            job->done = true;
            if (job->exclusive) exclusive_busy_ = false;
        }
        cv_.notify_all();
    }
}

}  // namespace pmprof::http
