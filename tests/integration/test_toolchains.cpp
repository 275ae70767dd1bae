// Names, lines and complete stacks on every toolchain: the same program built by g++ +
// GNU ld, clang++ + lld, g++ + mold and clang++ alone (DWARF 5, no .debug_aranges)
// (tests/targets/toolchain_target.cpp), and a Rust program built by Debian's rustc with legacy
// and v0 symbol mangling and linked by lld (tests/targets/rust_target.rs), each with and without
// frame pointers. References: gdb on the same (SIGSTOPped) pid for the frames, perf on the same
// run for the hot function's share, `go tool pprof -list` from another directory for the lines.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../support/harness.h"
#include "pmprof/output/pprof.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

struct Toolchain {
    const char* label;
    const char* target;  // build/targets/<target>-fp|-nofp
    bool rust;
    bool gcc;         // g++ (lambda names {lambda()#N}); clang names them $_N
    bool no_aranges;  // checked with readelf: the premise of "file:line without .debug_aranges"
    // The busy thread besides the cruncher: "mailbox" (C++ lambdas), "stager" (Rust generics).
    const char* second;
};

const Toolchain kToolchains[] = {
    {"g++ + GNU ld", "toolchain_target", false, true, false, "mailbox"},
    {"clang++ + lld", "toolchain_target-clang-lld", false, false, true, "mailbox"},
    {"g++ + mold", "toolchain_target-gcc-mold", false, true, false, "mailbox"},
    {"clang++ + GNU ld (DWARF 5, no .debug_aranges)", "toolchain_target-clang", false, false, true,
     "mailbox"},
    {"rustc legacy mangling", "rust_target-legacy", true, false, false, "stager"},
    {"rustc v0 mangling", "rust_target-v0", true, false, false, "stager"},
    {"rustc legacy mangling + lld", "rust_target-lld", true, false, false, "stager"},
};

std::string source_of(const Toolchain& tc) {
    return source_dir() +
           (tc.rust ? "/tests/targets/rust_target.rs" : "/tests/targets/toolchain_target.cpp");
}
std::string source_base(const Toolchain& tc) {
    return tc.rust ? "rust_target.rs" : "toolchain_target.cpp";
}
int line_of(const Toolchain& tc, const std::string& marker) {
    return marker_line(source_of(tc), marker);
}
std::string hot_name(const Toolchain& tc) {
    return tc.rust ? "rust_target::Crunch::step" : "Crunch::step()";
}

std::string base_name(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool closes(char open, char c) {
    return (open == '(' && c == ')') || (open == '<' && c == '>') || (open == '[' && c == ']') ||
           (open == '{' && c == '}');
}

/// The position of the first `stop` outside any (), <>, [] or {} of `s` from `from`; npos if none.
/// "->" (a Rust fn type) is not a closing bracket.
size_t find_top(const std::string& s, const std::string& stop, size_t from = 0) {
    std::string open;
    for (size_t i = from; i < s.size(); ++i) {
        char c = s[i];
        if (open.empty() && s.compare(i, stop.size(), stop) == 0) return i;
        if (c == '(' || c == '<' || c == '[' || c == '{') {
            // "operator<", "operator<<" and the like open nothing.
            if (c == '<' && i >= 8 && s.compare(i - 8, 8, "operator") == 0) continue;
            open.push_back(c);
        } else if (!open.empty() && closes(open.back(), c) &&
                   !(c == '>' && i > 0 && s[i - 1] == '-')) {
            open.pop_back();
        }
    }
    return std::string::npos;
}

std::vector<std::string> split_top(const std::string& s, const std::string& sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t p = find_top(s, sep); p != std::string::npos; p = find_top(s, sep, start)) {
        out.push_back(s.substr(start, p - start));
        start = p + sep.size();
    }
    out.push_back(s.substr(start));
    return out;
}

/// A C++ name without its parameter list and the cv/ref qualifiers after it:
/// "Crunch::step()" and gdb's "Crunch::step" are both "Crunch::step", and a lambda's
/// "...::{lambda()#1}::operator()() const" is "...::{lambda()#1}::operator()". The scopes of a
/// local class keep their parameters ("Mailbox::send_message(unsigned long)::{lambda()#1}"):
/// they are what tells two lambdas apart.
std::string strip_params(std::string name) {
    for (const char* q : {" const", " volatile", " &&", " &"})
        if (name.size() > std::strlen(q) && name.ends_with(q))
            name.resize(name.size() - std::strlen(q));
    if (name.empty() || name.back() != ')') return name;
    int depth = 0;
    for (size_t i = name.size(); i-- > 0;) {
        if (name[i] == ')') ++depth;
        if (name[i] == '(' && --depth == 0) {
            std::string head = name.substr(0, i);
            // "X::operator()" alone: its "()" is the operator's name, not a parameter list.
            if (head.ends_with("operator")) return name;
            return head;
        }
    }
    return name;
}

