// `-o PATH` never clobbers: regular files are replaced atomically, devices and
// FIFOs written through, symbolic links followed, and what cannot be written is refused before
// the target is touched, with one line naming the user's path.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "../support/harness.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

std::string go_profile() { return source_dir() + "/tests/corpus/go_cpu.pb.gz"; }

/// `pmprof report go_cpu.pb.gz --format text -o PATH`: a writer that needs no target.
RunResult report_to(const std::string& path, const std::vector<std::string>& pre = {},
                    const std::string& input = go_profile()) {
    std::vector<std::string> argv = pre;
    for (const std::string& a :
         {pmprof_bin(), std::string("report"), input, std::string("--format"), std::string("text"),
          std::string("-o"), path})
        argv.push_back(a);
    return run(argv);
}

std::string fresh_dir(const std::string& name) {
    std::string dir = temp_path(name + "-XXXXXX");
    REQUIRE(mkdtemp(dir.data()) != nullptr);
    return dir;
}

bool is_char_device(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
}

size_t lines_of(const std::string& text) {
    size_t n = 0;
    for (char c : text) n += c == '\n';
    return n;
}

}  // namespace

TEST_CASE("output: a full device fails with ENOSPC and stays a device", "[integration][output]") {
    // A private node of the full device (1, 7): a pmprof that replaced device nodes would
    // replace this one, not the machine's /dev/full.
    const std::string dir = fresh_dir("full");
    const std::string full = dir + "/full";
    REQUIRE(::mknod(full.c_str(), S_IFCHR | 0666, makedev(1, 7)) == 0);
    RunResult r = report_to(full);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("No space left on device") != std::string::npos);
    CHECK(r.err.find("cannot write") == std::string::npos);  // it was writable, only full
    CHECK(r.err.find(full) != std::string::npos);
    CHECK(r.err.find(".tmp") == std::string::npos);
    REQUIRE(is_char_device(full));

    // Only once the private node survived: the machine's own /dev/full, and attach's "wrote".
    REQUIRE(is_char_device("/dev/full"));
    auto target = Target::start({target_bin("stacks_target", true)});
    RunResult a = run({pmprof_bin(), "attach", std::to_string(target->pid()), "-d", "300ms", "-o",
                       "/dev/full", "--format", "folded", "-m", "wall"});
    INFO(a.err);
    CHECK(a.exit_code == 2);
    CHECK(a.err.find("writing /dev/full: No space left on device") != std::string::npos);
    CHECK(a.err.find("wrote") == std::string::npos);
    CHECK(is_char_device("/dev/full"));
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("output: a symbolic link is followed, its target replaced, the link kept",
          "[integration][output]") {
    const std::string dir = fresh_dir("link");
    std::filesystem::create_directory(dir + "/real");
    const std::string real = dir + "/real/top.txt", link = dir + "/top.txt";
    { std::ofstream(real) << "old contents\n"; }
    ::chmod(real.c_str(), 0640);
    std::filesystem::create_symlink("real/top.txt", link);
    RunResult r = report_to(link);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(std::filesystem::is_symlink(link));
    CHECK(std::filesystem::read_symlink(link) == "real/top.txt");
    const std::string text = slurp(real);
    CHECK(text.find("flat%") != std::string::npos);
    struct stat st {};
    REQUIRE(::stat(real.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);  // the replaced file keeps its permissions

    // A dangling link: the file it names is created, the link stays a link.
    const std::string dangling = dir + "/dangling.txt";
    std::filesystem::create_symlink("real/new.txt", dangling);
    RunResult d = report_to(dangling);
    REQUIRE(d.exit_code == 0);
    CHECK(std::filesystem::is_symlink(dangling));
    CHECK(slurp(dir + "/real/new.txt").find("flat%") != std::string::npos);
    // Nothing left behind in either directory.
    for (const std::string& d2 : {dir, dir + "/real"})
        for (const auto& e : std::filesystem::directory_iterator(d2))
            CHECK(e.path().string().find(".tmp") == std::string::npos);
}

TEST_CASE("output: a FIFO is written through to its reader", "[integration][output]") {
    const std::string dir = fresh_dir("fifo");
    const std::string fifo = dir + "/pipe";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    // The reader end is opened first (non-blocking, so no writer is needed) and read until the
    // data has come and gone; a pmprof that replaced the FIFO never writes it: bounded wait.
    const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(rd >= 0);
    std::atomic<bool> pmprof_done{false};
    std::string got;
    std::thread reader([&] {
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        std::chrono::steady_clock::time_point gave_up{};
        for (;;) {
            char buf[4096];
            const ssize_t n = ::read(rd, buf, sizeof buf);
            if (n > 0) {
                got.append(buf, static_cast<size_t>(n));
                continue;
            }
            if (n == 0 && !got.empty()) break;  // the writer closed it
            const auto now = std::chrono::steady_clock::now();
            if (pmprof_done && gave_up == std::chrono::steady_clock::time_point{})
                gave_up = now + 1s;
            if (now > deadline ||
                (gave_up != std::chrono::steady_clock::time_point{} && now > gave_up))
                break;
            std::this_thread::sleep_for(5ms);
        }
    });
    RunResult r = report_to(fifo);
    pmprof_done = true;
    reader.join();
    ::close(rd);
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(got.find("flat%") != std::string::npos);
    struct stat st {};
    REQUIRE(::lstat(fifo.c_str(), &st) == 0);
    CHECK(S_ISFIFO(st.st_mode));
}

TEST_CASE("output: -, /dev/stdout and /dev/stderr are the streams themselves",
          "[integration][output]") {
    RunResult dash = report_to("-");
    CHECK(dash.exit_code == 0);
    CHECK(dash.out.find("flat%") != std::string::npos);
    // First private links to the descriptors: a pmprof that replaced links by files would
    // replace these, and must not get to the machine's /dev/stdout and /dev/stderr.
    const std::string dir = fresh_dir("fdlink");
    for (const char* fd : {"1", "2"}) {
        const std::string link = dir + "/fd" + fd;
        std::filesystem::create_symlink(std::string("/proc/self/fd/") + fd, link);
        RunResult via = report_to(link);
        INFO(via.err);
        CHECK(via.exit_code == 0);
        REQUIRE(std::filesystem::is_symlink(link));
        CHECK((fd[0] == '1' ? via.out : via.err).find("flat%") != std::string::npos);
    }
    RunResult out = report_to("/dev/stdout");
    CHECK(out.exit_code == 0);
    CHECK(out.out == dash.out);
    RunResult err = report_to("/dev/stderr");
    CHECK(err.exit_code == 0);
    CHECK(err.out.empty());
    CHECK(err.err.find("flat%") != std::string::npos);
}

TEST_CASE("output: what cannot be written is refused before the target is touched",
          "[integration][output]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string pid = std::to_string(target->pid());
    const std::string dir = fresh_dir("refuse");
    struct Case {
        std::string path, says;
    };
    const Case cases[] = {
        {dir + "/missing/cpu.pb.gz", "directory " + dir + "/missing does not exist"},
        {dir, "is a directory"},
    };
    for (const Case& c : cases) {
        for (const std::vector<std::string>& verb :
             {std::vector<std::string>{"attach", pid, "-d", "5s", "-m", "wall"},
              std::vector<std::string>{"stacks", pid}, std::vector<std::string>{"heap", pid}}) {
            std::vector<std::string> argv{pmprof_bin()};
            argv.insert(argv.end(), verb.begin(), verb.end());
            argv.push_back("-o");
            argv.push_back(c.path);
            const auto started = std::chrono::steady_clock::now();
            RunResult r = run(argv);
            const auto took = std::chrono::steady_clock::now() - started;
            INFO(verb[0] << " -o " << c.path << ": " << r.err);
            CHECK(r.exit_code == 2);
            CHECK(r.err.rfind("pmprof: cannot write " + c.path + ": ", 0) == 0);
            CHECK(r.err.find(c.says) != std::string::npos);
            CHECK(r.err.find(".tmp") == std::string::npos);
            CHECK(lines_of(r.err) == 1);
            CHECK(took < 3s);  // refused before attach's 5 s of sampling
            CHECK(tracer_pid(target->pid()) == 0);
        }
    }
    CHECK(std::filesystem::is_directory(dir));
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("output: a directory the user may not write to is refused, naming the path",
          "[integration][output]") {
    REQUIRE(geteuid() == 0);  // to drop to nobody
    const std::string dir = fresh_dir("perm");
    ::chmod(std::filesystem::path(dir).parent_path().c_str(), 0711);
    ::chmod(dir.c_str(), 0755);  // root's: nobody may not create files here
    const std::string profile = dir + "/in.pb.gz";
    std::filesystem::copy_file(go_profile(), profile);
    ::chmod(profile.c_str(), 0644);
    const std::string path = dir + "/top.txt";
    RunResult r = report_to(
        path, {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"},
        profile);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.rfind("pmprof: cannot write " + path + ": ", 0) == 0);
    CHECK(r.err.find("Permission denied") != std::string::npos);
    CHECK(lines_of(r.err) == 1);
    CHECK(!std::filesystem::exists(path));
}
