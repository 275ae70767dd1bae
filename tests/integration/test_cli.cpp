// The command line as a whole: help and errors name every subcommand although pmprof only
// builds the one it runs, --version stays cheap (no per-frame signal-mask calls while CLI11's
// exception unwinds), and a warm `pmprof stacks` (persistent symbol cache) prints exactly what
// a cold one does.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "../support/harness.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

TEST_CASE("cli: help lists every subcommand, each has its own help", "[integration][cli]") {
    RunResult help = run({pmprof_bin(), "--help"});
    REQUIRE(help.exit_code == 0);
    for (const char* name : {"stacks", "attach", "record", "heap", "report", "serve", "top"}) {
        INFO(name);
        CHECK(help.out.find(std::string("  ") + name) != std::string::npos);
        RunResult sub = run({pmprof_bin(), "-q", name, "--help"});
        CHECK(sub.exit_code == 0);
        CHECK(sub.out.find(std::string("pmprof ") + name) != std::string::npos);
    }
}

TEST_CASE("cli: usage errors still exit 64 with CLI11's message", "[integration][cli]") {
    RunResult typo = run({pmprof_bin(), "stackz", "1"});
    CHECK(typo.exit_code == 64);
    CHECK(typo.err.find("unknown command 'stackz'") != std::string::npos);
    RunResult bogus = run({pmprof_bin(), "-v", "stacks", "--bogus", "1"});
    CHECK(bogus.exit_code == 64);
    CHECK(bogus.err.find("--bogus") != std::string::npos);
    RunResult missing = run({pmprof_bin(), "stacks"});
    CHECK(missing.exit_code == 64);
    CHECK(missing.err.find("pid") != std::string::npos);
}

TEST_CASE("cli: --version does not unwind through libunwind's local unwinder",
          "[integration][cli]") {
    // libunwind.so.8 interposing _Unwind_RaiseException made 441 rt_sigprocmask calls here.
    RunResult r =
        run({"strace", "-f", "-c", "-e", "trace=rt_sigprocmask", pmprof_bin(), "--version"});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("pmprof ") != std::string::npos);
    std::smatch m;
    static const std::regex kCalls(R"(\s(\d+)\s+(?:\d+\s+)?rt_sigprocmask)");
    int calls = std::regex_search(r.err, m, kCalls) ? std::stoi(m[1]) : 0;
    INFO(r.err);
    CHECK(calls < 20);
}

TEST_CASE("cli: pmprof does not load the HTTP server's OpenSSL; serve is pmprof-serve",
          "[integration][cli]") {
    // The dynamic loader names every library it loads; libssl came with libcpp-httplib and was
    // over half of a warm `stacks` run's instructions.
    RunResult loads = run({"env", "LD_DEBUG=libs", pmprof_bin(), "--version"});
    REQUIRE(loads.exit_code == 0);
    CHECK(loads.err.find("libdw.so") != std::string::npos);  // the check sees what is loaded
    CHECK(loads.err.find("libssl") == std::string::npos);
    CHECK(loads.err.find("httplib") == std::string::npos);

    // Without pmprof-serve beside it (or in ../libexec/pmprof), `serve` says so and exits 2.
    std::string dir = temp_path("lonely-XXXXXX");
    REQUIRE(mkdtemp(dir.data()) != nullptr);
    REQUIRE(run({"cp", pmprof_bin(), dir + "/pmprof"}).exit_code == 0);
    RunResult lonely = run({dir + "/pmprof", "serve", "1"});
    CHECK(lonely.exit_code == 2);
    CHECK(lonely.err.find("pmprof-serve") != std::string::npos);
    CHECK(lonely.err.find('\n') == lonely.err.size() - 1);  // one line
    run({"rm", "-rf", dir});
}