/// The components of a Rust path as gdb and the demanglers can both say them, since they spell
/// the same function differently (gdb from DWARF namespaces, pmprof from the symbol):
///   - generic arguments go: gdb's "drive<rust_target::Mixer<u32>>", v0's
///     "drive::<rust_target::Mixer<u32>>" and legacy's "drive" (legacy mangling has none) are one
///     function;
///   - a trait impl is "{impl}": gdb numbers the impl blocks of a module ("rust_target::{impl#1}
///     ::run"), the symbol names its Self type and trait ("<rust_target::Mixer<T> as
///     rust_target::Stage>::run"); both say "method run of an impl in module rust_target"
///     (the module of the Self type), and the numbers are compared when both sides have one;
///     an inherent impl's "<rust_target::Crunch>::step" (v0) is "rust_target::Crunch::step";
///   - legacy mangling's "{{closure}}" is "{closure}" (it has no closure index; v0 and gdb say
///     "{closure#0}").
/// The legacy "::h<16 hex>" hash is not removed: a name that keeps it does not match.
std::vector<std::string> rust_components(const std::string& name) {
    std::vector<std::string> out;
    std::vector<std::string> parts = split_top(name, "::");
    for (size_t i = 0; i < parts.size(); ++i) {
        std::string c = parts[i];
        if (c.starts_with("<impl ")) {
            out.push_back("{impl}");
            continue;
        }
        if (c.starts_with("<")) {
            if (i > 0) continue;  // a turbofish "::<...>": generic arguments
            // "<Self as Trait>": Self's module, then the impl. "<Self>" (v0's inherent impl,
            // "<rust_target::Crunch>::step"): Self's path, as gdb and legacy say it.
            std::string inner = c.substr(1, c.size() - 2);
            size_t as = find_top(inner, " as ");
            std::vector<std::string> self = rust_components(inner.substr(0, as));
            if (as != std::string::npos && !self.empty()) self.pop_back();  // the type itself
            out.insert(out.end(), self.begin(), self.end());
            if (as != std::string::npos) out.push_back("{impl}");
            continue;
        }
        if (size_t lt = c.find('<'); lt != std::string::npos && lt > 0) c.resize(lt);
        if (c == "{{closure}}") c = "{closure}";
        out.push_back(c);
    }
    return out;
}

/// One Rust path component of gdb's and pmprof's: equal, or an unnumbered "{impl}" /
/// "{closure}" (all the symbol can say) against a numbered one.
bool same_component(const std::string& a, const std::string& b) {
    if (a == b) return true;
    for (std::string kind : {"{impl", "{closure"}) {
        auto numbered = [&](const std::string& x) { return x.starts_with(kind + "#"); };
        auto bare = [&](const std::string& x) { return x == kind + "}"; };
        if ((numbered(a) && bare(b)) || (bare(a) && numbered(b))) return true;
    }
    return false;
}

/// True when gdb's name and pmprof's name are the same function (see strip_params and
/// rust_components for what is normalised and why).
bool same_function(const std::string& gdb, const std::string& ours, bool rust) {
    if (rust) {
        auto a = rust_components(gdb), b = rust_components(ours);
        if (a.size() != b.size()) return false;
        for (size_t i = 0; i < a.size(); ++i)
            if (!same_component(a[i], b[i])) return false;
        return true;
    }
    std::string g = strip_params(gdb), o = strip_params(ours);
    if (g == o) return true;
    // gdb names a lambda that g++ inlined by its DW_AT_name alone ("operator()": gdb's DWARF
    // reader does not qualify the member of an unnamed class); pmprof must give the full name
    // gdb gives the same lambda out of line: "Scope::fn(args)::{lambda()#1}::operator()".
    return g == "operator()" && o.ends_with("::operator()") &&
           o.find("{lambda(") != std::string::npos;
}

struct Frame {
    std::string name;  // as printed
    std::string file;  // as printed ("" without)
    int line = 0;
    std::string text;    // the whole frame line, for messages
    bool at_pc = false;  // pmprof: the frame at the thread's pc, or inlined there (not a call site)
};

