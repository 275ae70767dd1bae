// The tutorials (docs/tutorial.md and its Chinese translation docs/tutorial.zh.md) cannot rot:
// every ```console block is run, in order, in one bash session, against the real example, and
// what each block printed must contain what the block says it shows.
//
// A block is written as a terminal session: "$ " starts a command (a line ending in '\' goes on
// to the next one), every other line is what the command printed. HTML comments right before the
// fence (invisible on GitHub) say what to check:
//
//   <!-- test expect: Showing nodes | procmsg() | re:^\s+flat\s+flat% -->
//       each item (a fixed string, or with "re:" an ECMAScript regex matched against each line)
//       must be in what the block's commands printed now AND in the output the doc shows, so the
//       doc can neither show something the command no longer prints nor claim a row it lacks;
//   <!-- test exit: 0 3 --> every command of the block exits with one of these (default: 0);
//   <!-- test skip: why --> the block is not run (only the build command and the KCachegrind GUI).
//
// A command ending in '&' runs in the background (alone in its block) with its output in a file;
// the session waits until the block's fixed expect strings are in it (bounded). The ports 6060 and
// 8080 of the doc's commands are replaced by free ones, so the test runs beside a real pmprof
// serve or other tests. Commands run with build/ and build/examples/ first in PATH, in a private
// directory (TMPDIR too), and the session ends by killing and reaping whatever it left running.
//
// The Chinese and English tutorials must run the same commands with the same checks and show the
// same output; only the English session is executed. Every pmprof option written after
// "pmprof VERB" in the code of the tutorials, the README and the other docs must exist in that
// verb's --help.
//
// To update the shown output after a change: PMPROF_TUTORIAL_OUTPUT=/tmp/out.txt
// build/pmprof-tests "tutorial: every command*" writes what each block printed.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../support/harness.h"

using namespace pmprof::test;

namespace {

struct Block {
    int line = 0;                       // 1-based line of the opening fence
    std::vector<std::string> commands;  // without "$ "; continuation lines kept with '\n'
    std::string shown;                  // what the doc says the commands printed
    std::vector<std::string> expects;
    std::set<int> exit_codes{0};
    std::optional<std::string> skip;
};

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t");
    if (b == std::string::npos) return "";
    size_t e = s.find_last_not_of(" \t");
    return s.substr(b, e - b + 1);
}

std::vector<std::string> split_items(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t bar = s.find(" | ", start);
        std::string item =
            trim(s.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
        if (!item.empty()) out.push_back(item);
        if (bar == std::string::npos) break;
        start = bar + 3;
    }
    return out;
}

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

