// Private to the heap module: a block-caching reader over the mappings, used by the walker so a
// whole heap is copied with few process_vm_readv calls while the target is stopped.
#pragma once

#include <cstdint>
#include <cstddef>
#include <vector>

#include "pmprof/memory.h"
#include "pmprof/types.h"

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
