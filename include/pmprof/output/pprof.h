// profile.proto, encoded by hand (the format is small) and gzipped with zlib; and read back.
// Field numbers follow github.com/google/pprof/proto/profile.proto.
#pragma once

#include <string>
#include <string_view>

#include "pmprof/profile/profile.h"
#include "pmprof/support/error.h"

namespace pmprof {

/// Serializes to profile.proto bytes (not compressed). String table starts with "".
std::string encode_pprof(const Profile& profile);
/// gzip of encode_pprof, what `go tool pprof` and Pyroscope read.
Result<std::string> encode_pprof_gzip(const Profile& profile);
/// Parses profile.proto bytes, gzipped or not. Garbage gives an Error, never a crash.
Result<Profile> decode_pprof(std::string_view bytes);
/// gzip/gunzip helpers.
Result<std::string> gzip_compress(std::string_view raw);
Result<std::string> gzip_decompress(std::string_view gz, size_t max_out = size_t{1} << 30);

}  // namespace pmprof
