// Collapsed stacks as flamegraph.pl, speedscope and inferno read them: one line per stack,
// frames root first joined by ';', a space, the value. ';' and line breaks cannot appear inside
// a frame, so they are replaced (';' -> ':', control characters -> ' ').
#include "pmprof/output/folded.h"

#include <cstdio>
#include <map>

#include "pmprof/support/path.h"

namespace pmprof {
namespace {

std::string sanitize(const std::string& name) {
    std::string out = name;
    for (char& c : out) {
        if (c == ';') c = ':';
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    return out;
}

// A location without lines (decoded from a profile nobody symbolized): "libc.so.6+0x1234" when
// its mapping is known, else the bare address.
std::string unsymbolized(const Profile& p, const Location& loc) {
    char buf[64];
    const Mapping* m = p.mapping(loc.mapping_id);
    if (m != nullptr && !m->filename.empty() && loc.address >= m->memory_start) {
        const uint64_t offset = loc.address - m->memory_start + m->file_offset;
        snprintf(buf, sizeof buf, "+0x%llx", static_cast<unsigned long long>(offset));
        return std::string(base_name(m->filename)) + buf;
    }
    snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(loc.address));
    return buf;
}

std::string function_name(const Profile& p, const Line& line) {
    const Function* f = p.function(line.function_id);
    if (f == nullptr) return "??";
    if (!f->name.empty()) return f->name;
    return f->system_name.empty() ? "??" : f->system_name;
}

// Root frame for per-thread output: the thread_name label, else the tid.
std::string thread_root(const Sample& s) {
    const Label* tid = nullptr;
    for (const Label& l : s.labels) {
        if (l.key == "thread_name" && !l.str.empty()) return l.str;
        if (l.key == "tid") tid = &l;
    }
    if (tid != nullptr)
        return "[tid " + (tid->str.empty() ? std::to_string(tid->num) : tid->str) + "]";
    return "[unknown thread]";
}

std::string folded_stack(const Profile& p, const Sample& s, bool per_thread) {
    std::string out;
    auto push = [&out](const std::string& frame) {
        if (!out.empty()) out += ';';
        out += sanitize(frame);
    };
    if (per_thread) push(thread_root(s));
    for (auto id = s.location_ids.rbegin(); id != s.location_ids.rend(); ++id) {
        const Location* loc = p.location(*id);
        if (loc == nullptr) continue;
        if (loc->lines.empty()) push(unsymbolized(p, *loc));
        // lines are innermost first; root-first output wants the real function before inlinees.
        for (auto line = loc->lines.rbegin(); line != loc->lines.rend(); ++line) {
            push(function_name(p, *line));
        }
    }
    if (out.empty()) out = "[no frames]";
    return out;
}

}  // namespace

std::string write_folded(const Profile& profile, const FoldedOptions& opt) {
    int index = opt.sample_index >= 0 ? opt.sample_index : profile.sample_index();
    if (index < 0 || static_cast<size_t>(index) >= profile.sample_types.size()) return {};
    std::map<std::string, int64_t> merged;  // sorted by stack, identical stacks merged
    for (const Sample& s : profile.samples) {
        auto i = static_cast<size_t>(index);
        if (i >= s.values.size() || s.values[i] == 0) continue;
        merged[folded_stack(profile, s, opt.per_thread)] += s.values[i];
    }
    std::string out;
    for (const auto& [stack, value] : merged) {
        if (value == 0) continue;
        out += stack;
        out += ' ';
        out += std::to_string(value);
        out += '\n';
    }
    return out;
}

}  // namespace pmprof