/// gdb's `thread apply all bt`, by LWP: "#N  [0xPC in ]NAME (ARGS) at FILE:LINE" or
/// "... from LIB".
std::map<pid_t, std::vector<Frame>> parse_gdb(const std::string& out) {
    std::map<pid_t, std::vector<Frame>> threads;
    static const std::regex kThread(R"(^Thread \d+ \(.*\(LWP (\d+)\))"),
        kFrame(R"(^#\d+\s+(?:0x[0-9a-f]+ in )?(.*)$)"), kAt(R"( at (\S+):(\d+)$)");
    pid_t cur = 0;
    std::istringstream in(out);
    std::string line;
    std::smatch m;
    while (std::getline(in, line)) {
        if (std::regex_search(line, m, kThread)) {
            cur = std::stoi(m[1]);
        } else if (cur != 0 && std::regex_search(line, m, kFrame)) {
            Frame f;
            f.text = line;
            std::string rest = m[1];
            f.name = rest.substr(0, find_top(rest, " ("));
            if (std::regex_search(rest, m, kAt)) {
                f.file = m[1];
                f.line = std::stoi(m[2]);
            }
            threads[cur].push_back(f);
        }
    }
    return threads;
}

/// pmprof's text frames of thread `tid`: "#N 0xPC NAME (FILE:LINE) [MODULE] (inlined)".
std::vector<Frame> parse_pmprof_thread(const std::string& out, pid_t tid) {
    std::vector<Frame> frames;
    std::istringstream in(thread_block(out, tid));
    static const std::regex kFrame(R"(^\s*#\d+\s+0x[0-9a-f]+ (.*)$)"), kModule(R"( \[[^\]]*\]$)"),
        kSource(R"( \(([^()\s]+):(\d+)\)$)");
    std::string line;
    std::smatch m;
    bool seen_outer = false;
    while (std::getline(in, line)) {
        if (!std::regex_search(line, m, kFrame)) continue;
        Frame f;
        f.text = line;
        std::string rest = m[1];
        const bool inlined = rest.ends_with(" (inlined)");
        if (inlined) rest.resize(rest.size() - 10);
        if (std::regex_search(rest, m, kModule)) rest.resize(rest.size() - m[0].length());
        if (std::regex_search(rest, m, kSource)) {
            f.file = m[1];
            f.line = std::stoi(m[2]);
            rest.resize(rest.size() - m[0].length());
        }
        f.name = rest;
        f.at_pc = !seen_outer;
        seen_outer |= !inlined;
        frames.push_back(f);
    }
    return frames;
}

std::vector<Frame> own_frames(const std::vector<Frame>& frames, const std::string& source) {
    std::vector<Frame> out;
    for (const Frame& f : frames)
        if (base_name(f.file) == source) out.push_back(f);
    return out;
}

std::string describe(const std::vector<Frame>& frames) {
    std::string s;
    for (const Frame& f : frames) s += "  " + f.text + "\n";
    return s;
}

void wait_stopped(Target& t) {
    for (int i = 0; i < 400 && stopped_threads(t.pid()).size() < t.tids().size(); ++i)
        std::this_thread::sleep_for(5ms);
    REQUIRE(stopped_threads(t.pid()).size() == t.tids().size());
}

/// gdb as fast as it goes: no init files, no auto-loading, and no separate debug files (libc's
/// from libc6-dbg take most of its second), which only the libc frames need, and those are not
/// compared (gdb names them from the symbol table, as pmprof does without DWARF; not the point).
RunResult gdb_backtraces(pid_t pid) {
    return run({"gdb", "-nx", "-batch", "-iex", "set debug-file-directory /nonexistent", "-iex",
                "set auto-load off", "-p", std::to_string(pid), "-ex", "thread apply all bt"},
               60s);
}

}  // namespace

TEST_CASE("toolchains: the clang targets have DWARF 5 and no .debug_aranges",
          "[integration][toolchains]") {
    // The premise of the file:line check below: should a compiler start writing aranges, this
    // says so instead of the other tests silently checking nothing new.
    for (const Toolchain& tc : kToolchains) {
        if (!tc.no_aranges) continue;
        for (bool fp : {true, false}) {
            std::string bin = target_bin(tc.target, fp);
            INFO(bin);
            RunResult sections = run({"readelf", "-SW", bin});
            REQUIRE(sections.exit_code == 0);
            CHECK(sections.out.find(".debug_info") != std::string::npos);
            CHECK(sections.out.find(".debug_aranges") == std::string::npos);
            RunResult info = run({"readelf", "--debug-dump=info", bin});
            REQUIRE(info.exit_code == 0);
            CHECK(std::regex_search(info.out, std::regex(R"(Version:\s+5\n)")));
        }
    }
}

