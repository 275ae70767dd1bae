// /proc parsers and readers. Formats: proc(5) and the kernel's fs/proc/array.c (stat, status),
// fs/proc/base.c (syscall, wchan, schedstat), fs/proc/task_mmu.c (maps).
#include "pmprof/os/procfs.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <span>
#include <string>

#include <fmt/format.h>

#include "pmprof/support/fd.h"

namespace pmprof {

namespace {

constexpr std::string_view kSpace = " \t\n\r";

/// Splits `text` at whitespace (runs count as one separator).
std::vector<std::string_view> split_ws(std::string_view text) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (true) {
        i = text.find_first_not_of(kSpace, i);
        if (i == std::string_view::npos) break;
        size_t j = text.find_first_of(kSpace, i);
        if (j == std::string_view::npos) j = text.size();
        out.push_back(text.substr(i, j - i));
        i = j;
    }
    return out;
}

std::string_view trim(std::string_view s) {
    size_t b = s.find_first_not_of(kSpace);
    if (b == std::string_view::npos) return {};
    size_t e = s.find_last_not_of(kSpace);
    return s.substr(b, e - b + 1);
}

/// The whole token as an unsigned number; base 16 accepts an optional "0x".
template <typename T> bool parse_num(std::string_view s, T* out, int base = 10) {
    if (base == 16 && s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s.remove_prefix(2);
    if (s.empty()) return false;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
    return ec == std::errc() && ptr == s.data() + s.size();
}

Error parse_error(std::string_view what, std::string_view text) {
    std::string_view head = text.substr(0, std::min<size_t>(text.size(), 80));
    return Error{"cannot parse " + std::string(what) + ": \"" + std::string(head) + "\"", 0};
}

std::string task_path(pid_t pid, pid_t tid, std::string_view file) {
    return "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/" +
           std::string(file);
}

std::string proc_path(pid_t pid, std::string_view file) {
    return "/proc/" + std::to_string(pid) + "/" + std::string(file);
}

/// Reads `path` and parses it with `parse`; parse errors name the file.
template <typename T, typename Parse> Result<T> read_parsed(const std::string& path, Parse parse) {
    auto text = read_file(path);
    if (!text) return text.error();
    Result<T> r = parse(*text);
    if (!r) return Error{path + ": " + r.error().message, 0};
    return r;
}

}  // namespace

Result<TaskStat> parse_stat(std::string_view text) {
    // "tid (comm) S ppid ...": comm is arbitrary (spaces, ')'), so it ends at the LAST ')'.
    size_t open = text.find('(');
    size_t close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open)
        return parse_error("stat", text);
    TaskStat st;
    if (!parse_num(trim(text.substr(0, open)), &st.tid)) return parse_error("stat", text);
    st.comm = std::string(text.substr(open + 1, close - open - 1));
    // f[k] is field k + 3 of proc(5): f[0] state (3), f[1] ppid (4), f[11] utime (14),
    // f[12] stime (15), f[17] num_threads (20), f[19] starttime (22), f[36] processor (39).
    auto f = split_ws(text.substr(close + 1));
    if (f.size() < 20 || f[0].size() != 1) return parse_error("stat", text);
    st.state = thread_state_from_char(f[0][0]);
    if (!parse_num(f[1], &st.ppid) || !parse_num(f[11], &st.utime_ticks) ||
        !parse_num(f[12], &st.stime_ticks) || !parse_num(f[17], &st.num_threads) ||
        !parse_num(f[19], &st.start_time_ticks))
        return parse_error("stat", text);
    if (f.size() > 36 && !parse_num(f[36], &st.processor)) st.processor = -1;
    return st;
}

