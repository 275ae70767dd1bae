// Thread churn: a "churner" thread creates and joins batches of short-lived threads forever,
// next to a few long-lived ones. For tracer tests of threads that appear (PTRACE_EVENT_CLONE)
// and vanish (ESRCH, exit while stopping) during attach, snapshots and sampling.
//
//   long-sleep   long_lived_sleep   nanosleep loop
//   long-spin    long_lived_spin    busy loop (omitted with --no-spinner)
//   churner      churn_loop         spawn_batch -> pthread_create/pthread_join, forever
//   short        short_lived_work   spins ~--short-us microseconds (default 200), then exits
//   main         main_wait          pthread_join(churner)
//
// Options: --batch N (threads per batch, default 4), --short-us N, --pause-us N (between batches,
// default 5000: ~600 threads/s; pid_max is often 32768 and every thread takes a pid, so full
// speed wraps the pid space in seconds and invites pid reuse in concurrent tests), --no-spinner.
// Reports "ready pid=P long-sleep=TID long-spin=TID churner=TID" after the first batch was joined.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "target_support.h"

namespace churn_target {

struct Options {
    int batch = 4;
    int short_us = 200;
    int pause_us = 5000;
    bool spinner = true;
};
Options g_opt;

std::atomic<pid_t> g_sleep_tid{0}, g_spin_tid{0}, g_churner_tid{0};
std::atomic<uint64_t> g_created{0};

TARGET_NOINLINE void long_lived_sleep() {
    for (;;) {
        timespec ts{1000, 0};
        nanosleep(&ts, nullptr);  // @line:long_sleep
    }
}

TARGET_NOINLINE void long_lived_spin() {
    volatile uint64_t x = 1;
    for (;;) x = x * 6364136223846793005ULL + 1442695040888963407ULL;  // @line:long_spin
}

/// Busy for about `us` microseconds, so a sampler can catch the thread while it lives.
TARGET_NOINLINE void short_lived_work(int us) {
    auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    volatile uint64_t x = 1;
    while (std::chrono::steady_clock::now() < end) x = x * 3 + 1;  // @line:short_work
}

TARGET_NOINLINE void* short_thread(void*) {
    target::name_thread("short");
    short_lived_work(g_opt.short_us);  // @line:short_call
    return nullptr;
}

TARGET_NOINLINE void spawn_batch() {
    std::vector<pthread_t> batch(static_cast<size_t>(g_opt.batch));
    size_t started = 0;
    for (auto& t : batch) {
        if (pthread_create(&t, nullptr, short_thread, nullptr) != 0) break;  // @line:create
        ++started;
    }
    for (size_t i = 0; i < started; ++i) pthread_join(batch[i], nullptr);  // @line:join
    g_created.fetch_add(started);
}

TARGET_NOINLINE void churn_loop() {
    for (;;) {
        spawn_batch();  // @line:churn
        if (g_opt.pause_us > 0) {
            timespec ts{g_opt.pause_us / 1000000, (g_opt.pause_us % 1000000) * 1000L};
            nanosleep(&ts, nullptr);
        }
    }
}

TARGET_NOINLINE void* churner_thread(void*) {
    target::name_thread("churner");
    g_churner_tid = target::current_tid();
    churn_loop();
    return nullptr;
}

TARGET_NOINLINE void* sleep_thread(void*) {
    target::name_thread("long-sleep");
    g_sleep_tid = target::current_tid();
    long_lived_sleep();
    return nullptr;
}

TARGET_NOINLINE void* spin_thread(void*) {
    target::name_thread("long-spin");
    g_spin_tid = target::current_tid();
    long_lived_spin();
    return nullptr;
}

TARGET_NOINLINE void main_wait(pthread_t churner) {
    pthread_join(churner, nullptr);  // @line:main_join
    target::no_tail_call();
}

Options parse_options(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--batch" && i + 1 < argc) {
            opt.batch = std::max(1, std::atoi(argv[++i]));
        } else if (arg == "--short-us" && i + 1 < argc) {
            opt.short_us = std::max(0, std::atoi(argv[++i]));
        } else if (arg == "--pause-us" && i + 1 < argc) {
            opt.pause_us = std::max(0, std::atoi(argv[++i]));
        } else if (arg == "--no-spinner") {
            opt.spinner = false;
        } else {
            std::fprintf(stderr,
                         "usage: %s [--batch N] [--short-us N] [--pause-us N] [--no-spinner]\n",
                         argv[0]);
            std::exit(64);
        }
    }
    return opt;
}

}  // namespace churn_target

int main(int argc, char** argv) {
    using namespace churn_target;
    g_opt = parse_options(argc, argv);
    target::allow_any_tracer();
    pthread_t t;
    pthread_create(&t, nullptr, sleep_thread, nullptr);
    if (g_opt.spinner) pthread_create(&t, nullptr, spin_thread, nullptr);
    pthread_t churner;
    if (pthread_create(&churner, nullptr, churner_thread, nullptr) != 0) return 1;

    // Ready once every long thread has named itself and the first batch has come and gone.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (g_sleep_tid == 0 || (g_opt.spinner && g_spin_tid == 0) || g_churner_tid == 0 ||
           g_created.load() < static_cast<uint64_t>(g_opt.batch)) {
        if (std::chrono::steady_clock::now() > deadline) {
            target::report("error: threads did not start");
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    target::report("ready pid=" + std::to_string(getpid()) +
                   " long-sleep=" + std::to_string(g_sleep_tid) +
                   (g_opt.spinner ? " long-spin=" + std::to_string(g_spin_tid) : std::string()) +
                   " churner=" + std::to_string(g_churner_tid));
    main_wait(churner);  // @line:main_call
    return 0;
}