// The ```console blocks of a tutorial, with their directives. Throws on a malformed directive or
// block, and on a runnable-looking block that would escape the test (```sh, ```bash, or a
// "$ " line in any other fence).
std::vector<Block> parse_tutorial(const std::string& path) {
    std::vector<std::string> lines = read_lines(path);
    std::vector<Block> blocks;
    Block pending;
    bool has_pending = false;
    for (size_t i = 0; i < lines.size(); ++i) {
        const std::string& l = lines[i];
        std::string where = path + ":" + std::to_string(i + 1);
        if (l.rfind("<!-- test ", 0) == 0) {
            if (l.size() < 14 || l.substr(l.size() - 3) != "-->")
                throw std::runtime_error(where + ": a test directive is one line ending in -->");
            std::string body = trim(l.substr(10, l.size() - 13));
            has_pending = true;
            if (body.rfind("expect:", 0) == 0) {
                for (auto& item : split_items(body.substr(7))) pending.expects.push_back(item);
            } else if (body.rfind("exit:", 0) == 0) {
                std::istringstream codes(body.substr(5));
                pending.exit_codes.clear();
                for (int code; codes >> code;) pending.exit_codes.insert(code);
                if (pending.exit_codes.empty())
                    throw std::runtime_error(where + ": exit needs the allowed exit codes");
            } else if (body.rfind("skip:", 0) == 0) {
                pending.skip = trim(body.substr(5));
                if (pending.skip->empty())
                    throw std::runtime_error(where + ": skip needs a reason");
            } else {
                throw std::runtime_error(where + ": unknown test directive: " + body);
            }
            continue;
        }
        if (l.rfind("```", 0) != 0) {
            if (has_pending && !trim(l).empty())
                throw std::runtime_error(where + ": test directives must come right before a "
                                                 "```console block");
            continue;
        }
        std::string lang = trim(l.substr(3));
        size_t end = i + 1;
        while (end < lines.size() && lines[end].rfind("```", 0) != 0) ++end;
        if (end == lines.size()) throw std::runtime_error(where + ": unclosed code block");
        if (lang == "sh" || lang == "bash" || lang == "shell" || lang == "shell-session")
            throw std::runtime_error(where + ": shell commands go in ```console blocks (run by " +
                                     "this test), not ```" + lang);
        if (lang != "console") {
            if (has_pending)
                throw std::runtime_error(where + ": test directives on a ```" + lang + " block");
            for (size_t k = i + 1; k < end; ++k) {
                if (lines[k].rfind("$ ", 0) == 0)
                    throw std::runtime_error(path + ":" + std::to_string(k + 1) +
                                             ": a \"$ \" command outside a ```console block");
            }
            i = end;
            continue;
        }
        Block b = has_pending ? pending : Block{};
        b.line = static_cast<int>(i + 1);
        bool continued = false;
        for (size_t k = i + 1; k < end; ++k) {
            const std::string& c = lines[k];
            if (continued) {
                b.commands.back() += "\n" + c;
                continued = !c.empty() && c.back() == '\\';
            } else if (c.rfind("$ ", 0) == 0) {
                b.commands.push_back(c.substr(2));
                continued = !c.empty() && c.back() == '\\';
            } else {
                b.shown += c + "\n";
            }
        }
        if (b.commands.empty())
            throw std::runtime_error(where + ": a ```console block without a \"$ \" command");
        for (const auto& cmd : b.commands) {
            if (trim(cmd).back() == '&' && b.commands.size() != 1)
                throw std::runtime_error(where + ": a background command must be alone in its "
                                                 "block");
        }
        blocks.push_back(std::move(b));
        pending = Block{};
        has_pending = false;
        i = end;
    }
    return blocks;
}

bool is_background(const std::string& cmd) {
    std::string t = trim(cmd);
    return !t.empty() && t.back() == '&' && (t.size() < 2 || t[t.size() - 2] != '&');
}

// Whether `text` has `item`: a fixed string, or "re:REGEX" matching one of its lines.
bool has_item(const std::string& text, const std::string& item) {
    if (item.rfind("re:", 0) != 0) return text.find(item) != std::string::npos;
    std::regex re(item.substr(3));
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (std::regex_search(line, re)) return true;
    }
    return false;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
    return s;
}

std::string single_quoted(const std::string& s) { return "'" + replace_all(s, "'", "'\\''") + "'"; }

// A loopback port nothing listens on now (bind to port 0, read it, close).
int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    close(fd);
    return ntohs(addr.sin_port);
}

std::string tutorial_path(const std::string& name) { return source_dir() + "/docs/" + name; }

std::string excerpt(const std::string& s, size_t max = 4000) {
    return s.size() <= max
               ? s
               : s.substr(0, max) + "\n... (" + std::to_string(s.size() - max) + " more bytes)";
}

// What one command printed and how it exited, from the session's markers.
struct Section {
    std::string out;
    std::optional<int> rc;
};

