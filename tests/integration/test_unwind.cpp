// Unwinding copies of a real thread's registers and stack (tests/targets/unwind_target, built
// with and without frame pointers) with both unwinders: the known function sequence through a
// libc frame and a signal frame, agreement with eu-stack, garbage that must stop cleanly, and
// symbolization after the target exited. The capture here is a minimal SEIZE/INTERRUPT/copy/
// DETACH of our own child, standing in for TraceSession.
#include <catch2/catch.hpp>

#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../support/harness.h"
#include "pmprof/elf/image.h"
#include "pmprof/os/procfs.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/symbolize/symbolize.h"
#include "pmprof/unwind/unwind.h"

using namespace pmprof;
using pmprof::test::Target;

namespace {

constexpr size_t kMaxDepth = 128;

/// Stops `tid` (our own child), copies registers and up to 64 KiB of stack, detaches (resumes).
ThreadCapture capture_thread(pid_t pid, pid_t tid) {
    ThreadCapture c;
    c.tid = tid;
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
        c.error = "PTRACE_SEIZE failed";
        return c;
    }
    ptrace(PTRACE_INTERRUPT, tid, 0, 0);
    bool stopped = false;
    for (int i = 0; i < 2000 && !stopped; ++i) {
        int status = 0;
        pid_t w = waitpid(tid, &status, WNOHANG | __WALL);
        if (w == tid && WIFSTOPPED(status))
            stopped = true;
        else
            usleep(1000);
    }
    user_regs_struct r{};
    if (stopped && ptrace(PTRACE_GETREGS, tid, 0, &r) == 0) {
        const uint64_t values[Registers::kCount] = {r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi,
                                                    r.rbp, r.rsp, r.r8,  r.r9,  r.r10, r.r11,
                                                    r.r12, r.r13, r.r14, r.r15, r.rip};
        std::copy(std::begin(values), std::end(values), c.regs.dwarf.begin());
        c.regs.fs_base = r.fs_base;
        uint64_t base = r.rsp - 128, end = base + 64 * 1024;
        if (auto maps = read_maps(pid); maps.ok())
            for (const MemoryMap& m : *maps)
                if (m.contains(r.rsp)) end = std::min(end, m.end);
        c.stack.base = base;
        c.stack.bytes.resize(end - base);
        iovec local{c.stack.bytes.data(), c.stack.bytes.size()};
        iovec remote{reinterpret_cast<void*>(base), c.stack.bytes.size()};
        ssize_t n = process_vm_readv(tid, &local, 1, &remote, 1, 0);
        c.stack.bytes.resize(n > 0 ? static_cast<size_t>(n) : 0);
        c.ok = n > 0;
    }
    ptrace(PTRACE_DETACH, tid, 0, 0);
    return c;
}

struct Parked {
    std::unique_ptr<Target> target;
    ThreadCapture capture;
    std::unique_ptr<ProcessImage> image;
};

Parked park(bool frame_pointers, const std::string& mode = "spin") {
    Parked p;
    p.target = Target::start({test::target_bin("unwind_target", frame_pointers), mode});
    REQUIRE(p.target != nullptr);
    // The ready line is written from the leaf itself. Capture until the thread has left
    // write(2): spinning in the target's own code, or blocked in pause(2).
    const std::string exe = frame_pointers ? "/unwind_target-fp" : "/unwind_target-nofp";
    for (int i = 0; i < 400; ++i) {
        bool parked = false;
        if (mode == "block") {
            auto sc = read_syscall(p.target->pid(), p.target->pid());
            parked = sc.ok() && !sc->running && sc->nr == SYS_pause;
        } else if (auto maps = read_maps(p.target->pid()); maps.ok()) {
            p.capture = capture_thread(p.target->pid(), p.target->pid());
            for (const MemoryMap& m : *maps)
                if (m.contains(p.capture.regs.pc()) && m.path.size() > exe.size() &&
                    m.path.compare(m.path.size() - exe.size(), exe.size(), exe) == 0)
                    parked = true;
        }
        if (parked) break;
        usleep(5000);
    }
    if (mode == "block") p.capture = capture_thread(p.target->pid(), p.target->pid());
    REQUIRE(p.capture.ok);
    REQUIRE(test::left_running(p.target->pid()) == "");
    auto maps = read_maps(p.target->pid());
    REQUIRE(maps.ok());
    auto image = ProcessImage::open(p.target->pid(), *maps);
    REQUIRE(image.ok());
    p.image = std::move(*image);
    return p;
}