TEST_CASE("cli: a warm stacks run prints what the cold one did", "[integration][cli][stacks]") {
    auto target = Target::start({target_bin("stacks_target", false)});
    std::string dir = temp_path("warm-cache-XXXXXX");
    REQUIRE(mkdtemp(dir.data()) != nullptr);
    std::vector<std::string> argv{"env", "PMPROF_CACHE_DIR=" + dir, pmprof_bin(), "stacks"};
    for (std::string arg :
         {"--no-group", "--thread", "reader", "--thread", "inliner", "--thread", "sorter"})
        argv.push_back(arg);
    argv.push_back(std::to_string(target->pid()));
    RunResult cold = run(argv, 60s);
    REQUIRE(cold.exit_code == 0);
    struct stat st {};
    REQUIRE(::stat((dir + "/symbols").c_str(), &st) == 0);
    RunResult warm = run(argv, 60s);
    REQUIRE(warm.exit_code == 0);
    // The blocked threads have not moved: the same frames, lines and inline marks.
    CHECK(warm.out == cold.out);
    CHECK(cold.out.find("(inlined)") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("cli: a mistyped verb or option gets the nearest one", "[integration][cli]") {
    RunResult verb = run({pmprof_bin(), "atach", "1"});
    CHECK(verb.exit_code == 64);
    CHECK(verb.err.rfind("pmprof: unknown command 'atach'; did you mean 'attach'?\n", 0) == 0);
    // Nothing near: no guess.
    RunResult far = run({pmprof_bin(), "frobnicate", "1"});
    CHECK(far.exit_code == 64);
    CHECK(far.err.find("unknown command 'frobnicate'") != std::string::npos);
    CHECK(far.err.find("did you mean") == std::string::npos);
    // After the verb, the options of that verb (and the global ones) are the candidates.
    RunResult opt = run({pmprof_bin(), "stacks", "--thrad", "x", "1"});
    CHECK(opt.exit_code == 64);
    CHECK(opt.err.find("unknown option '--thrad' for 'stacks'; did you mean '--thread'?") !=
          std::string::npos);
    RunResult dur = run({pmprof_bin(), "attach", "1", "--durration=1s"});
    CHECK(dur.exit_code == 64);
    CHECK(dur.err.find("did you mean '--duration'?") != std::string::npos);
    RunResult global = run({pmprof_bin(), "attach", "1", "--verbsoe"});
    CHECK(global.exit_code == 64);
    CHECK(global.err.find("did you mean '--verbose'?") != std::string::npos);
}

TEST_CASE("cli: -p/--pid wherever a pid is, global options after the verb",
          "[integration][cli][stacks]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string pid = std::to_string(target->pid());
    // -p is parsed as the pid (a bad one is named), for every verb that takes one.
    for (const char* verb : {"stacks", "attach", "heap", "doctor", "serve"}) {
        INFO(verb);
        RunResult bad = run({pmprof_bin(), verb, "-p", "12x"});
        CHECK(bad.exit_code == 64);
        CHECK(bad.err.find("'12x' is not a process id") != std::string::npos);
        RunResult both = run({pmprof_bin(), verb, "1", "--pid", "2"});
        CHECK(both.exit_code == 64);
        RunResult none = run({pmprof_bin(), verb});
        CHECK(none.exit_code == 64);
        CHECK(none.err.find("PID") != std::string::npos);
    }
    // The same dump either way; -q after the verb silences the summary line -v adds to.
    RunResult positional = run({pmprof_bin(), "stacks", pid, "--no-group"});
    RunResult named = run({pmprof_bin(), "stacks", "--pid", pid, "--no-group", "-q"});
    REQUIRE(positional.exit_code == 0);
    REQUIRE(named.exit_code == 0);
    CHECK(positional.err.find("threads, target stopped") != std::string::npos);
    CHECK(named.err.empty());
    CHECK(named.out.find("Thread ") != std::string::npos);
    RunResult verbose = run({pmprof_bin(), "stacks", "-p", pid, "-vv", "-o", "/dev/null"});
    REQUIRE(verbose.exit_code == 0);
    CHECK(verbose.err.find("output: /dev/null") != std::string::npos);  // a debug line
    // record -p is attach (as perf record -p); with a command too it is refused.
    RunResult rec = run({pmprof_bin(), "record", "-p", "12x"});
    CHECK(rec.exit_code == 64);
    CHECK(rec.err.find("'12x' is not a process id") != std::string::npos);
    CHECK(run({pmprof_bin(), "record", "-p", pid, "--", "true"}).exit_code == 64);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("cli: -t/--thread for stacks and attach, --threads kept", "[integration][cli][stacks]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string pid = std::to_string(target->pid());
    RunResult one = run({pmprof_bin(), "stacks", pid, "--no-group", "-t", "reader"});
    RunResult alias = run({pmprof_bin(), "stacks", pid, "--no-group", "--threads", "reader"});
    RunResult two = run({pmprof_bin(), "stacks", pid, "--no-group", "--thread=reader,sorter"});
    REQUIRE(one.exit_code == 0);
    REQUIRE(alias.exit_code == 0);
    REQUIRE(two.exit_code == 0);
    const auto threads = [](const std::string& out) {
        size_t n = 0;
        for (size_t at = out.find("Thread "); at != std::string::npos;
             at = out.find("Thread ", at + 1))
            ++n;
        return n;
    };
    CHECK(threads(one.out) == 1);
    CHECK(threads(alias.out) == 1);
    CHECK(threads(two.out) == 2);
    CHECK(two.out.find("sorter") != std::string::npos);
    // attach's filter is the same option: a name no thread has gives no samples.
    const std::string out = temp_path("thread-filter.pb.gz");
    RunResult none =
        run({pmprof_bin(), "attach", pid, "-d", "300ms", "-t", "no-such-thread", "-o", out});
    CHECK(none.exit_code == 1);
    CHECK(none.err.find("does --thread match?") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("cli: the format follows -o's name for every verb; binary never to a terminal",
          "[integration][cli][stacks]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string pid = std::to_string(target->pid());
    const auto gzip = [](const std::string& path) {
        const std::string data = slurp(path);
        return data.size() > 2 && data[0] == '\x1f' && data[1] == '\x8b';
    };
    const std::string pb = temp_path("st.pb.gz"), txt = temp_path("st.txt"),
                      json = temp_path("st.json"), svg = temp_path("st.svg");
    REQUIRE(run({pmprof_bin(), "stacks", pid, "-o", pb}).exit_code == 0);
    CHECK(gzip(pb));
    REQUIRE(run({pmprof_bin(), "stacks", pid, "-o", txt}).exit_code == 0);
    CHECK(slurp(txt).find("Thread ") != std::string::npos);
    REQUIRE(run({pmprof_bin(), "stacks", pid, "-o", json}).exit_code == 0);
    CHECK(slurp(json).rfind("{", 0) == 0);
    REQUIRE(run({pmprof_bin(), "stacks", pid, "-o", svg}).exit_code == 0);
    CHECK(slurp(svg).find("<svg") != std::string::npos);
    // --format wins over the name.
    REQUIRE(run({pmprof_bin(), "stacks", pid, "-o", pb, "-f", "text"}).exit_code == 0);
    CHECK(!gzip(pb));
    const std::string doctor = temp_path("doctor.json");
    REQUIRE(run({pmprof_bin(), "doctor", pid, "-o", doctor}).exit_code != 64);
    CHECK(slurp(doctor).rfind("{\"pid\":", 0) == 0);
    // A terminal as stdout (script(1) gives the command a pty): pprof is refused in one line.
    for (const std::string& verb : {"stacks " + pid + " -f pprof", "heap " + pid + " -f pprof"}) {
        INFO(verb);
        RunResult tty = run({"script", "-qec", pmprof_bin() + " " + verb, "/dev/null"});
        CHECK(tty.exit_code == 64);
        CHECK(tty.out.find("refusing to write a binary profile to a terminal") !=
              std::string::npos);
        CHECK(tty.out.find("hint: use -o FILE") != std::string::npos);
        CHECK(tty.out.find('\x1f') == std::string::npos);
    }
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("cli: attach's default mode is serve's (cpu)", "[integration][cli][sampler]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string out = temp_path("default-mode.pb.gz");
    RunResult r = run({pmprof_bin(), "attach", std::to_string(target->pid()), "-d", "500ms",
                       "--no-progress", "-o", out});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    // The sample types of a cpu profile, as /debug/pprof/profile's default gives.
    RunResult raw = run_go_tool_pprof({"-raw", out});
    INFO(raw.out);
    CHECK(raw.out.find("cpu/nanoseconds") != std::string::npos);
    CHECK(raw.out.find("wall/nanoseconds") == std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

namespace {

/// The option names (--long and -s) in `text`'s option lines: CLI11's help lists each option
/// on a line of its own, indented, names first.
std::set<std::string> help_options(const std::string& text) {
    std::set<std::string> out;
    std::istringstream in(text);
    static const std::regex kName(R"((?:^|[ ,])(--?[A-Za-z][A-Za-z0-9-]*))");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("  -", 0) != 0) continue;
        const std::string names = line.substr(0, line.find("  ", 2));
        for (std::sregex_iterator it(names.begin(), names.end(), kName), end; it != end; ++it)
            out.insert((*it)[1]);
    }
    out.erase("-h");
    out.erase("--help");
    return out;
}

/// The option names of the man page's .TP entries between the heading that starts with
/// `heading` and the next .SS or .SH.
std::set<std::string> man_options(const std::string& man, const std::string& heading) {
    std::set<std::string> out;
    const size_t begin = man.find(heading);
    if (begin == std::string::npos) return out;
    size_t end = man.find("\n.S", begin + 1);
    std::istringstream in(man.substr(begin, end == std::string::npos ? end : end - begin));
    static const std::regex kName(R"(\\-(\\-)?([A-Za-z][A-Za-z0-9\\-]*))");
    bool header = false;
    for (std::string line; std::getline(in, line);) {
        if (header) {
            // The entry's first line: ".BR \-d ", " \-\-duration " D"" and the like.
            for (std::sregex_iterator it(line.begin(), line.end(), kName), e; it != e; ++it) {
                std::string name = (*it)[2];
                name = std::regex_replace(name, std::regex(R"(\\-)"), "-");
                out.insert(((*it)[1].matched ? "--" : "-") + name);
            }
        }
        header = line == ".TP";
    }
    return out;
}

}  // namespace

TEST_CASE("cli: --help and the man page list the same options", "[integration][cli]") {
    const std::string man = slurp(source_dir() + "/man/pmprof.1");
    REQUIRE(!man.empty());
    struct Section {
        std::vector<std::string> verbs;
        std::string heading;
    };
    const std::vector<Section> sections = {
        {{"stacks"}, ".SS pmprof stacks"}, {{"attach", "record"}, ".SS pmprof attach"},
        {{"heap"}, ".SS pmprof heap"},     {{"report"}, ".SS pmprof report"},
        {{"top"}, ".SS pmprof top"},       {{"serve"}, ".SS pmprof serve"},
        {{"doctor"}, ".SS pmprof doctor"}, {{}, ".SH GLOBAL OPTIONS"},
    };
    for (const Section& s : sections) {
        INFO(s.heading);
        std::set<std::string> help;
        if (s.verbs.empty()) {
            RunResult r = run({pmprof_bin(), "--help"});
            REQUIRE(r.exit_code == 0);
            help = help_options(r.out);
            help.insert({"-h", "--help"});
        }
        for (const std::string& verb : s.verbs) {
            RunResult r = run({pmprof_bin(), verb, "--help"});
            REQUIRE(r.exit_code == 0);
            for (const std::string& o : help_options(r.out)) help.insert(o);
        }
        REQUIRE(help.size() > 2);
        const std::set<std::string> documented = man_options(man, s.heading);
        for (const std::string& o : help) {
            INFO("in --help, not in the man page: " << o);
            CHECK(documented.count(o) == 1);
        }
        for (const std::string& o : documented) {
            INFO("in the man page, not in --help: " << o);
            CHECK(help.count(o) == 1);
        }
    }
}