namespace {

/// Applies one "Key:\tvalue" line of /proc/PID/status to `st`; false when a value is malformed.
bool apply_status_field(std::string_view key, std::string_view value, TaskStatus* st) {
    auto fields = split_ws(value);
    auto first = [&]() { return fields.empty() ? std::string_view{} : fields[0]; };
    if (key == "Name") {
        st->name = std::string(value);  // the kernel escapes '\n' and '\\' here
    } else if (key == "State") {
        st->state = value.empty() ? ThreadState::Unknown : thread_state_from_char(value[0]);
    } else if (key == "Tgid") {
        return parse_num(first(), &st->tgid);
    } else if (key == "Pid") {
        return parse_num(first(), &st->pid);
    } else if (key == "PPid") {
        return parse_num(first(), &st->ppid);
    } else if (key == "TracerPid") {
        return parse_num(first(), &st->tracer_pid);
    } else if (key == "Uid") {  // real, effective, saved, filesystem
        return fields.size() >= 2 && parse_num(fields[0], &st->uid_real) &&
               parse_num(fields[1], &st->uid_effective);
    } else if (key == "Threads") {
        return parse_num(first(), &st->threads);
    } else if (key == "voluntary_ctxt_switches") {
        return parse_num(first(), &st->voluntary_ctxt_switches);
    } else if (key == "nonvoluntary_ctxt_switches") {
        return parse_num(first(), &st->nonvoluntary_ctxt_switches);
    } else if (key == "VmRSS") {  // "   1234 kB"
        return parse_num(first(), &st->vm_rss_kb);
    } else if (key == "CapEff") {
        return parse_num(first(), &st->cap_eff, 16);
    } else if (key == "Seccomp") {  // 0 none, 1 strict, 2 filter
        return parse_num(first(), &st->seccomp);
    }
    return true;
}

}  // namespace

Result<TaskStatus> parse_status(std::string_view text) {
    TaskStatus st;
    bool saw_pid = false;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view key = line.substr(0, colon);
        std::string_view value = line.substr(colon + 1);
        // Values follow a tab; Name keeps its own spaces, so strip only the separator.
        while (!value.empty() && (value.front() == '\t' || value.front() == ' '))
            value.remove_prefix(1);
        if (!value.empty() && value.back() == '\r') value.remove_suffix(1);
        if (!apply_status_field(key, value, &st)) return parse_error("status line", line);
        saw_pid = saw_pid || key == "Pid";
    }
    if (!saw_pid) return parse_error("status (no Pid line)", text);
    return st;
}

Result<SchedStat> parse_schedstat(std::string_view text) {
    // Token by token rather than split_ws: no vector to allocate, as the sampler parses this
    // thousands of times a second.
    auto take = [&text]() {
        size_t b = text.find_first_not_of(kSpace);
        if (b == std::string_view::npos) b = text.size();
        size_t e = std::min(text.find_first_of(kSpace, b), text.size());
        std::string_view tok = text.substr(b, e - b);
        text.remove_prefix(e);
        return tok;
    };
    const std::string_view all = text;
    SchedStat s;
    if (!parse_num(take(), &s.run_ns) || !parse_num(take(), &s.wait_ns) ||
        !parse_num(take(), &s.timeslices))
        return parse_error("schedstat", all);
    return s;
}

Result<int64_t> parse_sched_exec_start(std::string_view text) {
    // "se.exec_start   :   25977583.373823": milliseconds and the six digits of nanoseconds
    // below them (kernel/sched/debug.c, SPLIT_NS), so the value is exact.
    // The first line is "COMM (PID, #threads: N)", and a thread may call itself anything.
    constexpr std::string_view kKey = "\nse.exec_start";
    const size_t at = text.find(kKey, text.find('\n'));
    if (at == std::string_view::npos) return parse_error("sched", text.substr(0, 64));
    const std::string_view rest = text.substr(at + kKey.size());
    if (rest.empty() || (rest[0] != ' ' && rest[0] != ':'))
        return parse_error("sched", text.substr(0, 64));  // a longer name: no such field here
    const size_t colon = rest.find(':');
    const size_t eol = rest.find('\n');
    if (colon == std::string_view::npos || (eol != std::string_view::npos && colon > eol))
        return parse_error("sched", text.substr(0, 64));
    const std::string_view value = trim(rest.substr(
        colon + 1, eol == std::string_view::npos ? std::string_view::npos : eol - colon - 1));
    const size_t dot = value.find('.');
    int64_t ms = 0, ns = 0;
    if (dot == std::string_view::npos || value.size() - dot - 1 != 6 ||
        !parse_num(value.substr(0, dot), &ms) || !parse_num(value.substr(dot + 1), &ns) || ms < 0 ||
        ns < 0)
        return parse_error("sched", value);
    return ms * 1000000 + ns;
}

Result<SyscallState> parse_syscall(std::string_view text) {
    auto f = split_ws(text);
    SyscallState s;
    if (f.size() == 1 && f[0] == "running") {
        s.running = true;
        return s;
    }
    // "%d 0x%llx 0x%llx" outside a syscall (nr -1), "%d" + 8 x " 0x%llx" inside one.
    if (f.empty() || !parse_num(f[0], &s.nr)) return parse_error("syscall", text);
    size_t want = s.nr < 0 ? 3 : 9;
    if (f.size() != want) return parse_error("syscall", text);
    if (s.nr >= 0) {
        for (size_t i = 0; i < s.args.size(); ++i)
            if (!parse_num(f[1 + i], &s.args[i], 16)) return parse_error("syscall", text);
    }
    if (!parse_num(f[want - 2], &s.sp, 16) || !parse_num(f[want - 1], &s.pc, 16))
        return parse_error("syscall", text);
    return s;
}

