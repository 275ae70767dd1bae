// ProfileBuilder with a fake Symbolizer: interning and dedup, labels, inline chains, pcs without
// symbol or mapping, truncated and synthetic stacks, mappings and their has_* flags.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "pmprof/profile/labels.h"
#include "pmprof/profile/profile.h"

using namespace pmprof;

namespace {

class FakeSymbolizer : public Symbolizer {
  public:
    std::map<uint64_t, SymbolizedPc> by_lookup_pc;  // keyed by RawFrame::lookup_pc()
    std::map<uint64_t, int> calls;                  // lookups per pc

    const SymbolizedPc& symbolize(const RawFrame& frame) override {
        ++calls[frame.pc];
        SymbolizedPc& s = by_lookup_pc[frame.lookup_pc()];
        s.pc = frame.pc;
        return s;
    }
};

constexpr uint64_t kLeafPc = 0x401010;        // inner_inlined inlined into outer(int), exact
constexpr uint64_t kOuterRet = 0x401101;      // return address into main (looked up at -1)
constexpr uint64_t kLibcPc = 0x7f0000001235;  // in libc, no symbol
constexpr uint64_t kJitPc = 0x10000010;       // anonymous executable memory, no module

SourceFrame frame(const std::string& fn, const std::string& mangled, const std::string& file,
                  int line, int start, bool inlined) {
    return SourceFrame{fn, mangled, file, line, start, inlined};
}

FakeSymbolizer make_symbolizer() {
    FakeSymbolizer sym;
    sym.by_lookup_pc[kLeafPc] = {
        kLeafPc,
        "/usr/bin/app",
        "b1d",
        0x1010,
        {frame("inner_inlined", "_Z13inner_inlinedv", "app.cpp", 11, 10, true),
         frame("outer(int)", "_Z5outeri", "app.cpp", 25, 20, false)}};
    sym.by_lookup_pc[kOuterRet - 1] = {kOuterRet,
                                       "/usr/bin/app",
                                       "b1d",
                                       0x1100,
                                       {frame("main", "main", "app.cpp", 33, 30, false)}};
    sym.by_lookup_pc[kLibcPc] = {kLibcPc, "/lib/libc.so.6", "", 0x1234, {}};
    sym.by_lookup_pc[kJitPc] = {kJitPc, "", "", 0, {}};
    return sym;
}

std::vector<MemoryMap> maps() {
    MemoryMap jit{0x10000000, 0x10001000, "rwxp", 0, "00:00", 0, "", false};
    MemoryMap app_text{0x401000, 0x402000, "r-xp", 0x1000, "fd:01", 7, "/usr/bin/app", false};
    MemoryMap app_data{0x403000, 0x404000, "rw-p", 0x3000, "fd:01", 7, "/usr/bin/app", false};
    MemoryMap libc{0x7f0000000000,   0x7f0000100000, "r-xp", 0x28000, "fd:01", 9,
                   "/lib/libc.so.6", false};
    return {jit, app_text, app_data, libc};
}

RawStack stack(std::vector<RawFrame> frames, bool truncated = false) {
    return RawStack{std::move(frames), truncated, truncated ? "max depth" : ""};
}

const Function& fn_of(const Profile& p, const Location& l, size_t i) {
    const Function* f = p.function(l.lines.at(i).function_id);
    REQUIRE(f != nullptr);
    return *f;
}

}  // namespace

TEST_CASE("builder interns stacks and sums values per (stack, labels)", "[unit][profile]") {
    ProfileBuilder b({{"samples", "count"}, {"cpu", "nanoseconds"}}, {"cpu", "nanoseconds"}, 1000);
    const RawStack s1 = stack({{kLeafPc, true}, {kOuterRet, false}});
    const std::vector<Label> worker{{"thread_name", "worker", 0, ""}};
    const std::vector<Label> other{{"thread_name", "other", 0, ""}};
    b.add(s1, {1, 1000}, worker);
    b.add(s1, {1, 1000}, worker);
    b.add(s1, {1, 1000}, other);
    b.add(stack({{kLeafPc, true}}), {1, 1000}, worker);
    CHECK(b.unique_stacks() == 2);
    CHECK(b.sample_count() == 3);

    FakeSymbolizer sym = make_symbolizer();
    Profile p = b.build(sym, maps());
    CHECK(p.period == 1000);
    CHECK(p.period_type == ValueType{"cpu", "nanoseconds"});
    REQUIRE(p.samples.size() == 3);
    CHECK(p.samples[0].values == std::vector<int64_t>{2, 2000});
    CHECK(p.samples[0].labels == worker);
    CHECK(p.samples[1].values == std::vector<int64_t>{1, 1000});
    CHECK(p.samples[1].labels == other);
    CHECK(p.samples[0].location_ids == p.samples[1].location_ids);
    CHECK(p.samples[2].location_ids == std::vector<uint64_t>{p.samples[0].location_ids[0]});
    // One Location per unique pc, each pc symbolized once, ids from 1.
    CHECK(p.locations.size() == 2);
    CHECK(sym.calls[kLeafPc] == 1);
    CHECK(sym.calls[kOuterRet] == 1);
    for (size_t i = 0; i < p.locations.size(); ++i) CHECK(p.locations[i].id == i + 1);
    CHECK(p.sample_index() == 1);
    CHECK(p.sample_index("samples") == 0);
    CHECK(p.sample_index("nope") == -1);
}

