// `pmprof top`'s view: per-function self and total shares and each thread's state mix over a
// sliding window of sampler profiles, and the screen that shows them.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pmprof/profile/profile.h"

namespace pmprof {

enum class TopSort { Self, Total, Name };

/// "self", "total", "name"; false for anything else.
bool parse_top_sort(const std::string& name, TopSort* out);
const char* top_sort_name(TopSort sort);

struct TopRow {
    std::string function;
    double self = 0;   // share of the window's weight with this function innermost, 0..1
    double total = 0;  // share with this function anywhere on the stack (counted once), 0..1
};

struct TopThread {
    pid_t tid = 0;
    std::string name;
    double share = 0;  // of the window's weight
    // "running", "blocked in SYSCALL" or the kernel state ("sleeping", "disk sleep"...), with
    // its share of this thread's weight, largest first.
    std::vector<std::pair<std::string, double>> states;
};

struct TopView {
    std::vector<TopRow> functions;   // sorted as asked
    std::vector<TopThread> threads;  // largest share first
    uint64_t samples = 0;
    double weight_s = 0;  // the weight in seconds (wall or cpu time, as the sample type)
};

/// The view over `window` (the profiles of the last refreshes, oldest first), counting only the
/// samples of threads that `thread` names (a tid or a thread name; "" for all). The weight is
/// each profile's default sample type.
TopView build_top_view(std::span<const Profile> window, const std::string& thread, TopSort sort);

struct TopScreen {
    size_t width = 80, height = 24;  // the terminal's; the text fits in them
    std::string title;               // first line: "pmprof top: pid 42 (cmd) ..."
    std::string thread;              // the thread filter, "" for all
    TopSort sort = TopSort::Self;
    bool paused = false;
    bool keys = true;  // the key help line at the bottom (not for plain text)
};

/// The screen's text: title, status, function table, thread table, key line; one line per '\n',
/// none wider than `s.width`, at most `s.height` lines.
std::string format_top_screen(const TopView& view, const TopScreen& s);

}  // namespace pmprof
