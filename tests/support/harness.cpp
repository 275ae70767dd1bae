// Integration-test harness (tests/support/harness.h). Every process started here is put in its own
// process group, gets SIGKILL if the thread that started it dies (PR_SET_PDEATHSIG, prctl(2):
// start targets from the test thread), and is killed and reaped
// by its owner; every wait is bounded.
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "pmprof/os/procfs.h"

extern char** environ;

namespace pmprof::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The fd a Target's readiness pipe gets in the child (named by PMPROF_READY_FD).
constexpr int kReadyFd = 3;
// How long the destructor and terminate() wait for a SIGKILLed process to be reapable.
constexpr milliseconds kReapTimeout{10000};

std::string join_argv(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) {
        if (!out.empty()) out += ' ';
        out += a;
    }
    return out;
}

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

// argv and envp prepared before fork(): after fork only async-signal-safe calls are allowed
// (fork(2), signal-safety(7)), and the test runner may have threads.
struct ExecArgs {
    std::vector<std::string> env_storage;
    std::vector<char*> argv;
    std::vector<char*> envp;

    ExecArgs(const std::vector<std::string>& args, const std::string& extra_env) {
        if (args.empty()) throw std::runtime_error("harness: empty argv");
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        std::string key = extra_env.substr(0, extra_env.find('=') + 1);
        for (char** e = environ; e && *e; ++e) {
            if (!key.empty() && std::strncmp(*e, key.c_str(), key.size()) == 0) continue;
            env_storage.emplace_back(*e);
        }
        if (!extra_env.empty()) env_storage.push_back(extra_env);
        for (auto& e : env_storage) envp.push_back(e.data());
        envp.push_back(nullptr);
    }
};

// In the child after fork: own process group, default signal state, stdin from /dev/null, and
// death with the parent. Only async-signal-safe calls.
void child_common_setup(pid_t parent) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);  // the parent died before prctl took effect
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0 && null_fd != 0) {
        dup2(null_fd, 0);
        close(null_fd);
    }
}

// Moves `fd` to `target` without O_CLOEXEC (dup2 clears it; when equal, clear it by hand).
void move_fd(int fd, int target) {
    if (fd == target) {
        fcntl(fd, F_SETFD, 0);
    } else {
        dup2(fd, target);
    }
}

// waitpid with EINTR retried; WNOHANG semantics; returns pid, 0 (still running) or -1.
pid_t wait_nohang(pid_t pid, int* status) {
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG | __WALL);
        if (r < 0 && errno == EINTR) continue;
        return r;
    }
}

// Polls until `pid` is reaped or the timeout passes; returns true once reaped.
bool reap_within(pid_t pid, milliseconds timeout, int* status) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        pid_t r = wait_nohang(pid, status);
        if (r == pid) return true;
        if (r < 0) return errno == ECHILD;  // already reaped elsewhere: nothing left to wait for
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(milliseconds(2));
    }
}

// Waits until `pid` has exited (waitable) without reaping it, so its pid and pgid stay reserved;
// false at the deadline, or when it cannot be waited for at all.
bool exited_within(pid_t pid, Clock::time_point deadline) {
    for (;;) {
        siginfo_t info{};
        int r = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT | __WALL);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return false;
        if (info.si_pid == pid) return true;
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(milliseconds(2));
    }
}

// Reaps a leader that has exited, first SIGKILLing whatever is left in its process group (e.g.
// vfork children): the unreaped leader keeps the pgid from being reused.
int reap_exited_group(pid_t pid) {
    kill(-pid, SIGKILL);
    int status = 0;
    if (!reap_within(pid, kReapTimeout, &status)) return -1;
    return status;
}

// SIGKILLs the whole process group (the target and e.g. its vfork children) and reaps the leader.
// The group is killed while the leader is still unreaped, so its pgid cannot have been reused.
void kill_and_reap(pid_t pid, int* status) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    if (!reap_within(pid, kReapTimeout, status)) {
        std::fprintf(stderr, "harness: pid %d not reapable after SIGKILL (D state?)\n", pid);
    }
}