// The bash session for the runnable blocks: markers around every command.
std::string session_script(const std::vector<Block>& blocks, const std::string& work,
                           const std::map<std::string, std::string>& ports) {
    std::string s = "cd " + single_quoted(work) + " || exit 99\n";
    s += "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n";
    for (size_t b = 0; b < blocks.size(); ++b) {
        if (blocks[b].skip) continue;
        for (size_t c = 0; c < blocks[b].commands.size(); ++c) {
            std::string cmd = blocks[b].commands[c];
            for (const auto& [from, to] : ports) cmd = replace_all(cmd, from, to);
            std::string id = std::to_string(b) + " " + std::to_string(c);
            s += "printf '\\n@@tut " + id + "@@\\n'\n";
            if (is_background(cmd)) {
                std::string file = single_quoted(work + "/.bg-" + std::to_string(b));
                s += ">" + file + " 2>&1 " + cmd + "\n";
                std::string all = "true";
                for (std::string e : blocks[b].expects) {
                    if (e.rfind("re:", 0) == 0) continue;
                    for (const auto& [from, to] : ports) e = replace_all(e, from, to);
                    all += " && grep -qF -e " + single_quoted(e) + " " + file;
                }
                s += "for _tut in $(seq 300); do if " + all + "; then break; fi; sleep 0.1; done\n";
                s += "cat " + file + "\n";
                s += "printf '\\n@@tut-rc " + id + " 0@@\\n'\n";
            } else {
                s += "{ " + cmd + "\n} 2>&1 </dev/null\n";
                s += "printf '\\n@@tut-rc " + id + " %d@@\\n' \"$?\"\n";
            }
        }
    }
    return s;
}

std::map<std::pair<int, int>, Section> parse_session(const std::string& out) {
    std::map<std::pair<int, int>, Section> sections;
    std::istringstream in(out);
    std::string line;
    Section* current = nullptr;
    std::regex begin(R"(^@@tut (\d+) (\d+)@@$)"), end(R"(^@@tut-rc (\d+) (\d+) (\d+)@@$)");
    std::smatch m;
    while (std::getline(in, line)) {
        if (std::regex_match(line, m, begin)) {
            current = &sections[{std::stoi(m[1]), std::stoi(m[2])}];
        } else if (std::regex_match(line, m, end)) {
            sections[{std::stoi(m[1]), std::stoi(m[2])}].rc = std::stoi(m[3]);
            current = nullptr;
        } else if (current) {
            current->out += line + "\n";
        }
    }
    return sections;
}

std::string block_id(const std::string& file, const Block& b) {
    return file + ":" + std::to_string(b.line) + " ($ " + b.commands.front() + ")";
}

// ---- options against --help ----------------------------------------------------------------

// Code in a markdown file: inline `spans`, the lines of fenced blocks, and of ```console blocks
// only the commands (what they print may quote a command line, e.g. a pprof comment).
std::vector<std::string> code_pieces(const std::string& path) {
    std::vector<std::string> pieces;
    bool fenced = false, console = false;
    for (const auto& l : read_lines(path)) {
        if (l.rfind("```", 0) == 0) {
            fenced = !fenced;
            console = fenced && trim(l.substr(3)) == "console";
            continue;
        }
        if (fenced) {
            if (!console)
                pieces.push_back(l);
            else if (l.rfind("$ ", 0) == 0)
                pieces.push_back(l.substr(2));
            continue;
        }
        for (size_t a = l.find('`'); a != std::string::npos;) {
            size_t b = l.find('`', a + 1);
            if (b == std::string::npos) break;
            pieces.push_back(l.substr(a + 1, b - a - 1));
            a = l.find('`', b + 1);
        }
    }
    return pieces;
}

// The options written after "pmprof VERB" in a piece of code, up to the end of that command.
std::vector<std::pair<std::string, std::string>> mentioned_options(const std::string& piece) {
    std::vector<std::pair<std::string, std::string>> out;
    static const std::regex verb_re(
        R"((?:^|[\s/(])pmprof\s+(stacks|attach|record|heap|report|serve|doctor)\b)");
    static const std::regex option_re(R"((?:^|\s)(--[a-z][a-z0-9-]*|-[a-zA-Z])(?=[\s=,]|$))");
    for (auto it = std::sregex_iterator(piece.begin(), piece.end(), verb_re);
         it != std::sregex_iterator(); ++it) {
        std::string rest = piece.substr(static_cast<size_t>(it->position(0) + it->length(0)));
        for (const char* stop : {"|", ";", "&&", " -- ", "#", "go tool", ">"}) {
            size_t at = rest.find(stop);
            if (at != std::string::npos) rest = rest.substr(0, at);
        }
        for (auto o = std::sregex_iterator(rest.begin(), rest.end(), option_re);
             o != std::sregex_iterator(); ++o)
            out.emplace_back((*it)[1].str(), (*o)[1].str());
    }
    return out;
}

