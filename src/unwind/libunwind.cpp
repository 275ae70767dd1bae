// The alternative unwinder (`--unwinder libunwind`): libunwind's remote unwinder with accessors
// over a ThreadCapture (docs/design.md §1.2).
//
// find_proc_info does not delegate to _UPT_find_proc_info: that one opens files by the path in
// the live /proc/PID/maps (deleted binaries and exited targets fail) and calls access_mem with
// its own UPT_info as the argument (docs/facts.md). Instead, like perf's libunwind support, it
// describes the module's .eh_frame_hdr search table (from the ELF libdwfl already holds) as a
// UNW_INFO_FORMAT_REMOTE_TABLE and lets libunwind's dwarf_search_unwind_table look ip up; every
// read then comes back to our access_mem with our own argument.
#include <dwarf.h>
#include <gelf.h>
#include <libunwind.h>

#include <cstring>
#include <optional>
#include <unordered_map>

#include "pmprof/elf/image_impl.h"
#include "pmprof/support/log.h"
#include "unwind/walk.h"

// Exported by libunwind-x86_64 (libunwind-ptrace and perf call it) but not declared in its
// public headers.
// NOLINTNEXTLINE(bugprone-reserved-identifier): libunwind's own name for it, not ours to choose.
extern "C" int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip,
                                                  unw_dyn_info_t* di, unw_proc_info_t* pi,
                                                  int need_unwind_info, void* arg);

namespace pmprof {
namespace {

/// Size of a DW_EH_PE-encoded value in .eh_frame_hdr, 0 when unsupported.
size_t encoded_size(uint8_t enc) {
    switch (enc & 0x0f) {
    case DW_EH_PE_absptr:
        return 8;
    case DW_EH_PE_udata2:
    case DW_EH_PE_sdata2:
        return 2;
    case DW_EH_PE_udata4:
    case DW_EH_PE_sdata4:
        return 4;
    case DW_EH_PE_udata8:
    case DW_EH_PE_sdata8:
        return 8;
    default:
        return 0;
    }
}

/// The binary-search table of a module's .eh_frame_hdr (LSB "Linux Standard Base Core
/// Specification", .eh_frame_hdr), as libunwind's remote-table format; nullopt when absent.
std::optional<unw_dyn_info_t> eh_frame_table(Dwfl_Module* mod) {
    Dwarf_Addr bias = 0;
    Elf* elf = dwfl_module_getelf(mod, &bias);
    Dwarf_Addr low = 0, high = 0;
    dwfl_module_info(mod, nullptr, &low, &high, nullptr, nullptr, nullptr, nullptr);
    size_t raw_size = 0, phnum = 0;
    const char* raw = elf != nullptr ? elf_rawfile(elf, &raw_size) : nullptr;
    if (raw == nullptr || elf_getphdrnum(elf, &phnum) != 0) return std::nullopt;
    for (size_t i = 0; i < phnum; ++i) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr || ph.p_type != PT_GNU_EH_FRAME)
            continue;
        if (ph.p_offset > raw_size || raw_size - ph.p_offset < 12) return std::nullopt;
        const auto* hdr = reinterpret_cast<const uint8_t*>(raw) + ph.p_offset;
        // version, eh_frame_ptr_enc, fde_count_enc, table_enc, then the two encoded values.
        const size_t ptr_size = encoded_size(hdr[1]);
        const size_t count_size = encoded_size(hdr[2]);
        if (hdr[0] != 1 || hdr[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4) || ptr_size == 0 ||
            (count_size != 4 && count_size != 8) ||
            raw_size - ph.p_offset < 4 + ptr_size + count_size)
            return std::nullopt;
        uint64_t fde_count = 0;
        std::memcpy(&fde_count, hdr + 4 + ptr_size, count_size);  // little-endian
        unw_dyn_info_t di{};
        di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
        di.start_ip = low;
        di.end_ip = high;
        di.u.rti.segbase = bias + ph.p_vaddr;  // datarel entries are relative to the header
        di.u.rti.table_data = bias + ph.p_vaddr + 4 + ptr_size + count_size;
        di.u.rti.table_len = fde_count * 8 / sizeof(unw_word_t);  // 2 x sdata4 per entry
        return di;
    }
    return std::nullopt;
}

class LibunwindUnwinder final : public Unwinder {
  public:
    LibunwindUnwinder(ProcessImage& image, MemoryReader& memory)
        : impl_(image.impl()), memory_(image, memory) {
        accessors_.find_proc_info = find_proc_info;
        accessors_.put_unwind_info = put_unwind_info;
        accessors_.get_dyn_info_list_addr = get_dyn_info_list_addr;
        accessors_.access_mem = access_mem;
        accessors_.access_reg = access_reg;
        accessors_.access_fpreg = access_fpreg;
        accessors_.resume = resume;
        accessors_.get_proc_name = nullptr;
        as_ = unw_create_addr_space(&accessors_, 0);
        // The modules of one image never change: parsed unwind info may be cached.
        if (as_ != nullptr) unw_set_caching_policy(as_, UNW_CACHE_GLOBAL);
    }
    ~LibunwindUnwinder() override {
        if (as_ != nullptr) unw_destroy_addr_space(as_);
    }
    LibunwindUnwinder(const LibunwindUnwinder&) = delete;
    LibunwindUnwinder& operator=(const LibunwindUnwinder&) = delete;

    RawStack unwind(const ThreadCapture& capture, size_t max_depth) override;

  private:
    const unw_dyn_info_t* table_for(uint64_t ip);
    bool is_sigreturn_trampoline(uint64_t pc);