// Reads from `fd` into `buffer` until it holds a '\n' or EOF/timeout; true when a line is ready.
bool fill_line(int fd, std::string& buffer, Clock::time_point deadline, bool* eof) {
    *eof = false;
    while (buffer.find('\n') == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        int r = poll(&p, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {
            *eof = true;
            return false;
        }
        buffer.append(chunk, static_cast<size_t>(n));
    }
    return true;
}

std::string take_line(std::string& buffer) {
    size_t nl = buffer.find('\n');
    std::string line = buffer.substr(0, nl);
    buffer.erase(0, nl + 1);
    return line;
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
    return "ended with wait status " + std::to_string(status);
}

// The state letter of /proc/PID/task/TID/stat (after the last ')', since comm may contain
// parentheses and spaces); 0 when unreadable.
char task_state(pid_t pid, pid_t tid) {
    std::string stat =
        slurp("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
    size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size()) return 0;
    return stat[close + 2];
}

int status_tracer_pid(const std::string& status_path) {
    std::ifstream in(status_path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("TracerPid:", 0) == 0) return std::atoi(line.c_str() + 10);
    }
    return -1;
}

std::vector<pid_t> list_tids(pid_t pid) {
    std::vector<pid_t> out;
    DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
    if (!dir) return out;
    while (dirent* e = readdir(dir)) {
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9') out.push_back(std::atoi(e->d_name));
    }
    closedir(dir);
    return out;
}

// One problem description for left_running(), "" when the process looks untouched.
std::string running_problems(pid_t pid, const std::set<pid_t>& stopped_before) {
    std::string problems;
    for (pid_t tid : list_tids(pid)) {
        std::string base = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
        int tracer = status_tracer_pid(base + "/status");
        if (tracer > 0)
            problems +=
                "tid " + std::to_string(tid) + " traced by " + std::to_string(tracer) + "; ";
        char state = task_state(pid, tid);
        if ((state == 't' || state == 'T') && !stopped_before.count(tid)) {
            problems += "tid " + std::to_string(tid) + " in state " + state + "; ";
        }
    }
    return problems;
}

// The directory temp_path() hands out, removed when the test process exits normally.
class TempDir {
  public:
    TempDir() {
        char templ[] = "/tmp/pmprof-test-XXXXXX";
        if (!mkdtemp(templ)) throw std::runtime_error(errno_text("mkdtemp /tmp/pmprof-test-*"));
        path_ = templ;
        owner_ = getpid();
    }
    ~TempDir() {
        if (getpid() != owner_) return;  // a forked child that returned must not remove it
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    pid_t owner_ = 0;
};

}  // namespace

// ---- paths ----------------------------------------------------------------------------------

std::string build_dir() {
    const char* env = std::getenv("PMPROF_BUILD");
    std::filesystem::path dir = (env && *env) ? env : "build";
    return std::filesystem::absolute(dir).lexically_normal().string();
}

std::string pmprof_bin() { return build_dir() + "/pmprof"; }

std::string target_bin(const std::string& name, bool frame_pointers) {
    return build_dir() + "/targets/" + name + (frame_pointers ? "-fp" : "-nofp");
}

std::string example_bin(const std::string& name) { return build_dir() + "/examples/" + name; }

std::string source_dir() {
    namespace fs = std::filesystem;
    if (const char* env = std::getenv("PMPROF_SOURCE"); env && *env) {
        return fs::absolute(env).lexically_normal().string();
    }
    fs::path above_build = fs::path(build_dir()).parent_path();
    std::error_code ec;
    if (fs::is_directory(above_build / "tests" / "targets", ec)) return above_build.string();
    return fs::current_path().string();
}

std::string target_source(const std::string& name) {
    return source_dir() + "/tests/targets/" + name + ".cpp";
}

int marker_line(const std::string& source_path, const std::string& name) {
    std::ifstream in(source_path);
    if (!in) throw std::runtime_error("marker_line: cannot read " + source_path);
    const std::string marker = "// @line:" + name;
    int found = 0;
    int number = 0;
    std::string line;
    while (std::getline(in, line)) {
        ++number;
        size_t at = line.find(marker);
        if (at == std::string::npos) continue;
        size_t end = at + marker.size();
        if (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) continue;
        if (found) throw std::runtime_error("marker_line: " + marker + " twice in " + source_path);
        found = number;
    }
    if (!found) throw std::runtime_error("marker_line: no " + marker + " in " + source_path);
    return found;
}

