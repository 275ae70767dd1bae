// `pmprof top PID`: a live view (as py-spy top and perf top). The sampler runs one refresh
// interval at a time (each a whole run: seized, sampled, detached, symbolized); the last
// --window runs make the view. On a terminal it draws on the alternate screen and reads keys
// between the sampler's ticks; otherwise it prints one plain block per refresh.
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cli/command.h"
#include "cli/options.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/output/top.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/sampler/sampler.h"
#include "pmprof/support/error.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

struct TopArgs {
    StackTargetArgs t;  // -t: only these threads are sampled (as attach's -t); no file:line shown
    std::string interval = "1s";
    size_t window = 5;
    std::string duration;  // "" : until q, Ctrl-C or the target exits
    std::string mode = "wall";
    double rate = 99;
    std::string sort = "self";
};

void write_all(const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
        const ssize_t n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
        if (n <= 0) return;  // a closed terminal: nothing more to show
        done += static_cast<size_t>(n);
    }
}

/// The terminal in the state top needs (no echo, keys one at a time, the alternate screen,
/// no cursor) for its lifetime; the destructor puts back what it found, on every way out:
/// return, exception, q, and SIGINT/SIGTERM (whose handlers only set the stop flag the loop
/// checks).
class Terminal {
  public:
    Terminal(bool screen, bool keys) : screen_(screen) {
        if (keys && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
            termios raw = saved_;
            raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);  // ISIG stays: Ctrl-C works
            raw.c_cc[VMIN] = 0;
            raw.c_cc[VTIME] = 0;
            keys_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
        }
        if (screen_) write_all("\x1b[?1049h\x1b[?25l");
    }
    ~Terminal() {
        if (screen_) write_all("\x1b[?25h\x1b[?1049l");
        if (keys_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    }
    Terminal(const Terminal&) = delete;
    Terminal& operator=(const Terminal&) = delete;

    bool keys() const { return keys_; }
    /// The keys typed since the last call (none when stdin is not a terminal).
    std::string read_keys() const {
        std::string out;
        if (!keys_) return out;
        char buf[32];
        ssize_t n;
        while ((n = ::read(STDIN_FILENO, buf, sizeof buf)) > 0)
            out.append(buf, static_cast<size_t>(n));
        return out;
    }
    /// Waits up to `ms` for a key.
    void wait_key(int ms) const {
        pollfd p{STDIN_FILENO, POLLIN, 0};
        ::poll(&p, 1, ms);
    }
    std::pair<size_t, size_t> size() const {
        winsize ws{};
        if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0)
            return {ws.ws_col, ws.ws_row};
        return {100, 40};
    }

  private:
    bool screen_ = false;
    bool keys_ = false;
    termios saved_{};
};

class Top {
  public:
    Top(const TopArgs& a, std::vector<pid_t> pids, Terminal& term)
        : a_(a), pids_(std::move(pids)), pid_(pids_.front()), term_(term),
          interactive_(term.keys()) {
        if (!parse_top_sort(a.sort, &sort_))
            throw FatalError("--sort is self, total or name", {}, kExitUsage);
        interval_ns_ = parse_duration_ns(a.interval);
        if (interval_ns_ < 100'000'000)
            throw FatalError("--interval must be at least 100ms", {}, kExitUsage);
        title_ = pids_.size() == 1
                     ? "pmprof top: pid " + std::to_string(pid_) + " (" + read_cmdline(pid_) + ")"
                     : "pmprof top: pids " + a.t.pid;
        if (a.t.subprocesses) title_ += " and children";
    }

    /// Refreshes until q, Ctrl-C/SIGTERM, the duration or the target's exit; the exit status.
    int run(int64_t duration_ns) {
        const int64_t start = now_ns();
        int status = kExitComplete;
        while (!stop_requested() && !quit_) {
            if (duration_ns > 0 && now_ns() - start >= duration_ns) break;
            if (paused_) {
                term_.wait_key(100);
                handle_keys(term_.read_keys());
                continue;
            }
            std::optional<Result<SamplerResult>> r;
            if (pids_.size() > 1 || a_.t.subprocesses) {
                r = run_tree_sampler(pids_, options());  // each process on a tracer thread
            } else {
                r = sample_process(pid_, options());  // seized, sampled, detached
            }
            if (!r->ok()) throw FatalError(r->error());
            window_.push_back(std::move((*r)->profile));
            while (window_.size() > std::max<size_t>(1, a_.window)) window_.erase(window_.begin());
            draw();
            if ((*r)->end == SamplerEnd::TargetExited) {
                log_warn("{}", (*r)->end_message);
                status = kExitPartial;
                break;
            }
        }
        return status;
    }

  private:
    static int64_t now_ns() {
        timespec ts{};
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
    }

    SamplerOptions options() {
        SamplerOptions o;
        auto mode = parse_sample_mode(a_.mode);
        if (!mode.ok()) throw FatalError(mode.error().message, {}, kExitUsage);
        o.mode = *mode;
        auto kind = parse_unwinder_kind(a_.t.unwinder);
        if (!kind.ok()) throw FatalError(kind.error().message, {}, kExitUsage);
        o.unwinder = *kind;
        o.rate_hz = a_.rate;
        o.duration_ns = interval_ns_;
        o.max_depth = a_.t.max_depth;
        o.thread_filter = a_.t.threads;
        o.subprocesses = a_.t.subprocesses;
        o.symbolize.inlines = !a_.t.no_inline;
        o.symbolize.source_lines = false;  // the view names functions only
        o.command_line = title_;
        // Keys between ticks: q ends the run at once; the others redraw from the last window.
        if (interactive_)
            o.between_ticks = [this](TraceSession&) { handle_keys(term_.read_keys()); };
        return o;
    }

