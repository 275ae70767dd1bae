// `pmprof report --base` and `--tagfocus`: profile subtraction (pprof -base semantics) and label
// filtering, both producing a new, self-consistent Profile that every writer accepts.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <regex>
#include <tuple>

#include "pmprof/profile/index.h"
#include "pmprof/report/report.h"

namespace pmprof {
namespace {

std::string describe_types(const Profile& p) {
    std::string out;
    for (const ValueType& t : p.sample_types)
        out += (out.empty() ? "" : ", ") + t.type + "/" + t.unit;
    return out.empty() ? "none" : out;
}

// "LO:HI", "LO:", ":HI" or "N" over int64; false when `text` is none of them.
bool parse_range(const std::string& text, int64_t& lo, int64_t& hi) {
    auto parse = [](std::string_view s, int64_t& v) {
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        return ec == std::errc() && end == s.data() + s.size();
    };
    size_t colon = text.find(':');
    if (colon == std::string::npos) {
        if (!parse(text, lo)) return false;
        hi = lo;
        return true;
    }
    std::string_view a(text.data(), colon), b(text.data() + colon + 1, text.size() - colon - 1);
    lo = INT64_MIN;
    hi = INT64_MAX;
    if (!a.empty() && !parse(a, lo)) return false;
    if (!b.empty() && !parse(b, hi)) return false;
    return !(a.empty() && b.empty());
}

}  // namespace

Result<Profile> subtract_profile(const Profile& current, const Profile& base) {
    if (current.sample_types != base.sample_types)
        return Error{fmt::format("cannot subtract profiles with different sample types ({} vs "
                                 "base {})",
                                 describe_types(current), describe_types(base)),
                     0};
    return merge_profiles({{&current, 1}, {&base, -1}});
}

Result<Profile> tag_focus(const Profile& profile, const std::string& filter) {
    size_t eq = filter.find('=');
    if (eq == std::string::npos || eq == 0)
        return Error{"tag filter '" + filter + "' is not KEY=VALUE", 0};
    std::string key = filter.substr(0, eq), value = filter.substr(eq + 1);
    std::regex re;
    try {
        re = std::regex(value, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        return Error{fmt::format("tag filter '{}': bad regular expression: {}", filter, e.what()),
                     0};
    }
    int64_t lo = 0, hi = 0;
    bool numeric = parse_range(value, lo, hi);
    Profile out = profile;
    std::erase_if(out.samples, [&](const Sample& s) {
        for (const Label& l : s.labels) {
            if (l.key != key) continue;
            if (!l.str.empty() ? std::regex_search(l.str, re)
                               : numeric && l.num >= lo && l.num <= hi)
                return false;
        }
        return true;
    });
    return out;
}

}  // namespace pmprof