TEST_CASE("toolchains: stacks names every frame gdb names, and stacks are complete",
          "[integration][toolchains]") {
    for (const Toolchain& tc : kToolchains) {
        for (bool fp : {true, false}) {
            DYNAMIC_SECTION(tc.label << (fp ? ", frame pointers" : ", no frame pointers")) {
                auto target = Target::start({target_bin(tc.target, fp)});
                auto fields = parse_fields(target->ready_line());
                const pid_t pid = target->pid();
                const pid_t cruncher = std::stoi(fields.at("cruncher"));
                const pid_t second = std::stoi(fields.at(tc.second));
                // Both tools look at the same instant: the target is job-control stopped while
                // pmprof and then gdb read it (pmprof leaves it stopped; so does gdb, which
                // attached to a stopped process).
                REQUIRE(::kill(pid, SIGSTOP) == 0);
                wait_stopped(*target);
                RunResult ours =
                    run({pmprof_bin(), "stacks", std::to_string(pid), "--no-group"}, 60s);
                RunResult gdb = gdb_backtraces(pid);
                REQUIRE(::kill(pid, SIGCONT) == 0);
                INFO("pmprof:\n" << ours.out << ours.err << "\ngdb:\n" << gdb.out << gdb.err);
                REQUIRE(ours.exit_code == 0);
                REQUIRE(gdb.exit_code == 0);
                auto theirs = parse_gdb(gdb.out);

                for (pid_t tid : {pid, cruncher, second}) {
                    std::vector<Frame> mine = parse_pmprof_thread(ours.out, tid);
                    INFO("thread " << tid << ", pmprof:\n"
                                   << describe(mine) << "gdb:\n"
                                   << describe(theirs[tid]));
                    REQUIRE(!mine.empty());
                    // Frame by frame, the frames in the target's own source (the ones both
                    // tools read from the target's DWARF; libc's names are not the question):
                    // the same function (same_function: parameters and the spelling of Rust
                    // generics aside) at the same line, inlined frames included.
                    std::vector<Frame> a = own_frames(theirs[tid], source_base(tc));
                    std::vector<Frame> b = own_frames(mine, source_base(tc));
                    // gdb understood the target: the cruncher is always in its own code three
                    // frames deep; the others may be stopped deep in the standard library.
                    CHECK(a.size() >= (tid == cruncher ? 3u : 1u));
                    CHECK(a.size() == b.size());
                    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
                        INFO("own frame " << i << ": gdb " << a[i].text << "\npmprof "
                                          << b[i].text);
                        CHECK(same_function(a[i].name, b[i].name, tc.rust));
                        // Lines of call sites. At the stopped pc itself gdb 13 may pick another
                        // row than addr2line and pmprof do (seen: the `++i` of Crunch::step in the
                        // g++ -fomit-frame-pointer build, line 50 for addr2line and pmprof, 40 for
                        // gdb); the profile test checks those lines against the source's markers.
                        if (!b[i].at_pc) CHECK(a[i].line == b[i].line);
                    }
                    // Complete: down to the thread's start (clone3 under start_thread) or, for
                    // the main thread, _start; no frame without a name.
                    for (const Frame& f : mine) {
                        INFO(f.text);
                        CHECK(f.name.find("+0x") == std::string::npos);
                        CHECK(f.name != "??");
                    }
                    CHECK(thread_block(ours.out, tid).find("truncated") == std::string::npos);
                    if (tid == pid) {
                        CHECK(mine.back().name == "_start");
                    } else {
                        CHECK(strip_params(mine.back().name).ends_with("clone3"));
                        REQUIRE(mine.size() >= 2);
                        CHECK(strip_params(mine[mine.size() - 2].name) == "start_thread");
                    }
                }
                // The hot thread is in Crunch::step, or in what it inlined.
                std::vector<Frame> hot =
                    own_frames(parse_pmprof_thread(ours.out, cruncher), source_base(tc));
                bool in_step = false;
                for (const Frame& f : hot) in_step |= f.name == hot_name(tc);
                CHECK(in_step);
                REQUIRE(left_running(pid) == "");
            }
        }
    }
}

