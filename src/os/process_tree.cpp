// /proc/PID/task/TID/children, one process's descendants (include/pmprof/os/process_tree.h).
#include "pmprof/os/process_tree.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "pmprof/os/procfs.h"

namespace pmprof {

std::vector<pid_t> list_children(pid_t pid) {
    std::vector<pid_t> out;
    auto tids = list_tasks(pid);
    if (!tids.ok()) return out;
    for (pid_t tid : *tids) {
        std::ifstream in(fmt::format("/proc/{}/task/{}/children", pid, tid));
        for (long child = 0; in >> child;)
            if (child > 0) out.push_back(static_cast<pid_t>(child));
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::vector<pid_t> list_process_tree(const std::vector<pid_t>& roots) {
    std::vector<pid_t> out;
    std::set<pid_t> seen;
    for (pid_t r : roots)
        if (seen.insert(r).second) out.push_back(r);
    for (size_t i = 0; i < out.size() && out.size() < 100000; ++i)
        for (pid_t c : list_children(out[i]))
            if (seen.insert(c).second) out.push_back(c);
    return out;
}

}  // namespace pmprof
