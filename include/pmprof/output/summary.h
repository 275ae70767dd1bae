// The text printed at the end of `pmprof attach` and `pmprof record`.
#pragma once

#include <cstddef>
#include <string>

#include "pmprof/sampler/sampler.h"

namespace pmprof {

/// One line (samples, threads, duration, effective rate, mode, backend, the target's p99 pause
/// or "no thread stopped", how the run ended, "wrote `written`" unless empty), then one line per
/// thing that happened to the target (EINTR from a stop, a thread that could not be stopped,
/// execve), if any. What attach and record print by default.
std::string format_sampler_line(const SamplerResult& result, const std::string& written);

/// Several "pmprof: ..." lines of statistics, then the top `top_n` functions (with -v).
std::string format_sampler_summary(const SamplerResult& result, size_t top_n = 10);

}  // namespace pmprof