    void handle_keys(const std::string& keys) {
        bool redraw = false;
        for (char c : keys) {
            switch (c) {
            case 'q':
            case 'Q':
                quit_ = true;
                request_stop();  // ends the sampler's current run too
                return;
            case 'p':
            case ' ':
                paused_ = !paused_;
                redraw = true;
                break;
            case 's':
                sort_ = sort_ == TopSort::Self    ? TopSort::Total
                        : sort_ == TopSort::Total ? TopSort::Name
                                                  : TopSort::Self;
                redraw = true;
                break;
            case 't':
                next_thread();
                redraw = true;
                break;
            case 'a':
                thread_.clear();
                redraw = true;
                break;
            case '+':
                interval_ns_ = std::min<int64_t>(interval_ns_ * 2, 10'000'000'000);
                redraw = true;
                break;
            case '-':
                interval_ns_ = std::max<int64_t>(interval_ns_ / 2, 100'000'000);
                redraw = true;
                break;
            default:
                break;
            }
        }
        if (redraw) draw();
    }

    /// The filter moves to the next thread of the view (by share), then back to all.
    void next_thread() {
        const TopView all = build_top_view(window_, "", TopSort::Self);
        std::vector<std::string> tids;
        for (const TopThread& t : all.threads) tids.push_back(std::to_string(t.tid));
        if (tids.empty()) return;
        auto at = std::find(tids.begin(), tids.end(), thread_);
        if (thread_.empty())
            thread_ = tids.front();
        else if (at == tids.end() || at + 1 == tids.end())
            thread_.clear();
        else
            thread_ = *(at + 1);
    }

    void draw() {
        const TopView v = build_top_view(window_, thread_, sort_);
        TopScreen s;
        s.title =
            fmt::format("{}  {} mode, {:.0f} Hz, refresh {:.1f} s, window {} refreshes", title_,
                        a_.mode, a_.rate, static_cast<double>(interval_ns_) / 1e9, a_.window);
        s.thread = thread_;
        s.sort = sort_;
        s.paused = paused_;
        if (interactive_) {
            std::tie(s.width, s.height) = term_.size();
            std::string text = format_top_screen(v, s);
            // Home, then each line over the old one with the rest of it erased, then the rest of
            // the screen erased: never a blank screen between two views. "\r\n": output
            // processing may be off; no break after the last line, which would scroll.
            std::string out = "\x1b[H";
            for (size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1)
                out += (at ? "\r\n" : "") + text.substr(at, nl - at) + "\x1b[K";
            out += "\x1b[J";
            write_all(out);
        } else {
            s.keys = false;
            s.width = 120;
            s.height = 40;
            write_all(format_top_screen(v, s) + "\n");
        }
    }

    const TopArgs& a_;
    const std::vector<pid_t> pids_;
    pid_t pid_;  // the first of pids_
    Terminal& term_;
    bool interactive_;
    std::string title_;
    std::string thread_;
    TopSort sort_ = TopSort::Self;
    int64_t interval_ns_ = 0;
    bool paused_ = false;
    bool quit_ = false;
    std::vector<Profile> window_;  // oldest first
};

int run_top(const TopArgs& a) {
    const std::vector<pid_t> pids = parse_pid_list(a.t.pid);
    const int64_t duration = a.duration.empty() ? 0 : parse_duration_ns(a.duration);
    for (pid_t pid : pids)
        if (auto traceable = probe_traceable(pid); !traceable.ok())
            throw FatalError(traceable.error());
    const bool screen = ::isatty(STDOUT_FILENO) == 1;
    Terminal term(screen, screen && ::isatty(STDIN_FILENO) == 1);
    Top top(a, pids, term);
    return top.run(duration);
}

}  // namespace

void add_top_command(CLI::App& app, CommandRunner* runner) {
    auto args = std::make_shared<TopArgs>();
    CLI::App* cmd = app.add_subcommand(
        "top", "Live view of a running process: the hottest functions and what each thread does");
    cmd->footer(std::string("\nEach refresh samples the process for one --interval (as attach "
                            "does: seized, sampled, detached), and the view shows the last "
                            "--window refreshes: per function the share of samples it was "
                            "running in (self) or on the stack (total), per thread its share and "
                            "its state mix (running, or blocked in which system call). Keys: q "
                            "quit, p or space pause/resume (nothing is sampled while paused), s "
                            "sort by self/total/name, t show the next thread only, a all "
                            "threads, + and - refresh slower/faster. When standard output is not "
                            "a terminal, one plain block is printed per refresh.\n") +
                kExitCodesHelp);
    add_stack_target_options(cmd, &args->t);
    cmd->add_option("-i,--interval", args->interval, "Time between refreshes (at least 100ms)")
        ->capture_default_str();
    cmd->add_option("-w,--window", args->window, "Refreshes the view adds up (a sliding window)")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    cmd->add_option("-d,--duration", args->duration,
                    "Stop after this long (default: until q, Ctrl-C or the target exits)");
    cmd->add_option("-m,--mode", args->mode,
                    "wall: every thread at every tick (the state mix shows where blocked threads "
                    "wait); cpu: only time on cpu")
        ->check(CLI::IsMember({"wall", "cpu"}))
        ->capture_default_str();
    cmd->add_option("-r,--rate", args->rate, "Samples per second per thread")
        ->check(CLI::Range(0.1, 1000.0))
        ->capture_default_str();
    cmd->add_option("--sort", args->sort, "self, total or name (the s key cycles)")
        ->check(CLI::IsMember({"self", "total", "name"}))
        ->capture_default_str();
    cmd->callback([runner, args] { *runner = [args] { return run_top(*args); }; });
}

}  // namespace pmprof
