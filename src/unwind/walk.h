// Shared by the unwinders (src/unwind/dwfl.cpp, unwind_cfi*.cpp, src/unwind/libunwind.cpp): what
// memory an unwind may read, when a stack must be cut short, and libdwfl's own walk.
#pragma once

#include <elfutils/libdwfl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "pmprof/elf/image.h"
#include "pmprof/elf/image_impl.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/types.h"
#include "pmprof/unwind/unwind.h"

namespace pmprof {

/// The memory an unwind of a copy may see (docs/design.md §1.2): the stack copy; then the
/// non-writable PT_LOAD segments of the reported modules, read from the ELF files libdwfl holds
/// (so it works after the target exits); then other read-only file-backed mappings through the
/// MemoryReader, cached by page. The live, writable memory (the stack has changed since) is
/// never read.
class CaptureMemory {
  public:
    CaptureMemory(ProcessImage& image, MemoryReader& memory) : image_(image), memory_(memory) {}
    /// The capture being unwound; it must stay alive until the next call.
    void set_capture(const ThreadCapture* capture) { capture_ = capture; }
    const ThreadCapture* capture() const { return capture_; }
    /// Copies exactly `len` bytes at `address`; false when any of them is not available.
    bool read(uint64_t address, void* out, size_t len);

  private:
    /// A non-writable, file-backed part of a module: [start, end) maps to data + (a - start).
    struct Segment {
        uint64_t start = 0;
        uint64_t end = 0;
        const uint8_t* data = nullptr;
    };
    bool read_module(uint64_t address, void* out, size_t len);
    bool read_mapped_file(uint64_t address, void* out, size_t len);
    const std::vector<Segment>& segments();

    ProcessImage& image_;
    MemoryReader& memory_;
    const ThreadCapture* capture_ = nullptr;
    bool segments_loaded_ = false;
    std::vector<Segment> segments_;  // sorted by start
    std::unordered_map<uint64_t, std::vector<uint8_t>>
        pages_;  // page address -> bytes ("" = unreadable)
};

/// Decides, frame by frame, whether a walk goes on: max depth, and loops (a return to a caller
/// must raise sp; a frame reached through a signal may move it anywhere, but never twice to the
/// same pc and sp).
class FrameGuard {
  public:
    explicit FrameGuard(size_t max_depth) : max_depth_(max_depth) {}
    /// Called for each new frame; false (with reason()) when the walk must stop before it.
    bool accept(uint64_t pc, bool exact, bool sp_known, uint64_t sp);
    const std::string& reason() const { return reason_; }

  private:
    size_t max_depth_;
    size_t depth_ = 0;
    bool have_prev_sp_ = false;
    uint64_t prev_sp_ = 0;
    std::vector<std::pair<uint64_t, uint64_t>>
        seen_;  // (pc, sp) of frames reached through a signal
    std::string reason_;
};

/// True when the CFI at the frame's pc leaves the return address (rip) undefined: the
/// outermost frame (_start, a thread's start). Both libdwfl and libunwind also report "no more
/// frames" when they merely could not go on; this tells the two apart.
bool cfi_marks_outermost(Dwfl* dwfl, const RawFrame& frame);

/// libdwfl's own walk (src/unwind/dwfl.cpp): dwfl_getthread_frames with our thread callbacks, its
/// CFI interpreter and its x86_64 frame-pointer fallback. `image` and `memory` must outlive it.
class DwflWalker {
  public:
    DwflWalker(ProcessImage& image, CaptureMemory& memory) : impl_(image.impl()), memory_(memory) {}
    /// Attaches the thread callbacks to the image's Dwfl (dwfl_attach_state, once per image);
    /// false when libdwfl cannot unwind this process at all: unwind() then says why.
    bool attach();
    /// Unwinds `capture` (ok) up to max_depth frames; sets and clears memory's capture.
    RawStack unwind(const ThreadCapture& capture, size_t max_depth);

  private:
    ProcessImage::Impl& impl_;
    CaptureMemory& memory_;
    std::string attach_error_;
};

/// Only libdwfl's walk: the reference the cached walk must match (tests, comparisons).
std::unique_ptr<Unwinder> make_dwfl_unwinder(ProcessImage& image, MemoryReader& memory);
/// The default (UnwinderKind::Dwfl): rules cached per pc, libdwfl's walk where they do not
/// apply (src/unwind/cfi_dwfl.cpp).
std::unique_ptr<Unwinder> make_cached_dwfl_unwinder(ProcessImage& image, MemoryReader& memory);
std::unique_ptr<Unwinder> make_libunwind_unwinder(ProcessImage& image, MemoryReader& memory);

}  // namespace pmprof
