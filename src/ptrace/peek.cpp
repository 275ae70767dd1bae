// PTRACE_PEEKDATA, the last way to read a target's memory (src/ptrace/memory.cpp tries
// process_vm_readv and /proc/PID/mem first): only for a thread this thread holds stopped.
#include <sys/ptrace.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "pmprof/ptrace/session.h"

namespace pmprof {

size_t peek_memory(pid_t tid, uint64_t address, void* out, size_t len) {
    auto* dst = static_cast<uint8_t*>(out);
    size_t done = 0;
    // Whole aligned words: the first and last ones may reach outside [address, address + len).
    uint64_t word_addr = address & ~uint64_t{7};
    while (done < len) {
        errno = 0;
        const long word =
            ::ptrace(PTRACE_PEEKDATA, tid, reinterpret_cast<void*>(word_addr), nullptr);
        if (errno != 0) break;  // -1 is a valid word: only errno tells
        const size_t skip = word_addr < address ? address - word_addr : 0;
        const size_t n = std::min<size_t>(sizeof word - skip, len - done);
        std::memcpy(dst + done, reinterpret_cast<const uint8_t*>(&word) + skip, n);
        done += n;
        word_addr += sizeof word;
    }
    if (done == 0 && errno == 0) errno = EIO;
    return done;
}

}  // namespace pmprof