    // ---- unw_accessors_t; `arg` is always `this` (unw_init_remote). No exception escapes. ----
    static int find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t* pi, int need,
                              void* arg) {
        auto* self = static_cast<LibunwindUnwinder*>(arg);
        try {
            const unw_dyn_info_t* table = self->table_for(ip);
            if (table == nullptr) return -UNW_ENOINFO;
            unw_dyn_info_t di = *table;
            return _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need, arg);
        } catch (const std::exception&) {
            return -UNW_ENOINFO;
        }
    }
    // Table-format unwind info is freed by libunwind itself.
    static void put_unwind_info(unw_addr_space_t, unw_proc_info_t*, void*) {}
    static int get_dyn_info_list_addr(unw_addr_space_t, unw_word_t*, void*) { return -UNW_ENOINFO; }
    static int access_mem(unw_addr_space_t, unw_word_t address, unw_word_t* value, int write,
                          void* arg) {
        if (write != 0) return -UNW_EINVAL;  // never write the target (rule zero)
        auto* self = static_cast<LibunwindUnwinder*>(arg);
        try {
            return self->memory_.read(address, value, sizeof *value) ? 0 : -UNW_EINVAL;
        } catch (const std::exception&) {
            return -UNW_EINVAL;
        }
    }
    static int access_reg(unw_addr_space_t, unw_regnum_t reg, unw_word_t* value, int write,
                          void* arg) {
        auto* self = static_cast<LibunwindUnwinder*>(arg);
        // UNW_X86_64_RAX..UNW_X86_64_RIP are 0..16, the same numbering as Registers::dwarf.
        if (write != 0 || reg < 0 || reg >= Registers::kCount) return -UNW_EBADREG;
        *value = self->memory_.capture()->regs.dwarf[static_cast<size_t>(reg)];
        return 0;
    }
    static int access_fpreg(unw_addr_space_t, unw_regnum_t, unw_fpreg_t*, int, void*) {
        return -UNW_EBADREG;
    }
    static int resume(unw_addr_space_t, unw_cursor_t*, void*) { return -UNW_EINVAL; }

    ProcessImage::Impl& impl_;
    CaptureMemory memory_;
    unw_accessors_t accessors_{};
    unw_addr_space_t as_ = nullptr;
    std::unordered_map<Dwfl_Module*, std::optional<unw_dyn_info_t>> tables_;
};

const unw_dyn_info_t* LibunwindUnwinder::table_for(uint64_t ip) {
    Dwfl_Module* mod = dwfl_addrmodule(impl_.dwfl, ip);
    if (mod == nullptr) return nullptr;
    auto it = tables_.find(mod);
    if (it == tables_.end()) it = tables_.emplace(mod, eh_frame_table(mod)).first;
    return it->second ? &*it->second : nullptr;
}

/// x86_64 Linux rt_sigreturn trampoline: "mov $15, %rax; syscall" (48 c7 c0 0f 00 00 00 0f 05),
/// the sequence libunwind's own signal-frame check looks for. libunwind's unw_is_signal_frame
/// describes the frame it last stepped through, which differs between versions.
bool LibunwindUnwinder::is_sigreturn_trampoline(uint64_t pc) {
    static constexpr uint8_t kSigreturn[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
    uint8_t code[sizeof kSigreturn];
    return memory_.read(pc, code, sizeof code) && std::memcmp(code, kSigreturn, sizeof code) == 0;
}

RawStack LibunwindUnwinder::unwind(const ThreadCapture& capture, size_t max_depth) {
    RawStack out;
    if (as_ == nullptr) {
        out.truncated = true;
        out.stop_reason = "unw_create_addr_space failed";
        return out;
    }
    memory_.set_capture(&capture);
    FrameGuard guard(max_depth);
    unw_cursor_t cursor;
    int rc = unw_init_remote(&cursor, as_, this);
    bool exact = true;  // frame 0, and any frame a signal interrupted
    while (rc >= 0) {
        unw_word_t ip = 0, sp = 0;
        unw_get_reg(&cursor, UNW_REG_IP, &ip);
        bool sp_known = unw_get_reg(&cursor, UNW_REG_SP, &sp) == 0;
        if (!guard.accept(ip, exact, sp_known, sp)) {
            out.truncated = true;
            out.stop_reason = guard.reason();
            break;
        }
        // A signal trampoline's pc is its first instruction, not a return address after a call
        // (glibc starts __restore_rt's FDE one byte early for pc - 1 lookups, but its symbol at
        // the pc): it is exact, like the frame the signal interrupted (libdwfl agrees).
        const bool trampoline = is_sigreturn_trampoline(ip);
        out.frames.push_back(RawFrame{ip, exact || trampoline});
        exact = trampoline;
        rc = unw_step(&cursor);
        // libunwind also answers 0 when it merely ran out of ways to go on: only a frame whose
        // CFI leaves the return address undefined (_start, thread start) is the outermost.
        if (rc == 0 && !cfi_marks_outermost(impl_.dwfl, out.frames.back())) {
            out.truncated = true;
            out.stop_reason = fmt::format(
                "libunwind stopped at pc {:#x} before the outermost frame", out.frames.back().pc);
        }
        if (rc == 0) break;
    }
    if (rc < 0) {
        out.truncated = true;
        out.stop_reason = fmt::format("libunwind: {}", unw_strerror(rc));
    }
    memory_.set_capture(nullptr);
    return out;
}

}  // namespace

std::unique_ptr<Unwinder> make_libunwind_unwinder(ProcessImage& image, MemoryReader& memory) {
    return std::make_unique<LibunwindUnwinder>(image, memory);
}

}  // namespace pmprof
