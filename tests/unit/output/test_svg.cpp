// Flame graph SVG: golden file, layout arithmetic, escaping of hostile names, and a real
// browser (headless Chromium) rendering it, running its script, zooming and searching.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>

#include "../../support/harness.h"
#include "../../support/report_fixtures.h"
#include "pmprof/output/svg.h"

using namespace pmprof;
using namespace pmprof::test;

namespace {

struct Frame {
    std::string name;
    double x = 0, width = 0;
    int depth = 0;
    std::string cls;
};

std::string unescape(std::string s) {
    for (auto [from, to] :
         {std::pair{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&amp;", "&"}})
        for (size_t at; (at = s.find(from)) != std::string::npos;)
            s.replace(at, std::strlen(from), to);
    return s;
}

// The frames of an SVG, as the writer emits them or as a browser serializes its DOM.
std::vector<Frame> frames_of(const std::string& svg) {
    std::regex g(R"re(<g class="(f[^"]*)" data-i="\d+" data-p="-?\d+" )re"
                 R"re(data-d="(\d+)" data-n="([^"]*)"[^>]*>)re"
                 R"re(<title>[^<]*</title><rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)")re");
    std::vector<Frame> out;
    for (std::sregex_iterator it(svg.begin(), svg.end(), g), end; it != end; ++it)
        out.push_back(Frame{unescape((*it)[3]), std::stod((*it)[4]), std::stod((*it)[5]),
                            std::stoi((*it)[2]), (*it)[1]});
    return out;
}

const Frame* find(const std::vector<Frame>& frames, const std::string& name, int depth) {
    for (const Frame& f : frames)
        if (f.name == name && f.depth == depth) return &f;
    return nullptr;
}

// Chromium's serialized DOM of `url` after its scripts ran.
RunResult dump_dom(const std::string& url) {
    std::string profile_dir = temp_path("chromium-profile");
    return run({"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--user-data-dir=" + profile_dir, "--dump-dom", url},
               std::chrono::seconds(90));
}

}  // namespace

TEST_CASE("flame graph SVG matches the golden file", "[unit][svg]") {
    std::string out = write_flamegraph_svg(fixture_profile());
    CHECK(out == golden("fixture.svg", out));
}

TEST_CASE("flame graph widths are proportional to values, children from the left edge",
          "[unit][svg]") {
    SvgOptions opt;
    opt.width = 1000;
    std::string out = write_flamegraph_svg(fixture_profile(), opt);
    auto frames = frames_of(out);
    const Frame* all = find(frames, "all", 0);
    const Frame* main = find(frames, "main", 1);
    const Frame* compute = find(frames, "compute(int)", 2);
    const Frame* helper = find(frames, "helper<int>", 3);
    const Frame* memcpy = find(frames, "memcpy", 3);
    REQUIRE(all);
    REQUIRE(main);
    REQUIRE(compute);
    REQUIRE(helper);
    REQUIRE(memcpy);
    CHECK(all->width == Approx(980));  // 1000 - 2 * 10 padding
    CHECK(main->width == Approx(980));
    CHECK(compute->width == Approx(980.0 * 8 / 9));  // default type cpu: 80 of 90 ms
    CHECK(helper->width == Approx(980.0 * 3 / 9));
    CHECK(memcpy->width == Approx(980.0 * 2 / 9));
    // Alphabetical: app+0x1040 first at the left edge, then compute(int).
    CHECK(find(frames, "app+0x1040", 2)->x == Approx(10));
    CHECK(compute->x == Approx(10 + 980.0 / 9));
    CHECK(helper->x > compute->x);
    CHECK(out.find("<title>compute(int) in app (80.00 ms, 88.89%)</title>") != std::string::npos);
    CHECK(out.find("cpu: total 90.00 ms") != std::string::npos);
}

TEST_CASE("flame graph selects the sample type and colors frames by module", "[unit][svg]") {
    SvgOptions opt;
    opt.sample_index = 0;
    std::string out = write_flamegraph_svg(fixture_profile(), opt);
    CHECK(out.find("samples: total 9 samples") != std::string::npos);
    std::regex fill(
        R"re(data-n="([^"]+)"[^>]*><title>[^<]*</title><rect [^>]*fill="hsl\((\d+),)re");
    std::map<std::string, std::string> hue;
    for (std::sregex_iterator it(out.begin(), out.end(), fill), end; it != end; ++it)
        hue[(*it)[1]] = (*it)[2];
    CHECK(hue["main"] == hue["compute(int)"]);  // both in /usr/bin/app
    CHECK(hue["memcpy"] != hue["main"]);        // libc
}

TEST_CASE("flame graph escapes names and survives invalid UTF-8 and empty profiles",
          "[unit][svg]") {
    Profile p;
    p.sample_types = {{"samples", "count"}};
    p.functions = {Function{1, "a<b>&\"c\" ]]> \x01\xff\xc3", "", "", 0}};
    p.locations = {Location{1, 0, 0x10, {Line{1, 1}}}};
    p.samples = {Sample{{1}, {4}, {}}, Sample{{1}, {-3}, {}}, Sample{{1}, {0}, {}}};
    std::string out = write_flamegraph_svg(p);
    CHECK(out.find("a&lt;b&gt;&amp;&quot;c&quot; ]]&gt; ???") != std::string::npos);
    CHECK(out.find("\x01") == std::string::npos);
    auto frames = frames_of(out);
    REQUIRE(frames.size() == 2);  // all + the one function; negative and zero samples left out
    CHECK(out.find("total 4 samples") != std::string::npos);

    std::string empty = write_flamegraph_svg(Profile{});
    CHECK(empty.find("(no samples)") != std::string::npos);
    CHECK(frames_of(empty).size() == 1);
}

TEST_CASE("flame graph frames narrower than 0.1 px are not drawn", "[unit][svg]") {
    Profile p;
    p.sample_types = {{"samples", "count"}};
    p.functions = {Function{1, "big", "", "", 0}, Function{2, "tiny", "", "", 0}};
    p.locations = {Location{1, 0, 0x10, {Line{1, 1}}}, Location{2, 0, 0x20, {Line{2, 1}}}};
    p.samples = {Sample{{1}, {1000000}, {}}, Sample{{2}, {1}, {}}};
    std::string out = write_flamegraph_svg(p);
    CHECK(out.find("data-n=\"big\"") != std::string::npos);
    CHECK(out.find("data-n=\"tiny\"") == std::string::npos);
}

TEST_CASE("flame graph renders in headless Chromium: frames in the DOM, script ran, zoom and "
          "search work",
          "[integration][svg]") {
    REQUIRE(access("/usr/bin/chromium", X_OK) == 0);  // Debian package chromium (TEST_PACKAGES)
    std::string path = temp_path("fixture.svg");
    std::ofstream(path) << write_flamegraph_svg(fixture_profile());

    RunResult plain = dump_dom("file://" + path);
    REQUIRE(plain.exit_code == 0);
    INFO(plain.out.substr(0, 2000));
    CHECK(plain.out.find("data-ready=\"1\"") != std::string::npos);  // the script ran to the end
    auto frames = frames_of(plain.out);
    std::set<std::string> names;
    for (const Frame& f : frames) names.insert(f.name);
    CHECK(names == std::set<std::string>{"all", "main", "compute(int)", "helper<int>", "memcpy",
                                         "app+0x1040"});
    CHECK(plain.out.find(">helper&lt;int&gt;</text>") != std::string::npos);  // labels fitted

    // #z=3 zooms to the first compute(int) frame: it spans the full width, main is a dimmed
    // parent, app+0x1040 (a sibling) is hidden.
    RunResult zoomed = dump_dom("file://" + path + "#z=3");
    REQUIRE(zoomed.exit_code == 0);
    auto zf = frames_of(zoomed.out);
    const Frame* compute = find(zf, "compute(int)", 2);
    REQUIRE(compute);
    CHECK(compute->x == Approx(10));
    CHECK(compute->width == Approx(1180));
    CHECK(find(zf, "main", 1)->cls == "f parent");
    CHECK(find(zf, "app+0x1040", 2)->cls == "f hidden");
    CHECK(zoomed.out.find("id=\"unzoom\" class=\"button\"") != std::string::npos);

    // #s=^mem highlights memcpy and reports its share.
    RunResult searched = dump_dom("file://" + path + "#s=%5Emem");
    REQUIRE(searched.exit_code == 0);
    CHECK(searched.out.find("Matched: 22.2%") != std::string::npos);
    CHECK(searched.out.find("fill=\"rgb(230,0,230)\"") != std::string::npos);
}

TEST_CASE("flame graph search highlight is far from every module colour", "[unit][svg]") {
    // Thirty modules, each with one frame under the root.
    Profile p;
    p.sample_types = {{"samples", "count"}};
    for (uint64_t i = 1; i <= 30; ++i) {
        p.mappings.push_back(Mapping{i, i << 32, (i << 32) + 0x1000, 0,
                                     "/lib/libm" + std::to_string(i) + ".so", "", true, false,
                                     false, false});
        p.functions.push_back(Function{i, "f" + std::to_string(i), "", "", 0});
        p.locations.push_back(Location{i, i, (i << 32) + 0x10, {Line{i, 0}}});
        p.samples.push_back(Sample{{i}, {1}, {}});
    }
    const std::string out = write_flamegraph_svg(p);
    // The highlight, as the script sets it, in hue degrees.
    std::smatch m;
    REQUIRE(std::regex_search(out, m, std::regex(R"re(hit \? "rgb\((\d+),(\d+),(\d+)\)")re")));
    const double r = std::stod(m[1]) / 255, g = std::stod(m[2]) / 255, b = std::stod(m[3]) / 255;
    const double hi = std::max({r, g, b}), lo = std::min({r, g, b});
    REQUIRE(hi - lo > 0.5);  // a saturated colour, not a grey the frames without module use
    double hue = hi == r   ? 60 * std::fmod((g - b) / (hi - lo), 6.0)
                 : hi == g ? 60 * ((b - r) / (hi - lo) + 2)
                           : 60 * ((r - g) / (hi - lo) + 4);
    if (hue < 0) hue += 360;
    std::set<int> hues;
    const std::regex fill(R"re(fill="hsl\((\d+),)re");
    for (std::sregex_iterator it(out.begin(), out.end(), fill), end; it != end; ++it) {
        const int h = std::stoi((*it)[1]);
        const double apart = std::min(std::fabs(h - hue), 360 - std::fabs(h - hue));
        INFO("module hue " << h << ", highlight hue " << hue);
        CHECK(apart >= 60);
        hues.insert(h);
    }
    CHECK(hues.size() >= 25);  // the modules still get colours of their own
}
