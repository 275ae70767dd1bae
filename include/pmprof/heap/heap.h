// `pmprof heap`: live-heap snapshots of glibc malloc (ptmalloc2), read from outside the target.
//
// Contract (docs/design.md §1): read-only. The walker reads the allocator's own metadata
// (malloc_state, heap_info, mp_, tcache, fastbins with safe-linking, bins) through a
// MemoryReader, never writes target memory and never calls target code; every loop is bounded
// and every pointer is checked against the mappings. An arena whose lock is held, or a chunk that
// does not parse, is reported in `problems` and skipped (the snapshot is then partial).
// Structure layouts are chosen by the target's glibc version; unverified versions are refused.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "pmprof/profile/profile.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/support/error.h"
#include "pmprof/support/types.h"

namespace pmprof {

/// Offsets (x86_64, bytes) of the ptmalloc structures of one glibc version.
struct GlibcMallocLayout {
    std::string version;  // "2.36"
    // struct malloc_state
    uint64_t arena_size = 0, arena_mutex = 0, arena_fastbins = 0, arena_top = 0, arena_bins = 0,
             arena_next = 0, arena_system_mem = 0;
    int fastbin_count = 10;
    int bin_count = 128;  // NBINS; bins[] holds 2 * (NBINS - 1) pointers
    // struct heap_info and the non-main heap size (HEAP_MAX_SIZE)
    uint64_t heap_info_size = 0, heap_info_ar_ptr = 0, heap_info_prev = 0, heap_info_size_field = 0,
             heap_max = 0;
    // struct malloc_par (mp_)
    uint64_t mp_n_mmaps = 0, mp_mmapped_mem = 0, mp_sbrk_base = 0, mp_tcache_count = 0;
    // struct tcache_perthread_struct
    uint64_t tcache_chunk_size = 0, tcache_entries = 0;
    int tcache_bin_count = 64;
    bool safe_linking = false;
};

/// The layout for `version` ("2.36"), or an Error saying the version is not verified.
Result<GlibcMallocLayout> glibc_layout_for(const std::string& version);

/// Where the allocator's roots are in the target.
struct MallocRoots {
    uint64_t main_arena = 0;
    uint64_t mp = 0;       // &mp_
    std::string found_by;  // "symbols (<file>)" or "scan of libc data"
};

/// Whether a pointer from the roots reaches a chunk (analyze_reach).
enum class ChunkReach : uint8_t {
    Unknown = 0,  // not analysed (--no-reach, internal chunks, or the analysis was skipped)
    Reachable = 1,
    Leaked = 2,          // no pointer from the roots or another chunk ("definitely lost")
    LeakedIndirect = 3,  // pointed to only from leaked chunks ("indirectly lost")
};

/// One in-use chunk: handed to the program (live) or held by libc itself (internal).
struct HeapChunk {
    uint64_t chunk_address = 0;     // user pointer = chunk_address + 16
    uint64_t chunk_size = 0;        // whole chunk, header included
    int32_t arena = 0;              // index into HeapSnapshot::arenas; -1 for mmapped chunks
    bool internal = false;          // libc's own (tcache_perthread_struct, fencepost)
    uint64_t word0 = 0, word1 = 0;  // first two words of user data (type attribution)
    uint32_t type = 0;              // index into HeapSnapshot::type_names; 0 = unknown
    uint32_t objects = 1;           // objects in the chunk (array new with a cookie: n)
    uint32_t owner = 0;             // type_names index of the one typed chunk type that owns it
    ChunkReach reach = ChunkReach::Unknown;
};

struct ArenaSummary {
    int index = 0;  // 0 = main_arena, then in `next` order
    uint64_t address = 0;
    size_t heaps = 0;
    bool skipped = false;  // lock held or unreadable: numbers below are incomplete
    uint64_t system_mem = 0;
    uint64_t top_size = 0;
    uint64_t bin_chunks = 0, bin_bytes = 0;        // regular/unsorted bins, top excluded
    uint64_t fast_chunks = 0, fast_bytes = 0;      // fastbins
    uint64_t tcache_chunks = 0, tcache_bytes = 0;  // chunks of this arena cached in a tcache
    uint64_t live_chunks = 0, live_bytes = 0;
    uint64_t internal_chunks = 0, internal_bytes = 0;
    uint64_t walked_free_chunks = 0, walked_free_bytes = 0;  // free by the boundary tags
};

/// The nine fields of mallinfo2(3), computed from the allocator's lists exactly as glibc does.
struct MallInfo2 {
    uint64_t arena = 0, ordblks = 0, smblks = 0, hblks = 0, hblkhd = 0, usmblks = 0, fsmblks = 0,
             uordblks = 0, fordblks = 0, keepcost = 0;
    bool operator==(const MallInfo2&) const = default;
};

/// What the reachability analysis saw and cost (all zero when it did not run).
struct ReachStats {
    bool done = false;
    uint64_t root_bytes = 0, root_ranges = 0, root_words = 0;  // scanned roots
    uint64_t chunk_bytes = 0;  // chunk contents copied inside the stop and scanned
    uint64_t copy_ns = 0;      // copying roots and chunks inside the stop
    uint64_t scan_ns = 0;      // edges, marking and owners, after the resume
    uint64_t edges = 0;        // distinct chunk -> chunk pointers
    uint64_t reachable_chunks = 0, leaked_chunks = 0, leaked_bytes = 0;
    uint64_t owned_chunks = 0;  // chunks with exactly one owning type
};

struct HeapSnapshot {
    pid_t pid = 0;
    std::string glibc_version;
    MallocRoots roots;
    std::vector<ArenaSummary> arenas;
    MallInfo2 mallinfo;
    uint64_t mmapped_chunks = 0, mmapped_bytes = 0;  // found by probing the mappings
    std::vector<HeapChunk> chunks;                   // in-use chunks, live and internal
    std::vector<std::string> type_names{""};         // [0] = unknown
    std::vector<std::string> problems;               // each makes the snapshot partial
    size_t locked_arenas = 0;                        // skipped because their lock was held
    int64_t time_nanos = 0;
    uint64_t stop_window_ns = 0, walk_ns = 0, bytes_walked = 0;
    ReachStats reach;
    /// Why the walk ended before the end of the heap ("" when it did not): its time limit
    /// (--max-stop) or a stop request (SIGINT/SIGTERM). Also one of the problems.
    std::string cut_short;
    bool stop_requested = false;  // cut short by SIGINT/SIGTERM

