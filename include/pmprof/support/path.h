// Path strings: string operations only, no file system access.
#pragma once

#include <string_view>

namespace pmprof {

/// The last component of `path`, a view into it: "libc.so.6" for
/// "/lib/x86_64-linux-gnu/libc.so.6", `path` itself when it has no '/', "" when it ends in one.
constexpr std::string_view base_name(std::string_view path) {
    const size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace pmprof
