// Escaping for XML and HTML text and attribute values (the flame graph SVG, serve's index page).
#include "pmprof/support/markup.h"

namespace pmprof {

// Bytes that are not valid UTF-8, and control characters (XML 1.0 forbids most of them), become
// '?': any input yields a well-formed document.
std::string markup_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool valid = len > 0 && i + len <= s.size();
        for (size_t k = 1; valid && k < len; ++k)
            valid = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
        if (!valid || (c < 0x20 && c != '\t')) {
            out += '?';
            i += 1;
            continue;
        }
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '"':
            out += "&quot;";
            break;
        case '\'':
            out += "&apos;";
            break;
        default:
            out.append(s.substr(i, len));
        }
        i += len;
    }
    return out;
}

}  // namespace pmprof
