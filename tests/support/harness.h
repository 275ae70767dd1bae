// Integration-test harness: start real targets, wait for their readiness line (never a sleep),
// run the real pmprof binary, and always kill and reap what was started.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "pmprof/elf/image.h"

namespace pmprof::test {

/// $PMPROF_BUILD, else "build" (absolute).
std::string build_dir();
std::string pmprof_bin();
/// build/targets/<name>-fp or -nofp.
std::string target_bin(const std::string& name, bool frame_pointers);
/// build/examples/<name>.
std::string example_bin(const std::string& name);

/// A running target. It gets the write end of a pipe as fd PMPROF_READY_FD (an env var naming the
/// fd) and writes lines there ("ready ..."); start() returns after the first line. The destructor
/// SIGKILLs (if still alive) and reaps it.
class Target {
  public:
    static std::unique_ptr<Target>
    start(const std::vector<std::string>& argv,
          std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~Target();
    Target(const Target&) = delete;
    Target& operator=(const Target&) = delete;

    pid_t pid() const { return pid_; }
    /// The first line the target wrote (without '\n').
    const std::string& ready_line() const { return ready_line_; }
    /// The next line from the target's pipe; "" on timeout or EOF.
    std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    /// Thread ids now in /proc/PID/task.
    std::vector<pid_t> tids() const;
    bool alive() const;
    /// Sends `sig`, waits (bounded) and reaps; returns the wait status, -1 on timeout (then it
    /// SIGKILLs and reaps).
    int terminate(int sig = SIGTERM, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  private:
    Target() = default;
    pid_t pid_ = -1;
    int ready_fd_ = -1;
    std::string buffer_;
    std::string ready_line_;
    bool reaped_ = false;
};

/// The test process's own ProcessImage (its maps, then ProcessImage::open); throws on failure.
std::unique_ptr<ProcessImage> open_self_image();

struct RunResult {
    int exit_code = -1;  // -1 when killed by a signal or timed out
    int term_signal = 0;
    bool timed_out = false;
    std::string out, err;
};

/// Runs argv to completion with stdin from /dev/null, capturing stdout and stderr; SIGKILLs it
/// (and its process group) at the timeout. It reads until both streams close, so a background
/// grandchild that keeps them open runs into the timeout.
RunResult run(const std::vector<std::string>& argv,
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// Tids of `pid` whose state is 't' or 'T' now.
std::set<pid_t> stopped_threads(pid_t pid);
/// TracerPid of `pid` (0: untraced), -1 if unreadable.
int tracer_pid(pid_t pid);
/// Waits up to `timeout` for TracerPid 0 on every thread and no thread in t/T beyond
/// `stopped_before`; returns "" when so, otherwise what is wrong. Use: REQUIRE(left_running(...) ==
/// "").
std::string left_running(pid_t pid, const std::set<pid_t>& stopped_before = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(2));

/// The source tree root: $PMPROF_SOURCE, else the directory above build_dir() when it holds
/// tests/targets, else the current directory (absolute).
std::string source_dir();
/// source_dir()/tests/targets/<name>.cpp.
std::string target_source(const std::string& name);
/// The 1-based number of the one line of `source_path` carrying the marker comment
/// "// @line:NAME" (NAME ends at whitespace or end of line). Throws std::runtime_error when the
/// file is unreadable or the marker is missing or appears twice.
int marker_line(const std::string& source_path, const std::string& name);

/// The "key=value" words of a line such as a ready line ("ready pid=12 reader=13" gives
/// {pid: 12, reader: 13}); words without '=' are skipped.
std::map<std::string, std::string> parse_fields(const std::string& line);

/// The block of `pmprof stacks` text output for one thread, from "Thread TID " to the next
/// blank line; "" when the thread is not in it.
std::string thread_block(const std::string& out, pid_t tid);

/// argv for `go tool pprof ARGS...` offline: Debian's GOPATH with GO111MODULE=off, and a private
/// HOME, GOCACHE and PPROF_TMPDIR so it runs as root in CI and leaves nothing behind.
std::vector<std::string> go_tool_pprof_argv(const std::vector<std::string>& args);
/// Runs go_tool_pprof_argv(args).
RunResult run_go_tool_pprof(const std::vector<std::string>& args,
                            std::chrono::milliseconds timeout = std::chrono::seconds(120));

/// The counters a target from tests/targets reports on SIGUSR2 ("counts usr1=N ..."), waiting up
/// to 10 s for the line; empty when it did not answer. Never throws (it may run while another
/// thread waits for pmprof).
std::map<std::string, long> try_counts(Target& t);

/// A path in a fresh temporary directory removed at exit of the test process.
std::string temp_path(const std::string& name);
/// Whole file contents ("" if missing).
std::string slurp(const std::string& path);

}  // namespace pmprof::test