namespace {

/// Whether `perf record` works here ("" when it does, else why not): perf may be missing, or
/// perf_event_open refused (perf_event_paranoid, a container's seccomp profile).
const std::string& perf_unavailable() {
    static const std::string why = [] {
        std::string data = temp_path("perf-probe.data");
        RunResult r =
            run({"perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", data, "--", "true"},
                60s);
        if (r.exit_code == 0) return std::string();
        return "perf record -e cpu-clock does not work here (exit " + std::to_string(r.exit_code) +
               "): " + r.err;
    }();
    return why;
}

struct Share {
    double hot = 0, total = 0;
    double percent() const { return total > 0 ? 100.0 * hot / total : 0; }
};

/// perf's share of the hot function in thread `tid`: its samples whose first user-space frame
/// (a sample taken in the kernel, e.g. while pmprof's ptrace stop is delivered, belongs to the
/// user code the thread was running, which is also what pmprof's cpu-time weights count) is in
/// a symbol named like Crunch::step in either mangling ("6Crunch4step": _ZN6Crunch4stepEv,
/// _ZN11rust_target6Crunch4step17h...E, _RNvMCs..._11rust_targetNtB2_6Crunch4step).
Share perf_share(const std::string& script, pid_t tid) {
    Share s;
    std::istringstream in(script);
    std::string line;
    bool in_sample = false, counted = false, leaf_found = false;
    static const std::regex kHeader(R"(^\s*(\d+)\s*$)"),
        kFrame(R"(^\s+[0-9a-f]+ (\S+) \(([^)]*)\))");
    std::smatch m;
    while (std::getline(in, line)) {
        if (std::regex_search(line, m, kHeader)) {
            in_sample = std::stoi(m[1]) == tid;
            counted = false;
            leaf_found = false;
            if (in_sample) s.total += 1;
            continue;
        }
        if (!in_sample || leaf_found || !std::regex_search(line, m, kFrame)) continue;
        if (std::string(m[2]).find("kernel") != std::string::npos) continue;
        leaf_found = true;
        if (!counted && std::string(m[1]).find("6Crunch4step") != std::string::npos) {
            s.hot += 1;
            counted = true;
        }
    }
    return s;
}

int64_t numeric_label(const pmprof::Sample& s, const std::string& key) {
    for (const pmprof::Label& l : s.labels)
        if (l.key == key) return l.num;
    return -1;
}

/// The function of a line of a location.
const pmprof::Function& fn_of(const pmprof::Profile& p, const pmprof::Line& l) {
    static const pmprof::Function none;
    const pmprof::Function* f = p.function(l.function_id);
    return f != nullptr ? *f : none;
}

/// `go tool pprof ARGS` run from `dir`.
RunResult go_tool_pprof_in(const std::string& dir, const std::vector<std::string>& args) {
    std::vector<std::string> argv{"sh", "-c", "cd \"$0\" && exec \"$@\"", dir};
    for (const std::string& a : go_tool_pprof_argv(args)) argv.push_back(a);
    return run(argv, 120s);
}

}  // namespace

