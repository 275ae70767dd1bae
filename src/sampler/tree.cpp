// Several processes with the ptrace backend (docs/design.md §4.7): each process is sampled by the
// one-process loop (src/sampler/loop.cpp) on a tracer thread of its own, with its own session,
// maps, image and symbols, so a child that exec'd another program is symbolized from its own
// binaries. Children are found by polling /proc/PID/task/TID/children, as py-spy polls the
// process tree, and seized with PTRACE_SEIZE like any target: no ptrace option makes the kernel
// attach them, so no child ever starts in a ptrace-stop that pmprof would have to answer, and a
// pmprof killed at any moment leaves nothing stopped (the kernel detaches a dead tracer's
// tracees, docs/facts.md "ptrace"). The cost: a child is sampled from the poll that finds it
// (kTreePoll), and one that lives shorter than that may be missed.
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <list>
#include <map>
#include <optional>
#include <thread>

#include "pmprof/os/clock.h"
#include "pmprof/os/process_tree.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/profile/labels.h"
#include "pmprof/sampler/sampler.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

constexpr auto kTreePoll = std::chrono::milliseconds(50);

/// One process and the thread that samples it.
struct Worker {
    pid_t pid = 0;
    bool root = false;
    SamplerOptions opt;
    std::thread thread;
    std::atomic<bool> done{false};
    std::optional<Result<SamplerResult>> result;
};

/// Adds `from`'s counters to `into`: sums, maxima, lists appended.
void add_stats(SamplerStats& into, const SamplerStats& from) {
    into.not_on_cpu += from.not_on_cpu;
    into.displaced_by_tracer += from.displaced_by_tracer;
    into.threads_run_ns += from.threads_run_ns;
    into.threads_wait_ns += from.threads_wait_ns;
    into.samples += from.samples;
    into.stops += from.stops;
    into.stops_avoided += from.stops_avoided;
    into.reused += from.reused;
    into.fast_path += from.fast_path;
    into.capture_failures += from.capture_failures;
    into.unwind_failures += from.unwind_failures;
    into.unwinds += from.unwinds;
    into.unwinds_cached += from.unwinds_cached;
    into.threads_seen += from.threads_seen;
    into.image_reloads += from.image_reloads;
    into.execs += from.execs;
    into.processes += from.processes;
    into.processes_missed += from.processes_missed;
    into.eintr_stops += from.eintr_stops;
    into.ticks_late += from.ticks_late;
    into.tick_max_ns = std::max(into.tick_max_ns, from.tick_max_ns);
    into.pause_p99_ns = std::max(into.pause_p99_ns, from.pause_p99_ns);
    into.pause_max_ns = std::max(into.pause_max_ns, from.pause_max_ns);
    into.stop_wait_p99_ns = std::max(into.stop_wait_p99_ns, from.stop_wait_p99_ns);
    into.max_in_flight = std::max(into.max_in_flight, from.max_in_flight);
    into.max_thread_pause_fraction =
        std::max(into.max_thread_pause_fraction, from.max_thread_pause_fraction);
    into.rate_lowered = into.rate_lowered || from.rate_lowered;
    auto append = [](auto& to, const auto& more) { to.insert(to.end(), more.begin(), more.end()); };
    append(into.stops_per_thread, from.stops_per_thread);
    append(into.eintr_per_thread, from.eintr_per_thread);
    append(into.unstoppable, from.unstoppable);
}

class TreeSampler {
  public:
    TreeSampler(std::vector<pid_t> roots, const SamplerOptions& opt)
        : roots_(std::move(roots)), opt_(opt) {}
    ~TreeSampler() { stop_all(); }
    TreeSampler(const TreeSampler&) = delete;
    TreeSampler& operator=(const TreeSampler&) = delete;

    Result<SamplerResult> run(TraceSession* launched);