TEST_CASE("builder: inline chains, unknown pcs and mappings", "[unit][profile]") {
    ProfileBuilder b({{"samples", "count"}}, {}, 0);
    b.add(stack({{kLibcPc, true}, {kLeafPc, false}, {kOuterRet, false}}), {5}, {});
    b.add(stack({{kJitPc, true}, {kOuterRet, false}}), {3}, {});
    FakeSymbolizer sym = make_symbolizer();
    // kLeafPc as a return address is looked up at kLeafPc-1: give it the same answer.
    sym.by_lookup_pc[kLeafPc - 1] = sym.by_lookup_pc[kLeafPc];
    Profile p = b.build(sym, maps());

    REQUIRE(p.samples.size() == 2);
    const Sample& s = p.samples[0];
    REQUIRE(s.location_ids.size() == 3);
    const Location* libc = p.location(s.location_ids[0]);
    const Location* leaf = p.location(s.location_ids[1]);
    REQUIRE((libc && leaf));
    CHECK(leaf->address == kLeafPc);   // the raw pc, not the lookup pc
    REQUIRE(leaf->lines.size() == 2);  // inlinee first, the real function last
    CHECK(fn_of(p, *leaf, 0).name == "inner_inlined");
    CHECK(fn_of(p, *leaf, 0).system_name == "_Z13inner_inlinedv");
    CHECK(fn_of(p, *leaf, 0).start_line == 10);
    CHECK(leaf->lines[0].line == 11);
    CHECK(fn_of(p, *leaf, 1).name == "outer(int)");
    CHECK(leaf->lines[1].line == 25);

    // No symbol: mapping kept, pseudo-function module+offset.
    REQUIRE(libc->lines.size() == 1);
    CHECK(fn_of(p, *libc, 0).name == "libc.so.6+0x1234");
    const Mapping* libc_map = p.mapping(libc->mapping_id);
    REQUIRE(libc_map != nullptr);
    CHECK(libc_map->filename == "/lib/libc.so.6");
    CHECK(libc_map->memory_start == 0x7f0000000000);
    CHECK(libc_map->file_offset == 0x28000);
    CHECK_FALSE(libc_map->has_functions);
    CHECK_FALSE(libc_map->has_inline_frames);

    // The app mapping: first (address order) although libc was seen first; flags from DWARF.
    REQUIRE(p.mappings.size() == 2);
    CHECK(p.mappings[0].id == 1);
    CHECK(p.mappings[0].filename == "/usr/bin/app");
    CHECK(p.mappings[0].build_id == "b1d");
    CHECK(p.mappings[0].memory_start == 0x401000);
    CHECK(p.mappings[0].has_functions);
    CHECK(p.mappings[0].has_filenames);
    CHECK(p.mappings[0].has_line_numbers);
    CHECK(p.mappings[0].has_inline_frames);
    CHECK(leaf->mapping_id == 1);
    CHECK(libc->mapping_id == 2);

    // A pc in anonymous memory: no mapping, named by its address.
    const Location* jit = p.location(p.samples[1].location_ids[0]);
    REQUIRE(jit != nullptr);
    CHECK(jit->mapping_id == 0);
    CHECK(fn_of(p, *jit, 0).name == "0x10000010");

    // Functions are deduplicated: main appears in both samples once.
    int mains = 0;
    for (const Function& f : p.functions) mains += f.name == "main";
    CHECK(mains == 1);
    for (size_t i = 0; i < p.functions.size(); ++i) CHECK(p.functions[i].id == i + 1);
}