TEST_CASE("toolchains: cpu profile names, lines, shares against perf, and -list from elsewhere",
          "[integration][toolchains]") {
    for (const Toolchain& tc : kToolchains) {
        for (bool fp : {true, false}) {
            DYNAMIC_SECTION(tc.label << (fp ? ", frame pointers" : ", no frame pointers")) {
                auto target = Target::start({target_bin(tc.target, fp)});
                auto fields = parse_fields(target->ready_line());
                const pid_t pid = target->pid();
                const pid_t cruncher = std::stoi(fields.at("cruncher"));
                const std::string src = source_of(tc);

                // perf on the same run, over the same two seconds as pmprof (both steady loops).
                const bool with_perf = perf_unavailable().empty();
                const std::string perf_data =
                    temp_path(std::string(tc.target) + (fp ? "-fp" : "-nofp") + ".perf");
                RunResult perf;
                std::thread perf_thread;
                // Joined on every way out of the section (a std::thread destroyed joinable aborts).
                struct Joiner {
                    std::thread& t;
                    ~Joiner() {
                        if (t.joinable()) t.join();
                    }
                } joiner{perf_thread};
                if (with_perf)
                    perf_thread = std::thread([&] {
                        perf = run({"perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g",
                                    "-p", std::to_string(pid), "-o", perf_data, "--", "sleep", "2"},
                                   60s);
                    });
                const std::string out =
                    temp_path(std::string(tc.target) + (fp ? "-fp" : "-nofp") + ".pb.gz");
                RunResult r = run({pmprof_bin(), "attach", std::to_string(pid), "-d", "2s", "-r",
                                   "999", "--mode", "cpu", "-o", out});
                if (perf_thread.joinable()) perf_thread.join();
                INFO("pmprof: " << r.err);
                REQUIRE(r.exit_code == 0);
                REQUIRE(left_running(pid) == "");

                auto decoded = pmprof::decode_pprof(slurp(out));
                REQUIRE(decoded.ok());
                const pmprof::Profile& p = *decoded;
                const int vi = p.sample_index();
                REQUIRE(vi >= 0);

                // No two distinct functions share a name: a name given to functions with two
                // different first lines is two functions. Instantiations of one generic (same
                // first line) count as one function, as they are one in the source (legacy Rust
                // mangling cannot tell them apart by name either). One function may appear with
                // two files at the same first line: pprof has no file per line, so a line-table
                // row of another file inside a function (rustc writes such rows into inlined
                // code) is kept in a Function of that file, as perf_data_converter does, rather
                // than shown at the wrong file's line number.
                // A function of the target's own source without a first line could not be
                // told from another of the same name: every one must have it (gdb knows it).
                for (const pmprof::Function& f : p.functions) {
                    if (f.filename != src) continue;
                    INFO("function " << f.name << " in " << f.filename);
                    CHECK(f.start_line > 0);
                }
                std::map<std::string, std::set<std::pair<int64_t, std::string>>> places;
                for (const pmprof::Function& f : p.functions)
                    if (!f.filename.empty() && f.start_line > 0)
                        places[f.name].insert({f.start_line, f.filename});
                for (const auto& [name, at] : places) {
                    std::string where;
                    std::set<int64_t> lines;
                    for (const auto& [line, file] : at) {
                        where += " " + file + ":" + std::to_string(line);
                        lines.insert(line);
                    }
                    INFO("function " << name << " at" << where);
                    CHECK(lines.size() == 1);
                }

                // The hot thread's cpu: the hot function's share against perf's, and its file:line
                // (absolute: comp_dir joined, so any directory finds it).
                Share ours;
                double with_file = 0, with_line = 0;
                bool chain = false;
                const int l_rotate = line_of(tc, "rotate"), l_mix = line_of(tc, "mix_calls_rotate"),
                          l_step = line_of(tc, "step_calls_mix");
                for (const pmprof::Sample& s : p.samples) {
                    if (numeric_label(s, "tid") != cruncher || s.location_ids.empty()) continue;
                    const double w = static_cast<double>(s.values[static_cast<size_t>(vi)]);
                    ours.total += w;
                    const pmprof::Location* leaf = p.location(s.location_ids[0]);
                    REQUIRE(leaf != nullptr);
                    // The hot function however spelled (same_function); that it is spelled
                    // "rust_target::Crunch::step" is checked with the other Rust names below.
                    if (leaf->lines.empty() ||
                        !same_function(hot_name(tc), fn_of(p, leaf->lines.back()).name, tc.rust))
                        continue;
                    ours.hot += w;
                    const pmprof::Line& outer = leaf->lines.back();
                    if (fn_of(p, outer).filename == src) with_file += w;
                    if (fn_of(p, outer).filename == src && outer.line > 0) with_line += w;
                    // The known inline chain, innermost first: rotate_bits at its rotate, in
                    // mix_round at its call of rotate_bits, in Crunch::step at its call of
                    // mix_round (Rust may have core's rotate_left inlined further in: before the
                    // chain).
                    const auto& ls = leaf->lines;
                    if (ls.size() >= 3) {
                        const pmprof::Line &a = ls[ls.size() - 3], &b = ls[ls.size() - 2];
                        chain |= strip_params(fn_of(p, a).name).ends_with("rotate_bits") &&
                                 a.line == l_rotate &&
                                 strip_params(fn_of(p, b).name).ends_with("mix_round") &&
                                 b.line == l_mix && outer.line == l_step;
                    }
                }
                INFO("pmprof: " << hot_name(tc) << " " << ours.hot << " of " << ours.total
                                << " ns of the cruncher");
                REQUIRE(ours.total > 0);
                CHECK(ours.percent() > 90);
                CHECK(with_file >= 0.99 * ours.hot);
                // rustc writes line-0 rows ("no line") into hot loops (addr2line: "?"), so only
                // the C++ targets must have a line nearly everywhere.
                if (!tc.rust) CHECK(with_line >= 0.95 * ours.hot);
                CHECK(chain);
                if (!with_perf) {
                    WARN("SKIPPED the comparison with perf: " << perf_unavailable());
                } else {
                    INFO("perf record: " << perf.err);
                    REQUIRE(perf.exit_code == 0);
                    RunResult script = run({"perf", "script", "-i", perf_data, "-F",
                                            "tid,ip,sym,dso", "--no-demangle"},
                                           60s);
                    REQUIRE(script.exit_code == 0);
                    Share theirs = perf_share(script.out, cruncher);
                    INFO("perf: " << theirs.hot << " of " << theirs.total
                                  << " samples of the cruncher");
                    REQUIRE(theirs.total >= 50);
                    CHECK(theirs.percent() >
                          90);  // perf was read right: the comparison means something
                    CHECK(std::abs(ours.percent() - theirs.percent()) <= 2.0);
                }

                if (!tc.rust) {
                    // Three lambdas, all hot, each its own function, with the names gdb gives
                    // them: found by their call sites (the line of their caller that calls them).
                    const int l_encode = line_of(tc, "send_calls_encode"),
                              l_checksum = line_of(tc, "send_calls_checksum"),
                              l_churn = line_of(tc, "churn_calls_lambda");
                    std::map<std::string, std::set<std::string>> by_marker;
                    for (const pmprof::Location& loc : p.locations)
                        for (size_t k = 0; k + 1 < loc.lines.size(); ++k) {
                            const pmprof::Line &l = loc.lines[k], &caller = loc.lines[k + 1];
                            const std::string called_by = strip_params(fn_of(p, caller).name);
                            const char* marker = nullptr;
                            if (called_by == "Mailbox::send_message" && caller.line == l_encode)
                                marker = "encode";
                            if (called_by == "Mailbox::send_message" && caller.line == l_checksum)
                                marker = "checksum";
                            if (called_by == "(anonymous namespace)::churn" &&
                                caller.line == l_churn)
                                marker = "churn";
                            if (marker != nullptr) by_marker[marker].insert(fn_of(p, l).name);
                        }
                    std::string names;
                    for (const auto& [marker, set] : by_marker)
                        for (const std::string& n : set) names += "\n  " + marker + ": " + n;
                    INFO("lambda functions:" << names);
                    REQUIRE(by_marker.size() == 3);
                    for (const auto& [marker, set] : by_marker) CHECK(set.size() == 1);
                    const std::string enc = *by_marker["encode"].begin(),
                                      chk = *by_marker["checksum"].begin(),
                                      churn = *by_marker["churn"].begin();
                    CHECK(enc != chk);
                    CHECK(enc != churn);
                    CHECK(chk != churn);
                    if (tc.gcc) {
                        CHECK(enc == "Mailbox::send_message(unsigned "
                                     "long)::{lambda()#1}::operator()() const");
                        CHECK(chk == "Mailbox::send_message(unsigned "
                                     "long)::{lambda()#2}::operator()() const");
                        CHECK(churn ==
                              "(anonymous namespace)::churn(unsigned long)::{lambda(unsigned "
                              "long)#1}::operator()(unsigned long) const");
                    } else {  // clang numbers the lambdas of a function $_N
                        CHECK(std::regex_match(
                            enc,
                            std::regex(
                                R"(Mailbox::send_message\(unsigned long\)::\$_\d+::operator\(\)\(\) const)")));
                        CHECK(std::regex_match(
                            chk,
                            std::regex(
                                R"(Mailbox::send_message\(unsigned long\)::\$_\d+::operator\(\)\(\) const)")));
                        CHECK(std::regex_match(
                            churn,
                            std::regex(
                                R"(\(anonymous namespace\)::churn\(unsigned long\)::\$_\d+::operator\(\)\(unsigned long\) const)")));
                    }
                } else {
                    // Rust names read as rustfilt and perf print them: no $LT$ escapes, no
                    // ::h<hash>, no undemangled _R/_ZN symbol.
                    static const std::regex kHash(R"(::h[0-9a-f]{16}\b)");
                    std::set<std::string> names;
                    for (const pmprof::Function& f : p.functions) {
                        INFO("function " << f.name << " (" << f.system_name << ")");
                        CHECK(f.name.find("$LT$") == std::string::npos);
                        CHECK(f.name.find("$u") == std::string::npos);
                        CHECK_FALSE(std::regex_search(f.name, kHash));
                        CHECK_FALSE(f.name.starts_with("_R"));
                        CHECK_FALSE(f.name.starts_with("_ZN"));
                        names.insert(f.name);
                    }
                    std::string all;
                    for (const std::string& n : names) all += "\n  " + n;
                    INFO("functions:" << all);
                    const bool v0 = std::string(tc.target).ends_with("-v0");
                    CHECK(names.count("rust_target::Crunch::step") == 1);
                    CHECK(names.count("rust_target::crunch_loop") == 1);
                    CHECK(names.count("<rust_target::Item as core::ops::drop::Drop>::drop") == 1);
                    CHECK(names.count(v0 ? "<rust_target::Mixer<u32> as rust_target::Stage>::run"
                                         : "<rust_target::Mixer<T> as rust_target::Stage>::run") ==
                          1);
                    CHECK(names.count(v0 ? "rust_target::drive::<rust_target::Mixer<u32>>"
                                         : "rust_target::drive") == 1);
                    bool vec_drop = false;
                    for (const std::string& n : names)
                        vec_drop |= n.starts_with("<alloc::vec::Vec<") &&
                                    n.ends_with(" as core::ops::drop::Drop>::drop");
                    CHECK(vec_drop);
                }

                // go tool pprof -list from /tmp: per-line costs of the hot function's source.
                RunResult list = go_tool_pprof_in("/tmp", {"-list", "Crunch>?::step", out});
                INFO("go tool pprof -list (in /tmp):\n" << list.out << list.err);
                CHECK(list.exit_code == 0);
                CHECK(list.out.find("ROUTINE") != std::string::npos);
                CHECK(list.out.find(" in " + src) != std::string::npos);
                // "  FLAT  CUM  LINE: source": the call of mix_round carries the time.
                std::regex cost_line("\\n\\s+(\\S+)\\s+(\\S+)\\s+" + std::to_string(l_step) +
                                     ":\\s+[^\\n]*mix_round");
                std::smatch m;
                const bool listed = std::regex_search(list.out, m, cost_line);
                CHECK(listed);
                if (listed) CHECK(m[2] != ".");
            }
        }
    }
}