  private:
    SamplerOptions worker_options(bool first_root) const;
    void start_worker(pid_t pid, bool root);
    /// Seizes the children that appeared since the last poll; false once no root is sampled.
    bool poll_tree();
    void follow_until_stopped();
    void stop_all();
    bool ended() const;
    Result<SamplerResult> merge(std::optional<Result<SamplerResult>> launched_result);

    const std::vector<pid_t> roots_;
    const SamplerOptions& opt_;
    std::atomic<bool> stop_{false};
    std::list<Worker> workers_;        // stable addresses: each thread holds its own
    std::map<pid_t, uint64_t> known_;  // pid -> start time: sampled, or tried
    int64_t start_ns_ = 0, start_realtime_ns_ = 0, deadline_ns_ = INT64_MAX;
    rusage usage_start_{};
    std::atomic<bool> launched_running_{false};
};

SamplerOptions TreeSampler::worker_options(bool first_root) const {
    SamplerOptions o = opt_;
    o.process_labels = true;
    o.stop = [this] { return stop_.load(); };
    if (deadline_ns_ != INT64_MAX)
        o.duration_ns = std::max<int64_t>(1, deadline_ns_ - monotonic_ns());
    // One progress line and one key handler (top's), on the first root's thread only.
    if (!first_root) {
        o.progress = false;
        o.between_ticks = nullptr;
    }
    return o;
}

void TreeSampler::start_worker(pid_t pid, bool root) {
    Worker& w = workers_.emplace_back();
    w.pid = pid;
    w.root = root;
    w.opt = worker_options(root && pid == roots_.front());
    w.thread = std::thread([&w] {
        try {
            w.result = sample_process(w.pid, w.opt);
        } catch (const std::exception& e) {
            w.result = Error{e.what()};
        }
        w.done = true;
    });
}

bool TreeSampler::poll_tree() {
    std::vector<pid_t> live;
    for (pid_t r : roots_) live.push_back(r);
    for (const Worker& w : workers_)
        if (!w.done) live.push_back(w.pid);
    for (pid_t pid : list_process_tree(live)) {
        const uint64_t start = process_start_ticks(pid);
        auto it = known_.find(pid);
        if (start == 0 || (it != known_.end() && it->second == start)) continue;
        known_[pid] = start;  // a new process, or a reused pid: a new process too
        if (!process_running(pid, start)) continue;  // a zombie waiting for its parent
        start_worker(pid, false);
    }
    const bool launched_running = launched_running_.load();
    return launched_running || std::any_of(workers_.begin(), workers_.end(),
                                           [](const Worker& w) { return w.root && !w.done; });
}

bool TreeSampler::ended() const {
    return stop_.load() || stop_requested() || (opt_.stop && opt_.stop()) ||
           monotonic_ns() >= deadline_ns_;
}

void TreeSampler::follow_until_stopped() {
    while (!ended()) {
        if (opt_.subprocesses) {
            if (!poll_tree()) break;
        } else if (std::all_of(workers_.begin(), workers_.end(),
                               [](const Worker& w) { return !w.root || w.done; }) &&
                   !launched_running_.load()) {
            break;
        }
        std::this_thread::sleep_for(kTreePoll);
    }
}

void TreeSampler::stop_all() {
    stop_ = true;
    for (Worker& w : workers_)
        if (w.thread.joinable()) w.thread.join();
}

Result<SamplerResult> TreeSampler::run(TraceSession* launched) {
    start_ns_ = monotonic_ns();
    start_realtime_ns_ = realtime_ns();
    getrusage(RUSAGE_SELF, &usage_start_);
    if (opt_.duration_ns > 0) deadline_ns_ = start_ns_ + opt_.duration_ns;
    for (pid_t pid : roots_) known_[pid] = process_start_ticks(pid);
    std::optional<Result<SamplerResult>> launched_result;
    if (launched) {
        // The launched command is traced by this thread: it is sampled here, its children on
        // threads of their own, found by a follower thread.
        launched_running_ = true;
        std::thread follower([this] { follow_until_stopped(); });
        SamplerOptions o = worker_options(true);
        o.stop = nullptr;  // the command's run ends the tree's
        launched_result = run_sampler(*launched, o);
        launched_running_ = false;
        stop_ = true;
        follower.join();
    } else {
        for (pid_t pid : roots_) start_worker(pid, true);
        follow_until_stopped();
    }
    stop_all();
    return merge(std::move(launched_result));
}

