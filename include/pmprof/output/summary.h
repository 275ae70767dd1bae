// The text printed at the end of `pmprof attach` and `pmprof record`.
#pragma once

#include <cstddef>
#include <string>

#include "pmprof/sampler/sampler.h"

namespace pmprof {

/// Several "pmprof: ..." lines of statistics, then the top `top_n` functions.
std::string format_sampler_summary(const SamplerResult& result, size_t top_n = 10);

}  // namespace pmprof
