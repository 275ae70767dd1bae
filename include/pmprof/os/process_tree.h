// A process's descendants, from /proc (docs/design.md §4.7: how --subprocesses finds children).
#pragma once

#include <sys/types.h>

#include <vector>

namespace pmprof {

/// The child processes of `pid` (fork, vfork, clone without CLONE_THREAD), from every thread's
/// /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN), sorted; empty once `pid` is gone. A child
/// that exited is listed until its parent reaps it.
std::vector<pid_t> list_children(pid_t pid);
/// `roots` and every descendant of theirs alive now (list_children, recursively), each once, in
/// the order found: roots first, then breadth first.
std::vector<pid_t> list_process_tree(const std::vector<pid_t>& roots);
}  // namespace pmprof