namespace {

/// Takes the next whitespace-separated token off the front of `s`.
std::string_view next_token(std::string_view* s) {
    size_t b = s->find_first_not_of(' ');
    if (b == std::string_view::npos) {
        *s = {};
        return {};
    }
    size_t e = s->find(' ', b);
    if (e == std::string_view::npos) e = s->size();
    std::string_view tok = s->substr(b, e - b);
    s->remove_prefix(e);
    return tok;
}

}  // namespace

std::optional<MemoryMap> parse_maps_line(std::string_view line) {
    // "start-end perms offset dev inode [padding path]" (fs/proc/task_mmu.c show_map_vma).
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    std::string_view range = next_token(&line);
    std::string_view perms = next_token(&line);
    std::string_view offset = next_token(&line);
    std::string_view dev = next_token(&line);
    std::string_view inode = next_token(&line);
    MemoryMap m;
    size_t dash = range.find('-');
    if (dash == std::string_view::npos || !parse_num(range.substr(0, dash), &m.start, 16) ||
        !parse_num(range.substr(dash + 1), &m.end, 16) || m.end < m.start || perms.size() != 4 ||
        !parse_num(offset, &m.file_offset, 16) || dev.find(':') == std::string_view::npos ||
        !parse_num(inode, &m.inode))
        return std::nullopt;
    m.perms = std::string(perms);
    m.dev = std::string(dev);
    // The path is the rest of the line after the padding: it may contain spaces.
    size_t b = line.find_first_not_of(' ');
    std::string_view path = b == std::string_view::npos ? std::string_view{} : line.substr(b);
    constexpr std::string_view kDeleted = " (deleted)";
    if (path.size() > kDeleted.size() && path.ends_with(kDeleted)) {
        path.remove_suffix(kDeleted.size());
        m.deleted = true;
    }
    m.path = std::string(path);
    return m;
}

std::vector<MemoryMap> parse_maps(std::string_view text) {
    std::vector<MemoryMap> out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        if (auto m = parse_maps_line(text.substr(pos, eol - pos))) out.push_back(std::move(*m));
        pos = eol + 1;
    }
    return out;
}

Result<TaskStat> read_task_stat(pid_t pid, pid_t tid) {
    return read_parsed<TaskStat>(task_path(pid, tid, "stat"), parse_stat);
}

Result<TaskStatus> read_status(pid_t pid) {
    return read_parsed<TaskStatus>(proc_path(pid, "status"), parse_status);
}

Result<TaskStatus> read_task_status(pid_t pid, pid_t tid) {
    return read_parsed<TaskStatus>(task_path(pid, tid, "status"), parse_status);
}

Result<SchedStat> read_schedstat(pid_t pid, pid_t tid) {
    return read_parsed<SchedStat>(task_path(pid, tid, "schedstat"), parse_schedstat);
}