bool help_has(const std::string& help, const std::string& option) {
    // CLI11 lists "-d,--duration TEXT": a long option ends at a non-name character, a short one
    // is followed by ',' or ' '.
    for (size_t at = help.find(option); at != std::string::npos; at = help.find(option, at + 1)) {
        size_t after = at + option.size();
        char prev = at == 0 ? ' ' : help[at - 1];
        char next = after < help.size() ? help[after] : ' ';
        if (prev != ' ' && prev != ',') continue;
        if (std::isalnum(static_cast<unsigned char>(next)) || next == '-' || next == '_') continue;
        return true;
    }
    return false;
}

}  // namespace

TEST_CASE("tutorial: the English and Chinese tutorials run the same commands and show the same",
          "[integration][tutorial]") {
    auto en = parse_tutorial(tutorial_path("tutorial.md"));
    auto zh = parse_tutorial(tutorial_path("tutorial.zh.md"));
    REQUIRE(en.size() >= 10);
    REQUIRE(zh.size() == en.size());
    for (size_t i = 0; i < en.size(); ++i) {
        INFO("block " << i << ": tutorial.md:" << en[i].line << ", tutorial.zh.md:" << zh[i].line);
        CHECK(zh[i].commands == en[i].commands);
        CHECK(zh[i].expects == en[i].expects);
        CHECK(zh[i].exit_codes == en[i].exit_codes);
        CHECK(zh[i].skip.has_value() == en[i].skip.has_value());
        CHECK(zh[i].shown == en[i].shown);
    }
    // Each shown output carries what its block checks, in both files.
    for (const auto* doc : {&en, &zh}) {
        for (const auto& b : *doc) {
            for (const auto& e : b.expects) {
                INFO(block_id(doc == &en ? "tutorial.md" : "tutorial.zh.md", b) << " shows " << e);
                CHECK(has_item(b.shown, e));
            }
        }
    }
    // Only building and the GUI are not run.
    size_t skipped = 0;
    for (const auto& b : en) skipped += b.skip.has_value();
    CHECK(skipped <= 2);
}

