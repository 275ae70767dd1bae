// Escaping text for XML and HTML documents (layer 0: used by the SVG writer and the HTTP pages).
#pragma once

#include <string>
#include <string_view>

namespace pmprof {

/// `s` made safe inside XML or HTML text and quoted attribute values: & < > " ' as entities,
/// invalid UTF-8 and control characters (but tab) as '?'.
std::string markup_escape(std::string_view s);

}  // namespace pmprof