/// The function each frame's code belongs to ("?" when no symbol covers it).
std::vector<std::string> function_names(const RawStack& stack, Symbolizer& sym) {
    std::vector<std::string> names;
    for (const RawFrame& f : stack.frames) {
        const SymbolizedPc& s = sym.symbolize(f);
        names.push_back(s.frames.empty() ? "?" : s.frames.back().function);
    }
    return names;
}

std::string joined(const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += n + "\n";
    return s;
}

/// Position of the first name at or after `from` that contains `part`, or npos.
size_t find_from(const std::vector<std::string>& names, size_t from, const std::string& part) {
    for (size_t i = from; i < names.size(); ++i)
        if (names[i].find(part) != std::string::npos) return i;
    return std::string::npos;
}

void check_known_stack(const RawStack& stack, const std::vector<std::string>& names) {
    std::string exact;
    for (size_t i = 0; i < stack.frames.size(); ++i)
        if (stack.frames[i].exact) exact += std::to_string(i) + " ";
    INFO(joined(names) << "stop: " << stack.stop_reason << "\nexact: " << exact);
    CHECK_FALSE(stack.truncated);
    REQUIRE(names.size() >= 20);
    CHECK(names[0] == "uw_spin(int)");
    CHECK(names[1] == "uw_handler_leaf(int)");
    CHECK(names[2] == "uw_on_signal(int)");
    CHECK(names[3] == "__restore_rt");
    // Exact pcs: frame 0, the signal trampoline (the handler "returns" to its first instruction)
    // and the frame the signal interrupted; return addresses elsewhere.
    for (size_t i = 0; i < stack.frames.size(); ++i)
        CHECK(stack.frames[i].exact == (i == 0 || i == 3 || i == 4));
    size_t at = 4;
    for (const char* want :
         {"uw_level5(int)", "uw_level4(int)", "uw_compare(void const*, void const*)", "qsort",
          "uw_level3(int)", "uw_recurse(int, int)"}) {
        size_t next = find_from(names, at, want);
        INFO("looking for " << want << " from frame " << at);
        REQUIRE(next != std::string::npos);
        at = next + 1;
    }
    CHECK(std::count(names.begin(), names.end(), "uw_recurse(int, int)") == 5);
    size_t level2 = find_from(names, at, "uw_level2(int)");
    REQUIRE(level2 != std::string::npos);
    CHECK(names[level2 - 1] == "uw_recurse(int, int)");
    CHECK(names[level2 + 1] == "uw_level1(int)");
    CHECK(names[level2 + 2] == "main");
    CHECK(find_from(names, level2, "__libc_start_main") == names.size() - 2);
    CHECK(names[names.size() - 2] == "__libc_start_main");  // without "@@GLIBC_2.34"
    CHECK(names.back() == "_start");
}

struct EuStackFrame {
    uint64_t pc = 0;
    std::string name;
};

/// `eu-stack -p PID` frames of its first thread ("#N  0xPC name").
std::vector<EuStackFrame> eu_stack(pid_t pid) {
    auto r = test::run({"eu-stack", "-p", std::to_string(pid)}, std::chrono::seconds(30));
    REQUIRE(r.exit_code == 0);
    std::vector<EuStackFrame> out;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("#", 0) != 0) continue;
        std::istringstream fields(line);
        std::string index, pc;
        EuStackFrame f;
        fields >> index >> pc;
        std::getline(fields, f.name);
        f.name.erase(0, f.name.find_first_not_of(' '));
        f.pc = std::stoull(pc, nullptr, 16);
        out.push_back(f);
    }
    return out;
}

std::string without_version(std::string name) {
    auto at = name.find('@');
    return at == std::string::npos ? name : name.substr(0, at);
}

}  // namespace

TEST_CASE("parse_unwinder_kind", "[integration][unwind]") {
    CHECK(*parse_unwinder_kind("dwfl") == UnwinderKind::Dwfl);
    CHECK(*parse_unwinder_kind("libdw") == UnwinderKind::Dwfl);
    CHECK(*parse_unwinder_kind("libunwind") == UnwinderKind::Libunwind);
    auto bad = parse_unwinder_kind("gdb");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message.find("gdb") != std::string::npos);
}

