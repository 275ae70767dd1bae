// libFuzzer harness (`make fuzz`): decode_pprof must turn any bytes into a Profile or an Error,
// never a crash, and every writer and report operation must accept whatever decodes (dangling
// ids, empty tables, odd values). Built with ASan and UBSan.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pmprof/output/pprof.h"
#include "pmprof/report/report.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    auto profile = pmprof::decode_pprof(bytes);
    if (!profile.ok()) return 0;
    for (const std::string& format : pmprof::kProfileFormats) {
        auto out = pmprof::render_profile(*profile, format);
        (void)out;
    }
    auto listed = pmprof::format_list(*profile, pmprof::ListOptions{"a", "", {}});
    (void)listed;
    auto focused = pmprof::tag_focus(*profile, "thread_name=a");
    (void)focused;
    auto diff = pmprof::subtract_profile(*profile, *profile);
    if (diff.ok()) {
        auto text = pmprof::render_profile(*diff, "text");
        (void)text;
    }
    return 0;
}
