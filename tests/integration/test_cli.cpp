// The command line as a whole: help and errors name every subcommand although pmprof only
// builds the one it runs, --version stays cheap (no per-frame signal-mask calls while CLI11's
// exception unwinds), and a warm `pmprof stacks` (persistent symbol cache) prints exactly what
// a cold one does.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>

#include <regex>
#include <string>

#include "../support/harness.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

TEST_CASE("cli: help lists every subcommand, each has its own help", "[integration][cli]") {
    RunResult help = run({pmprof_bin(), "--help"});
    REQUIRE(help.exit_code == 0);
    for (const char* name : {"stacks", "attach", "record", "heap", "report", "serve"}) {
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
    CHECK(typo.err.find("subcommand") != std::string::npos);
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