    bool partial() const { return !problems.empty(); }
};

/// When a walk inside the stop must end early. glibc's chunk headers are consistent only while
/// every thread is stopped (any thread may split or merge chunks of any arena once it runs), so
/// a walk cannot pause, resume the target and continue where it was: the limit ends it, and
/// what was walked until then is kept, marked partial.
struct WalkLimit {
    uint64_t deadline_ns = 0;         // CLOCK_MONOTONIC; 0: none
    uint64_t limit_ms = 0;            // what the deadline came from, for the message
    bool honor_stop_request = false;  // end at SIGINT/SIGTERM (stop_requested())
};

/// Walks glibc malloc over `mem` (a stopped process, or a FakeMemory). `maps` bounds every
/// pointer. Never throws for target data; problems are recorded in the snapshot. `limit` is
/// checked every few thousand chunks and every probed block (about every 0.1 ms of walking).
HeapSnapshot walk_glibc_heap(MemoryReader& mem, const std::vector<MemoryMap>& maps,
                             const GlibcMallocLayout& layout, const MallocRoots& roots,
                             const WalkLimit& limit = {});

/// A vtable address -> C++ type table ("vtable for Session" covering [start, end)).
struct VtableRange {
    uint64_t start = 0, end = 0;
    std::string type;
};

/// Fills chunk.type/objects from the first words: a vptr inside a `vtables` range, else (when
/// `rtti` is set) vptr[-1] -> typeinfo -> name read through `mem`. make_shared control blocks are
/// shown as the type they hold; `new T[n]` (cookie n, then vptr) counts n objects.
void attribute_types(HeapSnapshot& snap, std::vector<VtableRange> vtables, MemoryReader* rtti,
                     const std::vector<MemoryMap>& maps);

/// Copied target memory: the roots of the reachability analysis (a stack from sp up, module
/// data, TLS, other writable memory) and the contents of the in-use chunks.
struct MemoryCopy {
    uint64_t address = 0;
    std::vector<uint8_t> bytes;
};
struct ReachInput {
    std::vector<MemoryCopy> roots;
    std::vector<uint64_t> root_words;  // registers of every thread
};

/// Marks every live chunk reachable or leaked by a conservative scan (any aligned word equal to
/// an address inside a chunk's user bytes is a pointer), and sets `owner` where exactly one type
/// of typed chunk points to the chunk, directly or through at most kOwnerChain untyped chunks.
/// `contents` must hold every live chunk's bytes (a copy from the same stop as the walk).
/// Run after attribute_types.
void analyze_reach(HeapSnapshot& snap, MemoryReader& contents, const ReachInput& in);
inline constexpr int kOwnerChain = 3;

/// One group of live chunks (by type, or by size class).
struct HeapGroup {
    std::string name;
    int64_t objects = 0, bytes = 0;
};
/// Live chunks grouped by type name (unknown types by size class), largest bytes first.
std::vector<HeapGroup> heap_by_type(const HeapSnapshot& snap, bool types);
/// Chunks that no pointer reaches (leaked and indirectly leaked) by type (or size class), with
/// the owning type in the name ("[48 B] owned by Session"), largest bytes first.
std::vector<HeapGroup> heap_leaked(const HeapSnapshot& snap, bool types);
/// Untyped live chunks with one owner type, as "[48 B] owned by Session", largest bytes first.
std::vector<HeapGroup> heap_owned(const HeapSnapshot& snap);
/// Live chunks by size class ("[48 B]", "[4 KiB-8 KiB)"), largest bytes first.
std::vector<HeapGroup> heap_by_size(const HeapSnapshot& snap);
/// Size-class label of a chunk size.
std::string size_class_label(uint64_t chunk_size);
/// Grouping key of a live chunk: its type (when `types` and known) or its size class.
uint64_t group_key(const HeapChunk& c, bool types);
/// The type name or size-class label of a group_key.
std::string group_name(const HeapSnapshot& snap, uint64_t key);

/// pprof heap profile: inuse_objects/count, inuse_space/bytes; frames [heap] -> [arena N] ->
/// type (or size class when `types` is false or the type is unknown).
Profile heap_to_profile(const HeapSnapshot& snap, bool types);
/// Totals that match mallinfo2, per arena, top types and sizes.
std::string format_heap_text(const HeapSnapshot& snap, bool types, size_t top_n);
std::string format_heap_json(const HeapSnapshot& snap, bool types);

/// Growth per leaf frame (type or size class) between two heap profiles, largest first.
struct HeapGrowth {
    std::string name;
    int64_t objects_delta = 0, bytes_delta = 0, objects_now = 0, bytes_now = 0;
};
std::vector<HeapGrowth> heap_growth(const Profile& base, const Profile& now);
std::string format_heap_growth(const std::vector<HeapGrowth>& rows, size_t top_n);

struct HeapOptions {
    bool types = true;
    std::chrono::milliseconds stop_timeout{1000};
    int lock_retries = 3;  // re-stop when an arena lock is held (a thread was inside malloc)
    /// Reachability and ownership: copies the roots and every live chunk inside the stop (the
    /// stop grows by about the copy time, and pmprof holds a copy of the live heap), then one
    /// more register-only stop. --no-reach skips all of it.
    bool reach = true;
    uint64_t reach_max_bytes = uint64_t{2} << 30;  // roots + chunk copy beyond this: skipped
    /// The longest the walk may keep the target stopped (0: no limit); past it the walk ends
    /// and the snapshot is partial (WalkLimit says why it cannot go on after a resume).
    std::chrono::milliseconds max_stop{0};
};

/// Seizes `pid`, stops every thread, walks the heap, resumes, attributes types. The Error says
/// why nothing could be done (another allocator, unverified glibc, no permission).
Result<HeapSnapshot> take_heap_snapshot(pid_t pid, const HeapOptions& opt);

/// Before the stop: the bytes the arena chunks can take at most (the brk heap and every
/// HEAP_MAX-aligned anonymous mapping), to reserve the copy the reachability analysis makes (and
/// for `pmprof doctor`). Capped at `max_bytes`.
uint64_t estimate_heap_bytes(const std::vector<MemoryMap>& maps, uint64_t heap_max,
                             uint64_t max_bytes);

}  // namespace pmprof
