// The kernel side of a blocked thread: /proc/PID/task/TID/stack (readable by root only) and the
// syscall a restart_syscall continues.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace pmprof {

struct ThreadEntry;

/// "[<0>] futex_wait_queue+0x60/0xa0\n..." -> {"futex_wait_queue+0x60/0xa0", ...}, innermost
/// first, without the syscall entry frames every thread has (entry_SYSCALL_64*, do_syscall_64).
std::vector<std::string> parse_kernel_stack(std::string_view text);
/// The thread's kernel stack; empty when unreadable (not root, running, exited).
std::vector<std::string> read_kernel_stack(pid_t pid, pid_t tid);
/// For a thread in restart_syscall: the syscall it restarts ("clock_nanosleep", "futex",
/// "poll"), from its kernel stack or, without one, its innermost user frames; "" when unknown.
std::string restarted_syscall(const ThreadEntry& t);

}  // namespace pmprof
