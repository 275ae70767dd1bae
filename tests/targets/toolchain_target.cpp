// One program built by every C++ toolchain the suite knows (Makefile: g++ + GNU ld as
// toolchain_target-fp/-nofp, and toolchain_target-clang-lld, -gcc-mold, -clang), so each
// linker's layout and each compiler's DWARF is checked against the same known frames
// (tests/integration/test_toolchains.cpp):
//
//   cruncher  crunch_thread -> crunch_loop -> Crunch::step (noinline, ~all of the thread's cpu)
//             -> mix_round (inlined) -> rotate_bits (inlined): the known hot function and
//             inline chain
//   mailbox   mailbox_thread -> mailbox_loop -> Mailbox::send_message(unsigned long) with two
//             inlined lambdas ({lambda()#1}, {lambda()#2}), and (anonymous namespace)::churn
//             (unsigned long) with an inlined lambda of its own: three distinct lambdas, all hot
//   main      waits in pthread_join
//
// Lines tests look for carry `// @line:NAME` markers. Readiness: once both busy threads run,
//   "ready pid=P cruncher=TID mailbox=TID"
// on the harness's pipe (target_support.h). It runs until killed.
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "target_support.h"

#define TC_INLINE inline __attribute__((always_inline))

std::atomic<pid_t> g_cruncher_tid{0}, g_mailbox_tid{0};
std::atomic<uint64_t> g_sink{0};

// The inline chain: rotate_bits inside mix_round inside Crunch::step.
TC_INLINE uint64_t rotate_bits(uint64_t x, int k) {
    asm volatile("" : "+r"(x));
    return (x << k) | (x >> (64 - k));  // @line:rotate
}

TC_INLINE uint64_t mix_round(uint64_t x, uint64_t salt) {
    x ^= salt;
    x = rotate_bits(x * 0x9e3779b97f4a7c15ull, 29);  // @line:mix_calls_rotate
    return x + (x >> 17);
}

struct Crunch {
    uint64_t state = 1;
    TARGET_NOINLINE uint64_t step();
};

// Nearly all of the cruncher's time: the hot function.
TARGET_NOINLINE uint64_t Crunch::step() {
    for (long i = 0; i < 200000; ++i) {
        state = mix_round(state, static_cast<uint64_t>(i));  // @line:step_calls_mix
    }
    return state;
}

TARGET_NOINLINE void crunch_loop() {
    Crunch c;
    for (;;) {
        g_sink.fetch_add(c.step(), std::memory_order_relaxed);  // @line:loop_calls_step
    }
}

void* crunch_thread(void*) {
    target::name_thread("cruncher");
    g_cruncher_tid = target::current_tid();
    crunch_loop();  // @line:thread_calls_loop
    target::no_tail_call();
    return nullptr;
}

namespace {

// A lambda in a function of an anonymous namespace:
// (anonymous namespace)::churn(unsigned long)::{lambda(unsigned long)#1}::operator()(...) const
TARGET_NOINLINE uint64_t churn(unsigned long n) {
    uint64_t acc = 7;
    auto fold = [&acc](unsigned long k) {
        for (unsigned long i = 0; i < k; ++i) {
            acc = acc * 6364136223846793005ull + i;  // @line:churn_lambda
            asm volatile("" : "+r"(acc));
        }
    };
    fold(n);  // @line:churn_calls_lambda
    return acc;
}

}  // namespace

struct Mailbox {
    uint64_t seed = 3;
    TARGET_NOINLINE uint64_t send_message(unsigned long n);
};

// Two lambdas in one member function: {lambda()#1} and {lambda()#2}, the same DW_AT_name
// ("operator()") in the same scope; only their enclosing-function-qualified names differ.
TARGET_NOINLINE uint64_t Mailbox::send_message(unsigned long n) {
    uint64_t a = seed, b = seed + 1;
    auto encode = [&]() {
        for (unsigned long i = 0; i < n; ++i) {
            a = (a ^ i) * 0xff51afd7ed558ccdull;  // @line:encode_lambda
            asm volatile("" : "+r"(a));
        }
    };
    auto checksum = [&]() {
        for (unsigned long i = 0; i < n; ++i) {
            b = (b + i) * 0xc4ceb9fe1a85ec53ull;  // @line:checksum_lambda
            asm volatile("" : "+r"(b));
        }
    };
    encode();    // @line:send_calls_encode
    checksum();  // @line:send_calls_checksum
    seed = a ^ b;
    return seed;
}

TARGET_NOINLINE void mailbox_loop() {
    Mailbox box;
    for (;;) {
        uint64_t r = box.send_message(100000);  // @line:loop_calls_send
        r += churn(100000);                     // @line:loop_calls_churn
        g_sink.fetch_add(r, std::memory_order_relaxed);
    }
}

void* mailbox_thread(void*) {
    target::name_thread("mailbox");
    g_mailbox_tid = target::current_tid();
    mailbox_loop();  // @line:thread_calls_mailbox
    target::no_tail_call();
    return nullptr;
}

int main() {
    target::allow_any_tracer();
    pthread_t cruncher, mailbox;
    pthread_create(&cruncher, nullptr, crunch_thread, nullptr);
    pthread_create(&mailbox, nullptr, mailbox_thread, nullptr);
    while (g_cruncher_tid == 0 || g_mailbox_tid == 0) sched_yield();
    target::report("ready pid=" + std::to_string(getpid()) + " cruncher=" +
                   std::to_string(g_cruncher_tid) + " mailbox=" + std::to_string(g_mailbox_tid));
    pthread_join(cruncher, nullptr);  // @line:main_join
    return 0;
}
