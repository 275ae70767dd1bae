// A target that exits while it is being looked at: a watcher thread polls the TracerPid of a
// sleeping thread and, --delay-us after it first sees a tracer, ends the process with _exit.
// Four sleeping threads and a few heap blocks give every verb something to do until then.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

namespace exit_target {

/// Whether `tid` (a thread that stays asleep, so it is traced from its seize to its detach,
/// and never in the watcher's own stop) has a tracer.
bool traced(pid_t tid) {
    std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("TracerPid:", 0) == 0) return std::atoi(line.c_str() + 10) != 0;
    return false;
}

std::atomic<pid_t> sleeper_tid{0};

TARGET_NOINLINE void sleeper() {
    target::name_thread("sleeper");
    pid_t none = 0;
    sleeper_tid.compare_exchange_strong(none, target::current_tid());
    for (;;) pause();
}

[[noreturn]] void watch(long delay_us) {
    target::name_thread("watcher");
    while (!traced(sleeper_tid.load())) std::this_thread::sleep_for(std::chrono::microseconds(20));
    if (delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    _exit(0);
}

}  // namespace exit_target

int main(int argc, char** argv) {
    long delay_us = 0;
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--delay-us" && i + 1 < argc) delay_us = std::atol(argv[++i]);
    target::allow_any_tracer();
    std::vector<void*> blocks;
    for (int i = 0; i < 64; ++i) blocks.push_back(std::malloc(static_cast<size_t>(32 + i * 16)));
    target::escape(&blocks);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) threads.emplace_back(exit_target::sleeper);
    while (exit_target::sleeper_tid.load() == 0) std::this_thread::yield();
    threads.emplace_back(exit_target::watch, delay_us);
    target::report("ready");
    for (;;) pause();
}