TEST_CASE("tutorial: every command of the tutorial runs and prints what the tutorial shows",
          "[integration][tutorial]") {
    auto blocks = parse_tutorial(tutorial_path("tutorial.md"));
    std::string work = temp_path("tutorial");
    std::filesystem::create_directories(work + "/tmp");
    std::filesystem::create_directories(work + "/home");
    std::map<std::string, std::string> ports = {{"6060", std::to_string(free_port())},
                                                {"8080", std::to_string(free_port())}};
    if (ports["6060"] == ports["8080"]) ports["8080"] = std::to_string(free_port());
    std::string script_path = work + "/session.sh";
    { std::ofstream(script_path) << session_script(blocks, work, ports); }
    const char* path = std::getenv("PATH");
    std::string home = work + "/home";
    auto t0 = std::chrono::steady_clock::now();
    RunResult r = run(
        {"env",
         "PATH=" + build_dir() + ":" + build_dir() + "/examples:" + (path ? path : "/usr/bin:/bin"),
         "TMPDIR=" + work + "/tmp", "HOME=" + home, "GOFLAGS=", "GOPATH=/usr/share/gocode",
         "GO111MODULE=off", "GOCACHE=" + home + "/gocache", "PPROF_TMPDIR=" + home,
         "PPROF_BINARY_PATH=" + home, "LC_ALL=C.UTF-8", "bash", script_path},
        std::chrono::seconds(400));
    auto secs =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0)
            .count();
    INFO("session took " << secs << " s; stderr: " << excerpt(r.err));
    auto sections = parse_session(r.out);
    // PMPROF_TUTORIAL_OUTPUT=FILE writes what every block printed in this run, for updating the
    // output the tutorials show after a change (paste it into both, cut long parts with "...").
    if (const char* dump = std::getenv("PMPROF_TUTORIAL_OUTPUT"); dump && *dump) {
        std::ofstream out(dump);
        for (size_t b = 0; b < blocks.size(); ++b) {
            out << "=== docs/tutorial.md:" << blocks[b].line << "\n";
            for (size_t c = 0; c < blocks[b].commands.size(); ++c) {
                out << "$ " << blocks[b].commands[c] << "\n";
                auto it = sections.find({static_cast<int>(b), static_cast<int>(c)});
                if (it == sections.end()) continue;
                std::string text = it->second.out;  // with the doc's ports, as the doc shows
                for (const auto& [from, to] : ports) text = replace_all(text, to, from);
                out << text;
            }
        }
    }
    REQUIRE_FALSE(r.timed_out);
    for (size_t b = 0; b < blocks.size(); ++b) {
        const Block& blk = blocks[b];
        if (blk.skip) continue;
        std::string printed;
        for (size_t c = 0; c < blk.commands.size(); ++c) {
            auto it = sections.find({static_cast<int>(b), static_cast<int>(c)});
            INFO(block_id("docs/tutorial.md", blk) << ": $ " << blk.commands[c]);
            REQUIRE(it != sections.end());
            INFO("it printed:\n" << excerpt(it->second.out));
            REQUIRE(it->second.rc.has_value());
            CHECK(blk.exit_codes.count(*it->second.rc) == 1);
            printed += it->second.out;
        }
        for (std::string e : blk.expects) {
            for (const auto& [from, to] : ports) e = replace_all(e, from, to);
            INFO(block_id("docs/tutorial.md", blk) << " should print: " << e << "\nit printed:\n"
                                                   << excerpt(printed));
            CHECK(has_item(printed, e));
        }
    }
}

TEST_CASE("tutorial: every pmprof option in the tutorials, the README and docs/ exists",
          "[integration][tutorial]") {
    std::map<std::string, std::string> helps;
    RunResult global = run({pmprof_bin(), "--help"});
    REQUIRE(global.exit_code == 0);
    size_t checked = 0;
    std::set<std::pair<std::string, std::string>> seen;  // (doc, "verb option")
    // README.md and every page of docs/, so a page added later is checked too.
    std::vector<std::string> docs = {"README.md"};
    for (const auto& entry : std::filesystem::directory_iterator(source_dir() + "/docs")) {
        if (entry.path().extension() == ".md")
            docs.push_back("docs/" + entry.path().filename().string());
    }
    std::sort(docs.begin(), docs.end());
    for (const std::string& doc : docs) {
        for (const auto& piece : code_pieces(source_dir() + "/" + doc)) {
            for (const auto& [verb, option] : mentioned_options(piece)) {
                if (!helps.count(verb)) {
                    RunResult h = run({pmprof_bin(), verb, "--help"});
                    INFO("pmprof " << verb << " --help: " << h.err);
                    REQUIRE(h.exit_code == 0);
                    helps[verb] = h.out;
                }
                INFO(doc << ": `" << piece << "`: pmprof " << verb << " " << option);
                CHECK((help_has(helps[verb], option) || help_has(global.out, option)));
                seen.emplace(doc, verb + " " + option);
                ++checked;
            }
        }
    }
    CHECK(checked >= 20);
    // The extraction reaches the commands of both tutorials' leak hunt by allocation site and of
    // the page that documents it.
    for (const char* doc : {"docs/tutorial.md", "docs/tutorial.zh.md"}) {
        for (const char* used :
             {"heap --sites", "heap --max-overhead", "heap --base", "report --list"}) {
            INFO(doc << " mentions pmprof " << used);
            CHECK(seen.count({doc, used}) == 1);
        }
    }
    CHECK(seen.count({"docs/heap-sites.md", "heap --sites"}) == 1);
}
