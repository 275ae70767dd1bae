// profile.proto field numbers, from github.com/google/pprof/proto/profile.proto (also on this
// machine under /usr/share/gocode/src/github.com/google/pprof/proto/). Private to the pprof
// encoder and decoder.
#pragma once

namespace pmprof::profile_proto {

namespace pf {
enum : int {
    kSampleType = 1,
    kSample = 2,
    kMapping = 3,
    kLocation = 4,
    kFunction = 5,
    kStringTable = 6,
    kDropFrames = 7,
    kKeepFrames = 8,
    kTimeNanos = 9,
    kDurationNanos = 10,
    kPeriodType = 11,
    kPeriod = 12,
    kComment = 13,
    kDefaultSampleType = 14,
};
}  // namespace pf
namespace vt {
enum : int { kType = 1, kUnit = 2 };
}
namespace sm {
enum : int { kLocationId = 1, kValue = 2, kLabel = 3 };
}
namespace lb {
enum : int { kKey = 1, kStr = 2, kNum = 3, kNumUnit = 4 };
}
namespace mp {
enum : int {
    kId = 1,
    kMemoryStart = 2,
    kMemoryLimit = 3,
    kFileOffset = 4,
    kFilename = 5,
    kBuildId = 6,
    kHasFunctions = 7,
    kHasFilenames = 8,
    kHasLineNumbers = 9,
    kHasInlineFrames = 10,
};
}
namespace lc {
enum : int { kId = 1, kMappingId = 2, kAddress = 3, kLine = 4, kIsFolded = 5 };
}
namespace ln {
enum : int { kFunctionId = 1, kLine = 2 };
}
namespace fn {
enum : int { kId = 1, kName = 2, kSystemName = 3, kFilename = 4, kStartLine = 5 };
}

}  // namespace pmprof::profile_proto
