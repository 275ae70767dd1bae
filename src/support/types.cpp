// Mapping lookup, and thread state letters as printed by the kernel in /proc/PID/stat
// (fs/proc/array.c, task_state_array).
#include "pmprof/support/types.h"

#include <algorithm>

namespace pmprof {

const MemoryMap* find_mapping(const std::vector<MemoryMap>& maps, uint64_t address) {
    auto it = std::upper_bound(maps.begin(), maps.end(), address,
                               [](uint64_t a, const MemoryMap& m) { return a < m.start; });
    if (it == maps.begin()) return nullptr;
    --it;
    return it->contains(address) ? &*it : nullptr;
}

ThreadState thread_state_from_char(char c) {
    switch (c) {
    case 'R':
        return ThreadState::Running;
    case 'S':
        return ThreadState::Sleeping;
    case 'D':
        return ThreadState::DiskSleep;
    case 'T':
        return ThreadState::Stopped;
    case 't':
        return ThreadState::TracingStop;
    case 'Z':
        return ThreadState::Zombie;
    case 'X':
        return ThreadState::Dead;
    case 'I':
        return ThreadState::Idle;
    case 'P':
        return ThreadState::Parked;
    default:
        return ThreadState::Unknown;
    }
}

std::string_view thread_state_name(ThreadState s) {
    switch (s) {
    case ThreadState::Running:
        return "running";
    case ThreadState::Sleeping:
        return "sleeping";
    case ThreadState::DiskSleep:
        return "disk sleep";
    case ThreadState::Stopped:
        return "stopped";
    case ThreadState::TracingStop:
        return "tracing stop";
    case ThreadState::Zombie:
        return "zombie";
    case ThreadState::Dead:
        return "dead";
    case ThreadState::Idle:
        return "idle";
    case ThreadState::Parked:
        return "parked";
    case ThreadState::Unknown:
        break;
    }
    return "unknown";
}

}  // namespace pmprof