TEST_CASE("both unwinders follow the known stack through libc and a signal frame",
          "[integration][unwind]") {
    const bool fp = GENERATE(true, false);
    const UnwinderKind kind = GENERATE(UnwinderKind::Dwfl, UnwinderKind::Libunwind);
    INFO((fp ? "-fp" : "-nofp") << (kind == UnwinderKind::Dwfl ? " dwfl" : " libunwind"));
    Parked p = park(fp);
    ProcessMemory memory(p.target->pid());
    auto unwinder = make_unwinder(kind, *p.image, memory);
    auto sym = make_symbolizer(*p.image, {});
    RawStack stack = unwinder->unwind(p.capture, kMaxDepth);
    check_known_stack(stack, function_names(stack, *sym));

    SECTION("max_depth cuts the stack with a reason") {
        RawStack cut = unwinder->unwind(p.capture, 3);
        CHECK(cut.frames.size() == 3);
        CHECK(cut.truncated);
        CHECK(cut.stop_reason.find("max depth") != std::string::npos);
        CHECK(std::equal(cut.frames.begin(), cut.frames.end(), stack.frames.begin()));
    }
}

TEST_CASE("dwfl and libunwind give the same frames as eu-stack", "[integration][unwind]") {
    const bool fp = GENERATE(true, false);
    Parked p = park(fp);
    ProcessMemory memory(p.target->pid());
    RawStack dwfl =
        make_unwinder(UnwinderKind::Dwfl, *p.image, memory)->unwind(p.capture, kMaxDepth);
    RawStack lu =
        make_unwinder(UnwinderKind::Libunwind, *p.image, memory)->unwind(p.capture, kMaxDepth);
    CHECK(dwfl.frames == lu.frames);

    // The target keeps spinning on the same stack: only frame 0's pc moves.
    std::vector<EuStackFrame> ref = eu_stack(p.target->pid());
    REQUIRE(test::left_running(p.target->pid()) == "");
    REQUIRE(ref.size() == dwfl.frames.size());
    auto sym = make_symbolizer(*p.image, {});
    std::vector<std::string> names = function_names(dwfl, *sym);
    for (size_t i = 0; i < ref.size(); ++i) {
        INFO("frame " << i << " eu-stack " << ref[i].name);
        if (i > 0) CHECK(ref[i].pc == dwfl.frames[i].pc);
        CHECK(without_version(ref[i].name) == without_version(names[i]));
    }
}

TEST_CASE("a thread blocked in libc unwinds into our code", "[integration][unwind]") {
    const UnwinderKind kind = GENERATE(UnwinderKind::Dwfl, UnwinderKind::Libunwind);
    Parked p = park(false, "block");
    ProcessMemory memory(p.target->pid());
    RawStack stack = make_unwinder(kind, *p.image, memory)->unwind(p.capture, kMaxDepth);
    auto sym = make_symbolizer(*p.image, {});
    std::vector<std::string> names = function_names(stack, *sym);
    INFO(joined(names) << "stop: " << stack.stop_reason);
    CHECK_FALSE(stack.truncated);
    REQUIRE(names.size() > 3);
    CHECK(sym->symbolize(stack.frames[0]).module.find("libc.so.6") != std::string::npos);
    CHECK(find_from(names, 0, "uw_spin(int)") <= 2);
    CHECK(names.back() == "_start");
}

TEST_CASE("garbage registers and stacks stop cleanly", "[integration][unwind]") {
    const bool fp = GENERATE(true, false);
    const UnwinderKind kind = GENERATE(UnwinderKind::Dwfl, UnwinderKind::Libunwind);
    INFO((fp ? "-fp" : "-nofp") << (kind == UnwinderKind::Dwfl ? " dwfl" : " libunwind"));
    Parked p = park(fp);
    ProcessMemory memory(p.target->pid());
    auto unwinder = make_unwinder(kind, *p.image, memory);

    SECTION("sp 0, pc 0x1234, no stack") {
        ThreadCapture bad;
        bad.tid = p.capture.tid;
        bad.ok = true;
        bad.regs.dwarf[Registers::kPc] = 0x1234;
        RawStack s = unwinder->unwind(bad, kMaxDepth);
        CHECK(s.frames.size() <= 1);
        CHECK(s.truncated);
        CHECK_FALSE(s.stop_reason.empty());
    }
    SECTION("random stack bytes") {
        std::mt19937_64 rng(42);
        ThreadCapture bad = p.capture;
        for (auto& b : bad.stack.bytes) b = static_cast<uint8_t>(rng());
        RawStack s = unwinder->unwind(bad, kMaxDepth);
        CHECK(s.frames.size() >= 1);
        CHECK(s.frames.size() <= kMaxDepth);
        CHECK(s.truncated);
    }
    SECTION("a stack of one return address repeated") {
        ThreadCapture bad = p.capture;
        RawStack good = unwinder->unwind(p.capture, kMaxDepth);
        REQUIRE(good.frames.size() > 2);
        const uint64_t ret = good.frames[1].pc;
        for (size_t i = 0; i + 8 <= bad.stack.bytes.size(); i += 8)
            std::memcpy(&bad.stack.bytes[i], &ret, 8);
        RawStack s = unwinder->unwind(bad, 64);
        INFO(s.stop_reason);
        CHECK(s.frames.size() <= 64);
        CHECK(s.truncated);
    }
    SECTION("a stack copy cut short") {
        ThreadCapture cut = p.capture;
        cut.stack.bytes.resize(128 + 64);
        RawStack s = unwinder->unwind(cut, kMaxDepth);
        INFO(s.frames.size() << " frames, stop: " << s.stop_reason);
        CHECK(s.frames.size() >= 1);
        CHECK(s.frames.size() < 10);
        CHECK(s.truncated);
    }
}

