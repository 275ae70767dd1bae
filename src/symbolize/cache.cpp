// Persistent symbolization results (src/symbolize/cache.h says what and when they are valid).
//
// Format, text, one file per build id and option set:
//   pmprof-symbols 1 PMPROF_BUILD_ID             (a new pmprof build ignores older results)
//   source main DEV INO SIZE MTIME_NS            (or: source debug DEV INO SIZE MTIME_NS PATH)
//   @OFFSET_HEX COUNT                            (one per lookup address, COUNT frame lines follow)
//   FUNCTION\tMANGLED\tFILE\tLINE\tSTART_LINE\tINLINED
// Writers replace the whole file (temp file + rename), so readers see an old or a new file,
// never a torn one; a concurrent writer's entries may be lost, which only costs a recompute.
#include "symbolize/cache.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

#include "pmprof/elf/debug_cache.h"
#include "pmprof/elf/elf_file.h"
#include "pmprof/os/file.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/log.h"

namespace pmprof {
namespace {

constexpr std::string_view kMagic = "pmprof-symbols 1 ";
// Bounds on what one file may hold: beyond them new results are simply not kept.
constexpr size_t kMaxEntries = 200000;
constexpr size_t kMaxFileBytes = size_t{64} << 20;

/// The build id of the running pmprof, from its own PT_NOTE in memory (dl_iterate_phdr lists the
/// executable first): results are only reused by the build that made them, so a change in how
/// src/symbolize/symbolize.cpp names frames can never meet an old file.
int find_own_build_id(dl_phdr_info* info, size_t, void* out) {
    auto* id = static_cast<std::string*>(out);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        const auto* notes = reinterpret_cast<const uint8_t*>(info->dlpi_addr + ph.p_vaddr);
        *id = build_id_from_notes({notes, ph.p_memsz});
        if (!id->empty()) return 1;
    }
    return 1;  // only the executable, the first entry, is of interest
}

/// "" when pmprof was linked without a build id: then nothing is read or written.
const std::string& own_build_id() {
    static const std::string id = [] {
        std::string found;
        dl_iterate_phdr(find_own_build_id, &found);
        return found;
    }();
    return id;
}

/// Splits off the text up to `sep` (or the end) from `rest`.
std::string_view take(std::string_view& rest, char sep) {
    size_t at = rest.find(sep);
    std::string_view head = rest.substr(0, at);
    rest = at == std::string_view::npos ? std::string_view{} : rest.substr(at + 1);
    return head;
}

template <typename T> bool parse_number(std::string_view text, T& out, int base = 10) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
    return ec == std::errc{} && end == text.data() + text.size() && !text.empty();
}

/// "main DEV INO SIZE MTIME" or "debug DEV INO SIZE MTIME PATH".
std::optional<DwarfSource> parse_source(std::string_view line) {
    if (take(line, ' ') != "source") return std::nullopt;
    DwarfSource src;
    std::string_view kind = take(line, ' ');
    if (kind != "main" && kind != "debug") return std::nullopt;
    src.in_main_file = kind == "main";
    if (!parse_number(take(line, ' '), src.identity.dev) ||
        !parse_number(take(line, ' '), src.identity.ino) ||
        !parse_number(take(line, ' '), src.identity.size) ||
        !parse_number(take(line, ' '), src.identity.mtime_ns))
        return std::nullopt;
    if (!src.in_main_file) {
        if (line.empty()) return std::nullopt;
        src.debug_path = std::string(line);
    }
    return src;
}

bool source_unchanged(const DwarfSource& src, const std::optional<FileIdentity>& main_file) {
    if (src.in_main_file) return main_file && *main_file == src.identity;
    auto now = identity_of_path(src.debug_path);
    return now && *now == src.identity;
}

std::optional<SourceFrame> parse_frame(std::string_view line) {
    SourceFrame f;
    f.function = std::string(take(line, '\t'));
    f.mangled = std::string(take(line, '\t'));
    f.file = std::string(take(line, '\t'));
    int inlined = 0;
    if (!parse_number(take(line, '\t'), f.line) || !parse_number(take(line, '\t'), f.start_line) ||
        !parse_number(line, inlined) || inlined < 0 || inlined > 1)
        return std::nullopt;
    f.inlined = inlined == 1;
    return f;
}

bool storable(const std::string& s) { return s.find_first_of("\t\n\r") == std::string::npos; }

}  // namespace

std::string symbol_cache_path(const std::string& cache_dir, const std::string& build_id,
                              const std::string& variant) {
    if (cache_dir.empty() || !valid_build_id(build_id)) return {};
    return cache_dir + "/symbols/" + build_id + "." + variant;
}

std::optional<CachedFrames> load_symbol_cache(const std::string& path,
                                              const std::optional<FileIdentity>& main_file) {
    if (own_build_id().empty()) return std::nullopt;
    auto text = read_file(path);
    if (!text.ok() || text->size() > kMaxFileBytes) return std::nullopt;
    std::string_view rest = *text;
    std::string_view magic = take(rest, '\n');
    if (!magic.starts_with(kMagic) || magic.substr(kMagic.size()) != own_build_id())
        return std::nullopt;
    auto source = parse_source(take(rest, '\n'));
    if (!source || !source_unchanged(*source, main_file)) {
        log_debug("symbol cache: {} is stale or malformed; ignoring it", path);
        return std::nullopt;
    }
    CachedFrames entries;
    while (!rest.empty()) {
        std::string_view head = take(rest, '\n');
        uint64_t offset = 0;
        size_t count = 0;
        if (head.empty() || head[0] != '@') return std::nullopt;
        head.remove_prefix(1);
        if (!parse_number(take(head, ' '), offset, 16) || !parse_number(head, count) ||
            count > 1000)
            return std::nullopt;
        std::vector<SourceFrame> frames;
        frames.reserve(count);
        for (size_t i = 0; i < count; ++i) {
            auto f = parse_frame(take(rest, '\n'));
            if (!f) return std::nullopt;
            frames.push_back(std::move(*f));
        }
        entries.emplace(offset, std::move(frames));
    }
    return entries;
}

bool save_symbol_cache(const std::string& path, const DwarfSource& source,
                       const CachedFrames& entries) {
    if (path.empty() || own_build_id().empty() || !storable(source.debug_path)) return false;
    std::string out(kMagic);
    out += own_build_id();
    const FileIdentity& id = source.identity;
    out += fmt::format("\nsource {} {} {} {} {}", source.in_main_file ? "main" : "debug", id.dev,
                       id.ino, id.size, id.mtime_ns);
    if (!source.in_main_file) out += " " + source.debug_path;
    out += '\n';
    size_t kept = 0;
    for (const auto& [offset, frames] : entries) {
        if (kept >= kMaxEntries) break;
        bool ok = frames.size() <= 1000;
        for (const SourceFrame& f : frames)
            ok = ok && storable(f.function) && storable(f.mangled) && storable(f.file);
        if (!ok) continue;
        out += fmt::format("@{:x} {}\n", offset, frames.size());
        for (const SourceFrame& f : frames)
            out += fmt::format("{}\t{}\t{}\t{}\t{}\t{}\n", f.function, f.mangled, f.file, f.line,
                               f.start_line, f.inlined ? 1 : 0);
        ++kept;
    }
    const std::string dir = path.substr(0, path.rfind('/'));
    if (!make_cache_dirs(dir)) return false;
    if (auto written = replace_file_with(path, out, 0600); !written.ok()) {
        log_debug("symbol cache: writing {}: {}", path, written.error().message);
        return false;
    }
    return true;
}

}  // namespace pmprof
