// Unwinder selection and what both unwinders share: the memory a copy-unwind may read and the
// guard that ends a walk on loops and at max depth.
#include "pmprof/unwind/unwind.h"

#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "pmprof/elf/image_impl.h"
#include "pmprof/support/log.h"
#include "unwind/walk.h"

namespace pmprof {

Result<UnwinderKind> parse_unwinder_kind(std::string_view name) {
    if (name == "dwfl" || name == "libdw" || name == "libdwfl") return UnwinderKind::Dwfl;
    if (name == "libunwind") return UnwinderKind::Libunwind;
    return Error{fmt::format("unknown unwinder '{}' (expected dwfl or libunwind)", name)};
}

std::unique_ptr<Unwinder> make_unwinder(UnwinderKind kind, ProcessImage& image,
                                        MemoryReader& memory) {
    if (kind == UnwinderKind::Libunwind) return make_libunwind_unwinder(image, memory);
    return make_cached_dwfl_unwinder(image, memory);
}

// ---- CaptureMemory --------------------------------------------------------------------------

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr size_t kMaxCachedPages = 4096;  // 16 MiB of code and unwind tables at most

int collect_segments(Dwfl_Module* mod, void**, const char*, Dwarf_Addr, void* arg) {
    auto* out = static_cast<std::vector<std::tuple<uint64_t, uint64_t, const uint8_t*>>*>(arg);
    Dwarf_Addr bias = 0;
    Elf* elf = dwfl_module_getelf(mod, &bias);
    if (elf == nullptr) return DWARF_CB_OK;
    size_t raw_size = 0;
    const char* raw = elf_rawfile(elf, &raw_size);
    size_t phnum = 0;
    if (raw == nullptr || elf_getphdrnum(elf, &phnum) != 0) return DWARF_CB_OK;
    for (size_t i = 0; i < phnum; ++i) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr) continue;
        if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) != 0 || ph.p_filesz == 0) continue;
        if (ph.p_offset > raw_size || ph.p_filesz > raw_size - ph.p_offset) continue;
        out->emplace_back(bias + ph.p_vaddr, bias + ph.p_vaddr + ph.p_filesz,
                          reinterpret_cast<const uint8_t*>(raw) + ph.p_offset);
    }
    return DWARF_CB_OK;
}

}  // namespace

const std::vector<CaptureMemory::Segment>& CaptureMemory::segments() {
    if (segments_loaded_) return segments_;
    segments_loaded_ = true;
    std::vector<std::tuple<uint64_t, uint64_t, const uint8_t*>> found;
    dwfl_getmodules(image_.impl().dwfl, collect_segments, &found, 0);
    for (auto& [start, end, data] : found) segments_.push_back(Segment{start, end, data});
    std::sort(segments_.begin(), segments_.end(),
              [](const Segment& a, const Segment& b) { return a.start < b.start; });
    return segments_;
}

bool CaptureMemory::read_module(uint64_t address, void* out, size_t len) {
    const auto& segs = segments();
    auto it = std::upper_bound(segs.begin(), segs.end(), address,
                               [](uint64_t a, const Segment& s) { return a < s.start; });
    if (it == segs.begin()) return false;
    --it;
    if (address < it->start || address - it->start + len > it->end - it->start) return false;
    std::memcpy(out, it->data + (address - it->start), len);
    return true;
}

bool CaptureMemory::read_mapped_file(uint64_t address, void* out, size_t len) {
    auto* dst = static_cast<uint8_t*>(out);
    while (len > 0) {
        const uint64_t page = address & ~(kPageSize - 1);
        auto it = pages_.find(page);
        if (it == pages_.end()) {
            const MemoryMap* m = image_.find_map(page);
            std::vector<uint8_t> bytes;
            // Only read-only file mappings: their contents cannot have changed since the stop.
            if (m != nullptr && m->file_backed() && !m->writable() && m->readable()) {
                bytes.resize(kPageSize);
                auto n = memory_.read(page, bytes.data(), bytes.size());
                if (!n.ok() || *n != bytes.size()) bytes.clear();
            }
            if (pages_.size() >= kMaxCachedPages) pages_.clear();
            it = pages_.emplace(page, std::move(bytes)).first;
        }
        if (it->second.empty()) return false;
        const size_t in_page = std::min<uint64_t>(len, page + kPageSize - address);
        std::memcpy(dst, it->second.data() + (address - page), in_page);
        dst += in_page;
        address += in_page;
        len -= in_page;
    }
    return true;
}

bool CaptureMemory::read(uint64_t address, void* out, size_t len) {
    if (capture_ != nullptr && capture_->stack.contains(address, len)) {
        std::memcpy(out, capture_->stack.bytes.data() + (address - capture_->stack.base), len);
        return true;
    }
    if (address + len < address) return false;
    return read_module(address, out, len) || read_mapped_file(address, out, len);
}

// ---- the end of a stack -------------------------------------------------------------------

bool cfi_marks_outermost(Dwfl* dwfl, const RawFrame& frame) {
    const uint64_t pc = frame.lookup_pc();
    Dwfl_Module* mod = dwfl_addrmodule(dwfl, pc);
    if (mod == nullptr) return false;
    for (bool eh : {true, false}) {
        Dwarf_Addr bias = 0;
        Dwarf_CFI* cfi = eh ? dwfl_module_eh_cfi(mod, &bias) : dwfl_module_dwarf_cfi(mod, &bias);
        Dwarf_Frame* cfa = nullptr;
        if (cfi == nullptr || dwarf_cfi_addrframe(cfi, pc - bias, &cfa) != 0) continue;
        Dwarf_Op ops_mem[3];
        Dwarf_Op* ops = nullptr;
        size_t nops = 0;
        // libdw.h: nops 0 with ops == ops_mem is "undefined"; ops NULL would be "same_value".
        bool undefined = dwarf_frame_register(cfa, Registers::kPc, ops_mem, &ops, &nops) == 0 &&
                         nops == 0 && ops == ops_mem;
        free(cfa);
        return undefined;
    }
    return false;
}

// ---- FrameGuard -----------------------------------------------------------------------------

bool FrameGuard::accept(uint64_t pc, bool exact, bool sp_known, uint64_t sp) {
    if (depth_ >= max_depth_) {
        reason_ = fmt::format("max depth {} reached", max_depth_);
        return false;
    }
    if (depth_ > 0 && pc == 0) {
        reason_ = "pc 0";
        return false;
    }
    if (depth_ > 0 && sp_known && have_prev_sp_) {
        if (!exact && sp <= prev_sp_) {
            // Returning to a caller pops at least the return address: sp must grow.
            reason_ = fmt::format("sp {:#x} did not grow past {:#x} (loop or corrupt stack)", sp,
                                  prev_sp_);
            return false;
        }
        if (exact) {
            auto key = std::make_pair(pc, sp);
            if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) {
                reason_ = fmt::format("frame pc {:#x} sp {:#x} seen twice (loop)", pc, sp);
                return false;
            }
            seen_.push_back(key);
        }
    }
    have_prev_sp_ = sp_known;
    prev_sp_ = sp;
    ++depth_;
    return true;
}

}  // namespace pmprof