TEST_CASE("unwinding and symbolization keep working after the target exits",
          "[integration][unwind]") {
    const UnwinderKind kind = GENERATE(UnwinderKind::Dwfl, UnwinderKind::Libunwind);
    Parked p = park(false);
    ProcessMemory memory(p.target->pid());
    auto unwinder = make_unwinder(kind, *p.image, memory);
    auto sym = make_symbolizer(*p.image, {});
    p.target->terminate(SIGKILL);
    RawStack stack = unwinder->unwind(p.capture, kMaxDepth);
    check_known_stack(stack, function_names(stack, *sym));
    const SymbolizedPc& s = sym->symbolize(stack.frames[1]);
    REQUIRE_FALSE(s.frames.empty());
    CHECK(s.frames.back().file.find("unwind_target.cpp") != std::string::npos);
    CHECK(s.frames.back().line > 0);
}

TEST_CASE("unwind and symbolize cost", "[integration][unwind][cost]") {
    // Thread CPU time: the machines running the tests are often loaded, wall time would
    // mostly measure the scheduler.
    struct Clock {
        static double now() {
            timespec ts{};
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
            return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
        }
    };
    auto us_since = [](double t0, size_t n) {
        return (Clock::now() - t0) / static_cast<double>(n);
    };
    for (bool fp : {true, false}) {
        Parked p = park(fp);
        ProcessMemory memory(p.target->pid());
        for (UnwinderKind kind : {UnwinderKind::Dwfl, UnwinderKind::Libunwind}) {
            auto unwinder = make_unwinder(kind, *p.image, memory);
            RawStack stack = unwinder->unwind(p.capture, kMaxDepth);  // warms the CFI caches
            constexpr size_t kRuns = 500;
            auto t0 = Clock::now();
            for (size_t i = 0; i < kRuns; ++i) stack = unwinder->unwind(p.capture, kMaxDepth);
            double per_stack = us_since(t0, kRuns);
            std::fprintf(stderr, "cost: %s %s unwind %.1f us/stack (%zu frames)\n",
                         fp ? "fp" : "nofp", kind == UnwinderKind::Dwfl ? "dwfl" : "libunwind",
                         per_stack, stack.frames.size());
            CHECK(per_stack < 5000);
        }
        RawStack stack =
            make_unwinder(UnwinderKind::Dwfl, *p.image, memory)->unwind(p.capture, kMaxDepth);
        const size_t n = stack.frames.size();
        auto t0 = Clock::now();
        auto cold = make_symbolizer(*p.image, {});  // first use of the image: loads debug info
        for (const RawFrame& f : stack.frames) cold->symbolize(f);
        double first = us_since(t0, n);
        t0 = Clock::now();
        auto fresh = make_symbolizer(*p.image, {});  // debug info loaded, no pc cached
        for (const RawFrame& f : stack.frames) fresh->symbolize(f);
        double uncached = us_since(t0, n);
        t0 = Clock::now();
        for (int r = 0; r < 100; ++r)
            for (const RawFrame& f : stack.frames) fresh->symbolize(f);
        double warm = us_since(t0, n * 100);
        std::fprintf(stderr,
                     "cost: %s symbolize %.1f us/frame first use, %.1f uncached, %.3f cached\n",
                     fp ? "fp" : "nofp", first, uncached, warm);
        CHECK(warm < uncached);
    }
}
