// libdwfl's CFI unwinder (with its x86_64 frame-pointer fallback) driven by our own
// Dwfl_Thread_Callbacks over a ThreadCapture (docs/design.md §1.2). The default unwinder
// (src/unwind/cfi_dwfl.cpp) walks most stacks with cached rules and hands the rest to this walk.
//
// dwfl_attach_state may be called once per Dwfl, so the callbacks are attached once per image
// with the image's Impl as their argument; they find the capture being unwound through
// Impl::unwind_context, which DwflWalker::unwind() sets for the duration of one walk.
#include <elfutils/libdwfl.h>

#include <exception>

#include "pmprof/elf/image_impl.h"
#include "pmprof/support/log.h"
#include "unwind/walk.h"

namespace pmprof {
namespace {

/// One walk in progress: what the callbacks read and the frames they produce.
struct DwflWalk {
    CaptureMemory* memory = nullptr;
    const ThreadCapture* capture = nullptr;
    RawStack* out = nullptr;
    FrameGuard guard;
    bool stopped_by_us = false;
    std::string frame_error;
};

DwflWalk* current_walk(void* dwfl_arg) {
    return static_cast<DwflWalk*>(static_cast<ProcessImage::Impl*>(dwfl_arg)->unwind_context);
}

// ---- Dwfl_Thread_Callbacks (no exception may cross them) --------------------------------------

pid_t next_thread(Dwfl*, void* dwfl_arg, void** thread_argp) {
    DwflWalk* walk = current_walk(dwfl_arg);
    if (walk == nullptr || *thread_argp != nullptr) return 0;
    *thread_argp = walk;
    return walk->capture->tid;
}

bool get_thread(Dwfl*, pid_t tid, void* dwfl_arg, void** thread_argp) {
    DwflWalk* walk = current_walk(dwfl_arg);
    if (walk == nullptr || walk->capture->tid != tid) return false;
    *thread_argp = walk;
    return true;
}

bool memory_read(Dwfl*, Dwarf_Addr address, Dwarf_Word* result, void* dwfl_arg) {
    DwflWalk* walk = current_walk(dwfl_arg);
    if (walk == nullptr) return false;
    try {
        uint64_t word = 0;
        if (!walk->memory->read(address, &word, sizeof word)) return false;
        *result = word;
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

bool set_initial_registers(Dwfl_Thread* thread, void* thread_arg) {
    auto* walk = static_cast<DwflWalk*>(thread_arg);
    // DWARF numbering 0..16 (rip is 16, the return-address column): exactly what Registers holds.
    Dwarf_Word regs[Registers::kCount];
    for (int i = 0; i < Registers::kCount; ++i)
        regs[i] = walk->capture->regs.dwarf[static_cast<size_t>(i)];
    return dwfl_thread_state_registers(thread, 0, Registers::kCount, regs);
}

const Dwfl_Thread_Callbacks kThreadCallbacks = {
    next_thread, get_thread, memory_read, set_initial_registers, nullptr, nullptr,
};

int on_frame(Dwfl_Frame* state, void* arg) {
    auto* walk = static_cast<DwflWalk*>(arg);
    try {
        Dwarf_Addr pc = 0;
        bool activation = false;
        if (!dwfl_frame_pc(state, &pc, &activation)) {
            walk->frame_error = fmt::format("dwfl_frame_pc: {}", dwfl_errmsg(-1));
            walk->stopped_by_us = true;
            return DWARF_CB_ABORT;
        }
        Dwarf_Word sp = 0;
        bool sp_known = dwfl_frame_reg(state, Registers::kSp, &sp) == 0;
        if (!walk->guard.accept(pc, activation, sp_known, sp)) {
            walk->stopped_by_us = true;
            return DWARF_CB_ABORT;
        }
        walk->out->frames.push_back(RawFrame{pc, activation});
        return DWARF_CB_OK;
    } catch (const std::exception& e) {
        walk->frame_error = e.what();
        walk->stopped_by_us = true;
        return DWARF_CB_ABORT;
    }
}

class DwflUnwinder final : public Unwinder {
  public:
    DwflUnwinder(ProcessImage& image, MemoryReader& memory)
        : memory_(image, memory), walker_(image, memory_) {}
    RawStack unwind(const ThreadCapture& capture, size_t max_depth) override {
        return walker_.unwind(capture, max_depth);
    }

  private:
    CaptureMemory memory_;
    DwflWalker walker_;
};

}  // namespace

bool DwflWalker::attach() {
    if (impl_.state_attached) return true;
    if (!attach_error_.empty()) return false;
    // ELF NULL: libdwfl takes the architecture from the first module with an ELF file.
    if (!dwfl_attach_state(impl_.dwfl, nullptr, impl_.pid, &kThreadCallbacks, &impl_)) {
        attach_error_ = fmt::format("dwfl_attach_state pid {}: {}", impl_.pid, dwfl_errmsg(-1));
        return false;
    }
    impl_.state_attached = true;
    return true;
}

RawStack DwflWalker::unwind(const ThreadCapture& capture, size_t max_depth) {
    RawStack out;
    if (!attach()) {
        out.truncated = true;
        out.stop_reason = attach_error_;
        return out;
    }
    DwflWalk walk{&memory_, &capture, &out, FrameGuard(max_depth), false, {}};
    memory_.set_capture(&capture);
    impl_.unwind_context = &walk;
    int rc = dwfl_getthread_frames(impl_.dwfl, capture.tid, on_frame, &walk);
    // Read the error before anything else can reset libdwfl's thread-local error state.
    std::string dwfl_error = rc == -1 ? dwfl_errmsg(-1) : "";
    impl_.unwind_context = nullptr;
    memory_.set_capture(nullptr);
    if (walk.stopped_by_us) {
        out.truncated = true;
        out.stop_reason = walk.frame_error.empty() ? walk.guard.reason() : walk.frame_error;
    } else if (rc != 0) {
        out.truncated = true;
        out.stop_reason = "libdwfl: " + dwfl_error;
    } else if (!out.frames.empty() && !cfi_marks_outermost(impl_.dwfl, out.frames.back())) {
        // libdwfl ends without an error when neither CFI nor its frame-pointer fallback can
        // go on (libdwfl.h: "consider error as zero").
        out.truncated = true;
        out.stop_reason = fmt::format("libdwfl stopped at pc {:#x} before the outermost frame",
                                      out.frames.back().pc);
    }
    return out;
}

std::unique_ptr<Unwinder> make_dwfl_unwinder(ProcessImage& image, MemoryReader& memory) {
    return std::make_unique<DwflUnwinder>(image, memory);
}

}  // namespace pmprof