/// One result: the first root's profile with every other process's merged in (each sample
/// labelled with its pid and comm), the counters added up, the first root's end.
Result<SamplerResult> TreeSampler::merge(std::optional<Result<SamplerResult>> launched_result) {
    std::vector<SamplerResult*> results;
    if (launched_result) {
        if (!launched_result->ok()) return launched_result->error();
        results.push_back(&**launched_result);
    }
    uint64_t missed = 0;
    bool all_roots_exited = true;
    for (Worker& w : workers_) {
        if (!w.result || !w.result->ok()) {
            if (w.root) return w.result ? w.result->error() : Error{"no result"};
            log_debug("child process {}: {}", w.pid,
                      w.result ? w.result->error().message : "not sampled");
            ++missed;
            continue;
        }
        if (w.root && (*w.result)->end != SamplerEnd::TargetExited) all_roots_exited = false;
        results.push_back(&**w.result);
    }
    if (results.empty()) return Error{"no process could be sampled"};
    SamplerResult r;
    SamplerResult& first = *results.front();
    r.profile = std::move(first.profile);
    r.profile.comments.clear();
    r.stats = first.stats;
    r.end = first.end;
    r.exit = first.exit;
    r.end_message = first.end_message;
    std::vector<Profile> others;
    for (size_t i = 1; i < results.size(); ++i) {
        add_stats(r.stats, results[i]->stats);
        others.push_back(std::move(results[i]->profile));
        others.back().comments.clear();  // the statistics are the merged ones below
    }
    if (!launched_result && roots_.size() > 1) {
        r.end = all_roots_exited ? SamplerEnd::TargetExited : r.end;
        if (all_roots_exited) r.end_message = "every target exited";
    }
    r.stats.processes_missed += missed;
    const int64_t end_ns = monotonic_ns();
    r.stats.wall_ns = static_cast<uint64_t>(end_ns - start_ns_);
    rusage usage_end{};
    getrusage(RUSAGE_SELF, &usage_end);
    r.stats.cpu_user_ns = timeval_ns(usage_end.ru_utime) - timeval_ns(usage_start_.ru_utime);
    r.stats.cpu_system_ns = timeval_ns(usage_end.ru_stime) - timeval_ns(usage_start_.ru_stime);
    std::sort(r.stats.stops_per_thread.begin(), r.stats.stops_per_thread.end());
    std::sort(r.stats.eintr_per_thread.begin(), r.stats.eintr_per_thread.end());
    const std::string type = opt_.mode == SampleMode::Cpu ? "cpu" : "wall";
    finish_sampler_profile(r, others, type, start_realtime_ns_, opt_.command_line);
    return r;
}

}  // namespace

Result<SamplerResult> sample_process(pid_t pid, const SamplerOptions& opt) {
    std::optional<Result<SamplerResult>> result;
    run_on_tracer_thread([&] {
        auto session = TraceSession::seize(pid);
        if (!session.ok()) {
            result = session.error();
            return;
        }
        result = run_sampler(**session, opt);
        (*session)->detach_all();
    });
    return std::move(*result);
}

Result<SamplerResult> run_tree_sampler(const std::vector<pid_t>& pids, const SamplerOptions& opt,
                                       TraceSession* launched) {
    if (pids.empty()) return Error{"no process to sample"};
    TreeSampler tree(pids, opt);
    return tree.run(launched);
}

}  // namespace pmprof
