// A hostile target for unwinders: one thread spins with a garbage stack pointer, one spins in
// machine code that has no unwind information (no .eh_frame FDE), and one is ordinary. Nothing
// here installs signal handlers: with a garbage sp a handler could not run, but default actions
// (SIGTERM, SIGKILL) still end the process.
#include <atomic>
#include <thread>
#include <vector>

#include "target_support.h"

// No .cfi directives: the assembler emits no FDE, so unwinders have only heuristics here.
asm(R"(
    .text
    .globl garbage_sp_spin
    .type garbage_sp_spin, @function
garbage_sp_spin:
    mov $0x1000, %rsp
    xor %ebp, %ebp
1:  pause
    jmp 1b
    .size garbage_sp_spin, .-garbage_sp_spin

    .globl nocfi_spin
    .type nocfi_spin, @function
nocfi_spin:
    push %rbp
    mov %rsp, %rbp
    sub $64, %rsp
1:  pause
    jmp 1b
    .size nocfi_spin, .-nocfi_spin
)");

extern "C" void garbage_sp_spin();
extern "C" void nocfi_spin();

namespace garbage_target {

std::atomic<int> started{0};

TARGET_NOINLINE void enter_garbage() {
    target::name_thread("garbage-sp");
    started.fetch_add(1);
    garbage_sp_spin();  // never returns
}

TARGET_NOINLINE void enter_nocfi() {
    target::name_thread("no-cfi");
    started.fetch_add(1);
    nocfi_spin();  // never returns
}

TARGET_NOINLINE void ordinary_sleep() {
    target::name_thread("ordinary");
    started.fetch_add(1);
    for (;;) pause();
}

}  // namespace garbage_target

int main() {
    std::vector<std::thread> threads;
    threads.emplace_back(garbage_target::enter_garbage);
    threads.emplace_back(garbage_target::enter_nocfi);
    threads.emplace_back(garbage_target::ordinary_sleep);
    while (garbage_target::started.load() < 3) std::this_thread::yield();
    target::report("ready");
    for (auto& t : threads) t.join();
}
