// Plain data shared by every layer: memory maps, thread states, register and stack copies,
// raw (unsymbolized) stacks and symbolized frames.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pmprof {

/// One line of /proc/PID/maps.
struct MemoryMap {
    uint64_t start = 0;  // first address
    uint64_t end = 0;    // one past the last address
    std::string perms;   // "r-xp"
    uint64_t file_offset = 0;
    std::string dev;  // "fd:01"
    uint64_t inode = 0;
    std::string path;  // " (deleted)" stripped; "[stack]", "[heap]", "" for anonymous
    bool deleted = false;

    bool readable() const { return !perms.empty() && perms[0] == 'r'; }
    bool writable() const { return perms.size() > 1 && perms[1] == 'w'; }
    bool executable() const { return perms.size() > 2 && perms[2] == 'x'; }
    bool file_backed() const { return !path.empty() && path[0] == '/'; }
    bool contains(uint64_t a) const { return a >= start && a < end; }
};

/// The mapping of `maps` (sorted by start, as /proc/PID/maps lists them) that holds `address`,
/// or nullptr: a binary search, for the many lookups a walk or an unwind makes.
const MemoryMap* find_mapping(const std::vector<MemoryMap>& maps, uint64_t address);

/// The kernel's task state letter from /proc/.../stat, as an enum.
enum class ThreadState : char {
    Running = 'R',
    Sleeping = 'S',
    DiskSleep = 'D',
    Stopped = 'T',
    TracingStop = 't',
    Zombie = 'Z',
    Dead = 'X',
    Idle = 'I',
    Parked = 'P',
    Unknown = '?',
};

/// Maps a state letter to ThreadState (Unknown for anything else).
ThreadState thread_state_from_char(char c);
/// "running", "sleeping", "disk sleep", "stopped", "tracing stop", "zombie", ...
std::string_view thread_state_name(ThreadState s);

/// General registers in DWARF numbering for x86_64 (0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi, 5 rdi,
/// 6 rbp, 7 rsp, 8-15 r8-r15, 16 rip), the order libdwfl's set_initial_registers expects.
/// These numbers are the x86_64 psABI's (figure 3.36), which libdw, libdwfl and libunwind
/// (UNW_X86_64_RAX..UNW_X86_64_RIP) all use; rip is also the CIE's return-address column.
struct Registers {
    static constexpr int kCount = 17;
    static constexpr int kArg0 = 5;  // rdi: a function's first integer argument
    static constexpr int kFp = 6;
    static constexpr int kSp = 7;
    static constexpr int kPc = 16;
    std::array<uint64_t, kCount> dwarf{};
    uint64_t fs_base = 0;  // thread pointer, for TLS

    uint64_t pc() const { return dwarf[kPc]; }
    uint64_t sp() const { return dwarf[kSp]; }
    uint64_t fp() const { return dwarf[kFp]; }
};

/// The x86_64 red zone (psABI 3.2.2): the 128 bytes below sp that a leaf function may use
/// without moving sp, so a copy of a stopped thread's stack starts this far below sp.
inline constexpr uint64_t kRedZone = 128;

/// A copy of the top of a stack: bytes[i] was at address base + i.
struct StackCopy {
    uint64_t base = 0;
    std::vector<uint8_t> bytes;

    bool contains(uint64_t a, size_t n) const { return a >= base && a - base + n <= bytes.size(); }
};

/// What was taken from one thread while it was stopped.
struct ThreadCapture {
    pid_t tid = 0;
    bool ok = false;    // registers and stack were copied
    std::string error;  // why not, when !ok ("tid 42 exited", "not stopped within 100 ms")
    Registers regs;
    StackCopy stack;
    uint64_t pause_ns = 0;      // stopped: from the tracer seeing the stop to the resume
    uint64_t stop_wait_ns = 0;  // PTRACE_INTERRUPT until the stop was seen (the thread ran or
                                // waited for a cpu meanwhile: not a pause)
    // The system call this stop made fail with EINTR (the thread was blocked in epoll_wait,
    // sigtimedwait, semop, a recv with SO_RCVTIMEO...: rax was -EINTR at the stop), -1 if none.
    long eintr_syscall = -1;
    // The system call this stop broke: failed with EINTR, or to be restarted after the resume
    // (rax -ERESTART*, which the thread never sees); -1 if none.
    long broken_syscall = -1;
    // The system call the thread stopped at the return of (orig_rax), -1 for a stop in user code.
    long in_syscall = -1;
};

/// One frame of an unwound stack.
struct RawFrame {
    uint64_t pc = 0;
    /// True when pc is the exact instruction (frame 0, the frame a signal interrupted, or a
    /// signal trampoline the handler returns to); false for return addresses, which are
    /// symbolized at pc - 1.
    bool exact = false;

    uint64_t lookup_pc() const { return exact ? pc : pc - 1; }
    bool operator==(const RawFrame&) const = default;
};

/// An unwound, not yet symbolized stack; frames[0] is the innermost.
struct RawStack {
    std::vector<RawFrame> frames;
    bool truncated = false;   // unwinding stopped before the outermost frame (error or max depth)
    std::string stop_reason;  // why, when truncated
};

/// One function on a symbolized frame: the real one, or one inlined into it.
struct SourceFrame {
    std::string function;  // demangled; empty when unknown
    std::string mangled;   // linkage name as in the symbol table; may equal `function`
    std::string file;      // source file; empty when there is no line info
    int line = 0;
    int start_line = 0;    // line of the function's declaration, 0 when unknown
    bool inlined = false;  // this function was inlined into the next entry
};

/// Everything known about one pc: module, offset and the inline chain, innermost first (the last
/// entry is the function the machine code belongs to).
struct SymbolizedPc {
    uint64_t pc = 0;
    std::string module;    // path of the mapped file; "[vdso]"; empty when no mapping covers pc
    std::string build_id;  // hex, empty when unknown
    uint64_t module_offset = 0;  // pc relative to the module's load bias (what addr2line wants)
    std::vector<SourceFrame> frames;  // empty when no symbol covers pc: print module+0xOFFSET
};

}  // namespace pmprof
