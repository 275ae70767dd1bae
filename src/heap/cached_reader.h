// Private to the heap module: a block-caching reader over the mappings, used by the walker so a
// whole heap is copied with few process_vm_readv calls while the target is stopped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pmprof/ptrace/memory.h"
#include "pmprof/support/types.h"

namespace pmprof::heap_detail {

/// Sorted mappings with a binary-searched lookup.
class MapIndex {
  public:
    explicit MapIndex(const std::vector<MemoryMap>& maps);
    /// The mapping containing `address`, or nullptr.
    const MemoryMap* find(uint64_t address) const;
    /// True when [address, address + len) lies in one readable mapping.
    bool readable(uint64_t address, uint64_t len) const;
    const std::vector<MemoryMap>& maps() const { return maps_; }

  private:
    std::vector<MemoryMap> maps_;
};

/// Reads through 1 MiB blocks clamped to the mapping that holds them. A few blocks are kept
/// (least recently loaded replaced) in buffers reused for the whole walk: the walk is
/// sequential, and reusing buffers avoids faulting in a copy of the whole heap.
class CachedReader final : public MemoryReader {
  public:
    static constexpr uint64_t kBlock = uint64_t{1} << 20;
    CachedReader(MemoryReader& under, const MapIndex& maps) : under_(under), maps_(maps) {}
    Result<size_t> read(uint64_t address, void* out, size_t len) override;
    uint64_t bytes_copied() const { return bytes_copied_; }
    /// Pointer to `len` cached bytes at `address` (loading its block), or nullptr when they are
    /// not all in one block: the walker's fast path, no copy and no virtual call.
    const uint8_t* span(uint64_t address, size_t len) {
        const Block* b = block_for(address);
        if (!b || address < b->start || address - b->start + len > b->bytes.size()) return nullptr;
        return b->bytes.data() + (address - b->start);
    }

  private:
    static constexpr size_t kBlocks = 8;
    struct Block {
        uint64_t map_start = 0, index = UINT64_MAX;  // key: (mapping start, address / kBlock)
        uint64_t start = 0;
        std::vector<uint8_t> bytes;
    };
    const Block* block_for(uint64_t address);
    MemoryReader& under_;
    const MapIndex& maps_;
    std::vector<Block> blocks_ = std::vector<Block>(kBlocks);
    size_t next_victim_ = 0;
    const Block* last_ = nullptr;
    uint64_t bytes_copied_ = 0;
};

}  // namespace pmprof::heap_detail

#include <sys/types.h>

#include <string>

#include "pmprof/heap/heap.h"

namespace pmprof::heap_detail {

/// Byte ranges copied from the target, read back by address: the contents the reachability
/// analysis scans after the threads were resumed.
class CopiedMemory final : public MemoryReader {
  public:
    /// Adds a range already copied; ranges must not overlap.
    void add(MemoryCopy copy);
    /// Allocates and touches `bytes` of storage now, before the stop: on a VM, faulting in fresh
    /// pages costs more than the copy itself (80 ms against 30 ms for 100 MB).
    void reserve(uint64_t bytes);
    /// Forgets every range, keeping the reserved storage.
    void clear();
    /// Copies [address, address + len) from `mem` (into the reserved storage while it lasts);
    /// returns the bytes copied (a short read keeps the readable prefix).
    uint64_t copy_from(MemoryReader& mem, uint64_t address, uint64_t len);
    Result<size_t> read(uint64_t address, void* out, size_t len) override;
    uint64_t bytes() const { return bytes_; }

  private:
    struct Range {
        uint64_t address;
        const uint8_t* data;
        size_t size;
    };
    std::vector<Range> ranges_;
    std::vector<std::vector<uint8_t>> owned_;  // storage of ranges outside the pool
    std::vector<uint8_t> pool_;
    size_t pool_used_ = 0;
    bool sorted_ = true;
    uint64_t bytes_ = 0;
};

/// What copy_for_reach took inside the stop.
struct ReachCopy {
    CopiedMemory contents;  // live chunks, in runs of adjacent chunks
    ReachInput input;       // roots (registers are added after the resume)
    std::string skipped;    // why nothing was copied (over the byte budget), else ""
    uint64_t copy_ns = 0;
};

/// Inside the stop: copies every live chunk and the roots: each thread's stack from sp - 128 up
/// (sp from /proc/PID/task/TID/syscall, which a stopped thread answers), the writable data of
/// every loaded module, and every other private anonymous writable mapping (.bss, TLS and TCBs,
/// memory the program mapped itself), except malloc's heaps and mmapped chunks. Shared
/// mappings (devices, files, shm) and private data files are never read.
/// `out.contents` may have storage reserved; anything it held before is cleared.
void copy_for_reach(ReachCopy& out, pid_t pid, MemoryReader& mem,
                    const std::vector<MemoryMap>& maps, const HeapSnapshot& snap,
                    const std::vector<pid_t>& tids, uint64_t max_bytes);

/// The address ranges the roots are read from (pure: for tests). `sps` are stack pointers.
std::vector<std::pair<uint64_t, uint64_t>> root_ranges(const std::vector<MemoryMap>& maps,
                                                       const HeapSnapshot& snap,
                                                       const std::vector<uint64_t>& sps);

}  // namespace pmprof::heap_detail
