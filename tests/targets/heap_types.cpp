// Heap target: polymorphic objects of known counts (single, multiple and virtual inheritance,
// templates, make_shared, array new), then a leak of a known type on each SIGUSR1.
//
// Ready line: "ready". After each SIGUSR1: "leaked N LeakedSession of S bytes each".
#include <signal.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "target_support.h"

namespace ht {

struct HtBase {
    virtual ~HtBase() = default;
    long base_value = 1;
};
struct HtDerived : HtBase {
    long derived_value = 2;
};
struct HtLeft {
    virtual void left() {}
    virtual ~HtLeft() = default;
};
struct HtRight {
    virtual void right() {}
    virtual ~HtRight() = default;
};
struct HtMulti : HtLeft, HtRight {
    long m = 3;
};
struct HtVirtualBase {
    virtual ~HtVirtualBase() = default;
    long v = 4;
};
struct HtSideA : virtual HtVirtualBase {};
struct HtSideB : virtual HtVirtualBase {};
struct HtDiamond : HtSideA, HtSideB {
    long d = 5;
};
template <typename T> struct HtBox : HtBase { T value{}; };
struct HtPlain {  // not polymorphic: only visible through make_shared's control block
    long a = 6, b = 7;
};
struct HtElem {
    virtual ~HtElem() = default;
    long e = 8;
};
struct LeakedSession {
    virtual ~LeakedSession() = default;
    char payload[200] = {};
};

}  // namespace ht

namespace {

std::atomic<int> g_leak_requests{0};
void on_usr1(int) { g_leak_requests.fetch_add(1); }

template <typename T> void make_n(std::vector<void*>& keep, int n) {
    for (int i = 0; i < n; ++i) keep.push_back(new T());
}

}  // namespace

int main() {
    using namespace ht;
    static std::vector<void*> keep;
    static std::vector<std::shared_ptr<HtPlain>> shared;
    keep.reserve(10000);
    make_n<HtDerived>(keep, 101);
    make_n<HtMulti>(keep, 102);
    make_n<HtDiamond>(keep, 103);
    make_n<HtBox<int>>(keep, 104);
    make_n<HtBox<double>>(keep, 105);
    for (int i = 0; i < 106; ++i) shared.push_back(std::make_shared<HtPlain>());
    for (int i = 0; i < 7; ++i) keep.push_back(new HtElem[5]);  // 35 objects, with a cookie
    std::vector<LeakedSession*> leaked;
    leaked.reserve(100000);
    signal(SIGUSR1, on_usr1);
    target::report("ready");
    int done = 0;
    for (;;) {
        while (done < g_leak_requests.load()) {
            for (int i = 0; i < 100; ++i) leaked.push_back(new LeakedSession());
            ++done;
            target::report("leaked 100 LeakedSession of " + std::to_string(sizeof(LeakedSession)) +
                           " bytes each");
        }
        usleep(10000);
    }
}