/// The start of an open /proc file, read again from offset 0 into `buf` (no allocation: the
/// sampler reads these per thread per tick). `what` names the file in the error.
static Result<std::string_view> pread_start(const UniqueFd& fd, std::span<char> buf,
                                            const char* what) {
    ssize_t n;
    do {
        n = ::pread(fd.get(), buf.data(), buf.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return Error::from_errno(fmt::format("pread {} fd {}", what, fd.get()), errno);
    return std::string_view(buf.data(), static_cast<size_t>(n));
}

Result<SchedStat> read_schedstat(const UniqueFd& fd) {
    // "%llu %llu %lu\n" (fs/proc/base.c proc_pid_schedstat): at most 62 bytes, one pread.
    char buf[128];
    auto text = pread_start(fd, buf, "schedstat");
    if (!text.ok()) return text.error();
    return parse_schedstat(*text);
}

Result<int64_t> read_sched_exec_start(const UniqueFd& fd) {
    // The whole file is about 2 KiB on 6.x kernels; se.exec_start is its first field.
    char buf[512];
    auto text = pread_start(fd, buf, "sched");
    if (!text.ok()) return text.error();
    // Only whole lines: the read may have cut the last one.
    const size_t last = text->rfind('\n');
    return parse_sched_exec_start(last == std::string_view::npos ? *text
                                                                 : text->substr(0, last + 1));
}

Result<SyscallState> read_syscall(pid_t pid, pid_t tid) {
    return read_parsed<SyscallState>(task_path(pid, tid, "syscall"), parse_syscall);
}

/// A file of the process that a zombie leader (main thread exited, others running) shows empty:
/// the leader has no mm, but every live thread's /proc/PID/task/TID view has the same content.
static Result<std::string> read_process_file(pid_t pid, const char* name) {
    auto text = read_file(proc_path(pid, name));
    if (!text || !text->empty()) return text;
    auto tasks = list_tasks(pid);
    if (tasks) {
        for (pid_t tid : *tasks) {
            if (tid == pid) continue;
            auto t = read_file(task_path(pid, tid, name));
            if (t && !t->empty()) return t;
        }
    }
    return text;
}

Result<std::vector<MemoryMap>> read_maps(pid_t pid) {
    auto text = read_process_file(pid, "maps");
    if (!text) return text.error();
    return parse_maps(*text);
}

std::string read_wchan(pid_t pid, pid_t tid) {
    // "0" when running or when the kernel hides it (kptr_restrict, no CAP_SYSLOG).
    auto text = read_file(task_path(pid, tid, "wchan"));
    if (!text) return {};
    std::string_view w = trim(*text);
    if (w.empty() || w == "0") return {};
    return std::string(w);
}

Result<std::vector<pid_t>> list_tasks(pid_t pid) {
    std::string path = proc_path(pid, "task");
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr && errno == ENOENT)  // the process is gone (or never was)
        return Error{"no process with pid " + std::to_string(pid), ESRCH};
    if (dir == nullptr) return Error::from_errno("opendir " + path, errno);
    std::vector<pid_t> tids;
    errno = 0;
    while (const dirent* e = ::readdir(dir)) {
        pid_t tid = 0;
        if (parse_num(std::string_view(e->d_name), &tid) && tid > 0) tids.push_back(tid);
    }
    int err = errno;
    ::closedir(dir);
    // readdir returns null with errno set on error; ESRCH when the process exited meanwhile.
    if (err != 0 && tids.empty()) return Error::from_errno("readdir " + path, err);
    std::sort(tids.begin(), tids.end());
    return tids;
}

std::string map_files_path(pid_t pid, const MemoryMap& m) {
    return fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
}

bool thread_selected(const std::vector<std::string>& filter, pid_t tid, std::string_view name) {
    if (filter.empty()) return true;
    const std::string id = std::to_string(tid);
    return std::any_of(filter.begin(), filter.end(),
                       [&](const std::string& f) { return f == name || f == id; });
}

std::string read_cmdline(pid_t pid) {
    auto text = read_process_file(pid, "cmdline");
    if (!text) return {};
    std::string s = std::move(*text);
    std::replace(s.begin(), s.end(), '\0', ' ');
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

int read_ptrace_scope() {
    auto text = read_file("/proc/sys/kernel/yama/ptrace_scope");
    if (!text) return -1;
    int scope = -1;
    if (!parse_num(trim(*text), &scope)) return -1;
    return scope;
}

uint64_t process_start_ticks(pid_t pid) {
    auto st = read_task_stat(pid, pid);
    return st.ok() ? st->start_time_ticks : 0;
}

bool process_running(pid_t pid, uint64_t start_ticks) {
    auto leader = read_task_stat(pid, pid);
    if (!leader.ok() || (start_ticks != 0 && leader->start_time_ticks != start_ticks))
        return false;  // gone, or the pid is another process's now
    auto tids = list_tasks(pid);
    if (!tids.ok()) return false;
    for (pid_t tid : *tids) {
        auto st = read_task_stat(pid, tid);
        if (st.ok() && st->state != ThreadState::Zombie && st->state != ThreadState::Dead)
            return true;
    }
    return false;
}

ProcessLife::ProcessLife(pid_t pid)
    : pid_(pid), start_ticks_(process_running(pid, 0) ? process_start_ticks(pid) : 0) {}

bool ProcessLife::exited() const {
    return start_ticks_ != 0 && !process_running(pid_, start_ticks_);
}

Error ProcessLife::explain(Error e, std::string_view what) const {
    if (!exited()) return e;
    return Error{"pid " + std::to_string(pid_) + " exited during " + std::string(what), ESRCH};
}

}  // namespace pmprof