// ---- Target ---------------------------------------------------------------------------------

std::unique_ptr<Target> Target::start(const std::vector<std::string>& argv,
                                      std::chrono::milliseconds timeout) {
    ExecArgs exec_args(argv, "PMPROF_READY_FD=" + std::to_string(kReadyFd));
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(errno_text("pipe2"));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        throw std::runtime_error("fork for " + join_argv(argv) + ": " + std::strerror(err));
    }
    if (pid == 0) {
        child_common_setup(parent);
        move_fd(fds[1], kReadyFd);
        execvpe(exec_args.argv[0], exec_args.argv.data(), exec_args.envp.data());
        _exit(127);
    }
    setpgid(pid, pid);  // also from the parent, so a kill(-pid) right after fork cannot miss
    close(fds[1]);
    std::unique_ptr<Target> target(new Target());
    target->pid_ = pid;
    target->ready_fd_ = fds[0];

    auto deadline = Clock::now() + timeout;
    bool eof = false;
    if (fill_line(target->ready_fd_, target->buffer_, deadline, &eof)) {
        target->ready_line_ = take_line(target->buffer_);
        return target;
    }
    // No readiness line: report why, and let the destructor kill and reap it.
    std::string why = "timed out after " + std::to_string(timeout.count()) + " ms";
    int status = 0;
    if (eof && exited_within(pid, Clock::now() + milliseconds(2000)) &&
        (status = reap_exited_group(pid)) != -1) {
        target->reaped_ = true;
        why = describe_status(status) +
              (WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (exec failed?)" : "");
    }
    throw std::runtime_error("target " + join_argv(argv) + " did not report ready: " + why);
}

Target::~Target() {
    if (!reaped_ && pid_ > 0) {
        int status = 0;
        kill_and_reap(pid_, &status);
    }
    if (ready_fd_ >= 0) close(ready_fd_);
}

std::string Target::read_line(std::chrono::milliseconds timeout) {
    bool eof = false;
    if (!fill_line(ready_fd_, buffer_, Clock::now() + timeout, &eof)) return "";
    return take_line(buffer_);
}

std::vector<pid_t> Target::tids() const { return list_tids(pid_); }

bool Target::alive() const {
    if (reaped_) return false;
    // WNOWAIT: look without reaping (alive() is const). A zombie leader whose other threads still
    // run is not waitable yet, so it correctly counts as alive.
    siginfo_t info{};
    for (;;) {
        int r = waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT | __WALL);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return false;
        return info.si_pid == 0;
    }
}

int Target::terminate(int sig, std::chrono::milliseconds timeout) {
    if (reaped_) return -1;
    kill(pid_, sig);
    int status = 0;
    if (!exited_within(pid_, Clock::now() + timeout)) {
        kill_and_reap(pid_, &status);
        reaped_ = true;
        return -1;
    }
    status = reap_exited_group(pid_);
    reaped_ = status != -1;
    return status;
}

// ---- run ------------------------------------------------------------------------------------

namespace {

// Drains both pipes until EOF on both or the deadline; true when both reached EOF.
bool drain_pipes(int out_fd, int err_fd, RunResult& result, Clock::time_point deadline) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open_count = 2;
    while (open_count > 0) {
        int r = poll(fds, 2, remaining_ms(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            char chunk[65536];
            ssize_t n = read(fds[i].fd, chunk, sizeof chunk);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) {
                fds[i].fd = -1;  // poll ignores negative fds
                --open_count;
            } else {
                sinks[i]->append(chunk, static_cast<size_t>(n));
            }
        }
    }
    return true;
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
    ExecArgs exec_args(argv, "");
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error(errno_text("pipe2"));
    if (pipe2(err, O_CLOEXEC) != 0) {
        int e = errno;
        close(out[0]);
        close(out[1]);
        throw std::runtime_error(std::string("pipe2: ") + std::strerror(e));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        child_common_setup(parent);
        move_fd(out[1], 1);
        move_fd(err[1], 2);
        execvpe(exec_args.argv[0], exec_args.argv.data(), exec_args.envp.data());
        const char msg[] = "harness: exec failed\n";
        ssize_t n = write(2, msg, sizeof msg - 1);
        (void)n;
        _exit(127);
    }
    int fork_errno = errno;
    close(out[1]);
    close(err[1]);
    RunResult result;
    if (pid < 0) {
        close(out[0]);
        close(err[0]);
        throw std::runtime_error("fork for " + join_argv(argv) + ": " + std::strerror(fork_errno));
    }
    setpgid(pid, pid);
    auto deadline = Clock::now() + timeout;
    bool drained = drain_pipes(out[0], err[0], result, deadline);
    close(out[0]);
    close(err[0]);
    int status = 0;
    // After EOF the process normally exits at once; keep to the same deadline either way.
    if (!drained || !exited_within(pid, deadline)) {
        result.timed_out = true;
        kill_and_reap(pid, &status);
        result.term_signal = SIGKILL;
        return result;
    }
    status = reap_exited_group(pid);
    if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
    return result;
}