TEST_CASE("toolchains: what counts as the same name as gdb's", "[unit][toolchains]") {
    // C++: parameters and qualifiers aside.
    CHECK(same_function("Crunch::step", "Crunch::step()", false));
    CHECK(same_function("(anonymous namespace)::churn",
                        "(anonymous namespace)::churn(unsigned long)", false));
    CHECK(same_function("Mailbox::send_message(unsigned long)::$_0::operator()() const",
                        "Mailbox::send_message(unsigned long)::$_0::operator()() const", false));
    CHECK(same_function("operator()",
                        "Mailbox::send_message(unsigned long)::{lambda()#1}::operator()() const",
                        false));
    CHECK_FALSE(same_function("Crunch::step", "crunch_loop()", false));
    CHECK_FALSE(same_function("Crunch::step", "toolchain_target+0x14ab", false));
    CHECK_FALSE(same_function("operator()", "(anonymous namespace)::operator()", false));
    CHECK_FALSE(same_function("operator()",
                              "churn::{lambda at toolchain_target.cpp:77}::operator()", false));
    CHECK_FALSE(same_function("Mailbox::send_message(unsigned long)::$_0::operator()() const",
                              "Mailbox::send_message(unsigned long)::$_1::operator()() const",
                              false));
    // Rust: generics, impl blocks and closure numbers as each side can say them.
    CHECK(same_function("rust_target::Crunch::step", "rust_target::Crunch::step", true));
    CHECK(same_function("rust_target::Crunch::step", "<rust_target::Crunch>::step", true));
    CHECK(same_function("rust_target::drive<rust_target::Mixer<u32>>", "rust_target::drive", true));
    CHECK(same_function("rust_target::drive<rust_target::Mixer<u32>>",
                        "rust_target::drive::<rust_target::Mixer<u32>>", true));
    CHECK(same_function("rust_target::{impl#1}::run<u32>",
                        "<rust_target::Mixer<T> as rust_target::Stage>::run", true));
    CHECK(same_function("rust_target::{impl#2}::drop",
                        "<rust_target::Item as core::ops::drop::Drop>::drop", true));
    CHECK(same_function("rust_target::main::{closure#0}", "rust_target::main::{{closure}}", true));
    CHECK(same_function("rust_target::main::{closure#0}", "rust_target::main::{closure#0}", true));
    CHECK_FALSE(
        same_function("rust_target::main::{closure#0}", "rust_target::main::{closure#1}", true));
    CHECK_FALSE(same_function("rust_target::Crunch::step",
                              "rust_target::Crunch::step::h0123456789abcdef", true));
    CHECK_FALSE(same_function("rust_target::Crunch::step",
                              "_RNvMCsdkt7z8fvNUK_11rust_targetNtB2_6Crunch4step", true));
    CHECK_FALSE(same_function("rust_target::{impl#1}::run<u32>",
                              "<rust_target::Item as core::ops::drop::Drop>::drop", true));
    CHECK_FALSE(
        same_function("rust_target::crunch_loop", "std::thread::lifecycle::spawn_unchecked", true));
}
