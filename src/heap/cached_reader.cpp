// MapIndex and CachedReader (src/heap/cached_reader.h).
#include <algorithm>
#include <cstring>

#include "heap/cached_reader.h"

namespace pmprof::heap_detail {

MapIndex::MapIndex(const std::vector<MemoryMap>& maps) : maps_(maps) {
    std::sort(maps_.begin(), maps_.end(),
              [](const MemoryMap& a, const MemoryMap& b) { return a.start < b.start; });
}

const MemoryMap* MapIndex::find(uint64_t address) const { return find_mapping(maps_, address); }

bool MapIndex::readable(uint64_t address, uint64_t len) const {
    const MemoryMap* m = find(address);
    return m && m->readable() && len <= m->end - address;
}

const CachedReader::Block* CachedReader::block_for(uint64_t address) {
    if (last_ && address >= last_->start && address - last_->start < last_->bytes.size())
        return last_;
    const MemoryMap* m = maps_.find(address);
    if (!m || !m->readable()) return nullptr;
    // Keyed by (mapping, block): two mappings sharing a 1 MiB block get separate blocks.
    uint64_t index = address / kBlock;
    for (const Block& b : blocks_)
        if (b.map_start == m->start && b.index == index) return last_ = &b;
    Block& b = blocks_[next_victim_];
    next_victim_ = (next_victim_ + 1) % kBlocks;
    b.map_start = m->start;
    b.index = index;
    b.start = std::max(index * kBlock, m->start);
    uint64_t end = std::min(index * kBlock + kBlock, m->end);
    if (b.bytes.capacity() < kBlock) b.bytes.reserve(kBlock);
    b.bytes.resize(end - b.start);
    auto r = under_.read(b.start, b.bytes.data(), b.bytes.size());
    b.bytes.resize(r.ok() ? *r : 0);
    bytes_copied_ += b.bytes.size();
    return last_ = &b;
}

Result<size_t> CachedReader::read(uint64_t address, void* out, size_t len) {
    auto* dst = static_cast<uint8_t*>(out);
    size_t done = 0;
    while (done < len) {
        uint64_t a = address + done;
        const Block* b = block_for(a);
        if (!b || a < b->start || a - b->start >= b->bytes.size()) {
            // Not cached (no mapping, or a mapping that starts inside the block): read directly.
            auto r = under_.read(a, dst + done, len - done);
            if (!r.ok() || *r == 0) break;
            done += *r;
            break;
        }
        size_t n = std::min<uint64_t>(len - done, b->bytes.size() - (a - b->start));
        std::memcpy(dst + done, b->bytes.data() + (a - b->start), n);
        done += n;
    }
    if (done == 0 && len > 0)
        return Error{"heap read at 0x" + std::to_string(address) + ": unreadable", 0};
    return done;
}

}  // namespace pmprof::heap_detail