TEST_CASE("builder: truncated stacks get a [truncated] root, synthetic stacks no mapping",
          "[unit][profile]") {
    ProfileBuilder b({{"samples", "count"}}, {}, 0);
    b.add(stack({{kLeafPc, true}}, true), {2}, {});
    b.add(stack({{kLeafPc, true}}, false), {1}, {});
    b.add_synthetic({"int[]", "[arena 2]", "[heap]"}, {7}, {{"kind", "", 3, "count"}});
    b.add_synthetic({"int[]", "[arena 2]", "[heap]"}, {1}, {{"kind", "", 3, "count"}});
    b.add_synthetic({"[truncated]"}, {1}, {});
    CHECK(b.unique_stacks() == 3);
    CHECK(b.sample_count() == 4);

    FakeSymbolizer sym = make_symbolizer();
    Profile p = b.build(sym, maps());
    REQUIRE(p.samples.size() == 4);
    const Sample& truncated = p.samples[0];
    REQUIRE(truncated.location_ids.size() == 2);
    const Location* root = p.location(truncated.location_ids[1]);
    REQUIRE(root != nullptr);
    CHECK(root->mapping_id == 0);
    CHECK(root->address == 0);
    CHECK(fn_of(p, *root, 0).name == "[truncated]");
    CHECK(p.samples[1].location_ids.size() == 1);
    CHECK(p.samples[1].values == std::vector<int64_t>{1});

    const Sample& heap = p.samples[2];
    CHECK(heap.values == std::vector<int64_t>{8});
    REQUIRE(heap.location_ids.size() == 3);
    std::vector<std::string> names;
    for (uint64_t id : heap.location_ids) {
        const Location* l = p.location(id);
        REQUIRE(l != nullptr);
        CHECK(l->mapping_id == 0);
        names.push_back(fn_of(p, *l, 0).name);
    }
    CHECK(names == std::vector<std::string>{"int[]", "[arena 2]", "[heap]"});
    // The synthetic "[truncated]" shares the pseudo location of the truncated raw stack.
    CHECK(p.samples[3].location_ids == std::vector<uint64_t>{truncated.location_ids[1]});
}

TEST_CASE("profile lookups by id work for sparse ids too", "[unit][profile]") {
    Profile p;
    p.functions = {{7, "f", "f", "", 0}, {3, "g", "g", "", 0}};
    p.locations = {{1, 0, 0, {}}, {2, 0, 0, {}}};
    CHECK(p.function(7)->name == "f");
    CHECK(p.function(3)->name == "g");
    CHECK(p.function(1) == nullptr);
    CHECK(p.function(0) == nullptr);
    CHECK(p.location(2)->id == 2);
    CHECK(p.mapping(1) == nullptr);
    CHECK(p.sample_index() == -1);
    p.sample_types = {{"a", "count"}, {"b", "count"}};
    p.default_sample_type = "a";
    CHECK(p.sample_index() == 0);
    p.default_sample_type = "zzz";  // unknown default: the last type, as pprof does
    CHECK(p.sample_index() == 1);
}

TEST_CASE("process labels name the process of every sample, and merging keeps them apart",
          "[unit][profile][subprocesses]") {
    Profile a, b;
    for (Profile* p : {&a, &b}) {
        p->sample_types = {{"samples", "count"}};
        p->samples.push_back(Sample{{}, {3}, {{"tid", "", 7, ""}}});
    }
    add_sample_labels(a, process_labels(100, "master"));
    add_sample_labels(b, process_labels(200, "worker"));
    REQUIRE(a.samples[0].labels.size() == 3);
    CHECK(a.samples[0].labels[0].key == "tid");  // appended after the sample's own
    CHECK(a.samples[0].labels[1] == Label{"pid", "", 100, ""});
    CHECK(a.samples[0].labels[2] == Label{"comm", "master", 0, ""});
    // The same stack in two processes stays two samples once merged: the labels differ.
    const Profile m = merge_profiles({{&a, 1}, {&b, 1}});
    REQUIRE(m.samples.size() == 2);
    std::set<int64_t> pids;
    for (const Sample& s : m.samples)
        for (const Label& l : s.labels)
            if (l.key == "pid") pids.insert(l.num);
    CHECK(pids == std::set<int64_t>{100, 200});
}