// ---- /proc checks -----------------------------------------------------------------------------

std::set<pid_t> stopped_threads(pid_t pid) {
    std::set<pid_t> out;
    for (pid_t tid : list_tids(pid)) {
        char state = task_state(pid, tid);
        if (state == 't' || state == 'T') out.insert(tid);
    }
    return out;
}

int tracer_pid(pid_t pid) { return status_tracer_pid("/proc/" + std::to_string(pid) + "/status"); }

std::string left_running(pid_t pid, const std::set<pid_t>& stopped_before,
                         std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        std::string problems = running_problems(pid, stopped_before);
        if (problems.empty()) return "";
        if (Clock::now() >= deadline) return "pid " + std::to_string(pid) + ": " + problems;
        std::this_thread::sleep_for(milliseconds(10));
    }
}

std::map<std::string, std::string> parse_fields(const std::string& line) {
    std::map<std::string, std::string> fields;
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
        size_t eq = word.find('=');
        if (eq != std::string::npos && eq > 0) fields[word.substr(0, eq)] = word.substr(eq + 1);
    }
    return fields;
}

// ---- files ----------------------------------------------------------------------------------

std::string temp_path(const std::string& name) {
    static TempDir dir;
    return dir.path() + "/" + name;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return "";
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<std::string> go_tool_pprof_argv(const std::vector<std::string>& args) {
    static const std::string home = [] {
        std::string h = temp_path("gohome");
        mkdir(h.c_str(), 0700);
        return h;
    }();
    std::vector<std::string> argv = {"env",
                                     "GOFLAGS=",
                                     "GOPATH=/usr/share/gocode",
                                     "GO111MODULE=off",
                                     "HOME=" + home,
                                     "GOCACHE=" + home + "/gocache",
                                     "PPROF_TMPDIR=" + home,
                                     "PPROF_BINARY_PATH=" + home,
                                     "go",
                                     "tool",
                                     "pprof"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

RunResult run_go_tool_pprof(const std::vector<std::string>& args,
                            std::chrono::milliseconds timeout) {
    return run(go_tool_pprof_argv(args), timeout);
}

std::unique_ptr<ProcessImage> open_self_image() {
    auto maps = read_maps(getpid());
    if (!maps.ok()) throw std::runtime_error("read_maps self: " + maps.error().message);
    auto image = ProcessImage::open(getpid(), *maps);
    if (!image.ok()) throw std::runtime_error("ProcessImage::open self: " + image.error().message);
    return std::move(*image);
}

std::string thread_block(const std::string& out, pid_t tid) {
    std::string head = "Thread " + std::to_string(tid) + " ";
    auto start = out.find(head);
    if (start == std::string::npos) return "";
    auto end = out.find("\n\n", start);
    return out.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

std::map<std::string, long> try_counts(Target& t) {
    std::map<std::string, long> out;
    if (::kill(t.pid(), SIGUSR2) != 0) return out;
    std::string line = t.read_line(std::chrono::seconds(10));
    if (line.rfind("counts ", 0) != 0) return out;
    std::istringstream in(line.substr(7));
    std::string kv;
    while (in >> kv) {
        auto eq = kv.find('=');
        if (eq != std::string::npos)
            out[kv.substr(0, eq)] = std::strtol(kv.c_str() + eq + 1, nullptr, 10);
    }
    return out;
}

}  // namespace pmprof::test
