// pprof_tutorial: a C++ port of the example program from the "golang pprof 教程" tutorial
// (learn-pprof-by-example-for-golang), for trying pmprof the way that tutorial tries pprof.
//
// The Go program, and what each part became here:
//
//   var msgqueue chan uint64       (make(chan uint64, 10000))  -> Mailbox::msgqueue, capacity 10000
//   var timerqueue chan struct{}   (make(chan struct{}, 10))   -> Mailbox::timerqueue, capacity 10
//   var testmap map[int]interface{}                            -> testmap (int -> Any*, Any being
//                                                                 interface{}: a class with a
//                                                                 vtable)
//   go runcputest()     floods msgqueue with a counter         -> thread "runcputest"
//   go func(){ time.Sleep(10s); timerqueue <- struct{}{} }()   -> thread "timer"
//   procmsg()           select { <-msgqueue | <-timerqueue }   -> procmsg() on the main thread
//   runheaptest()       make([]int, 100000, 120000)            -> runheaptest(), an IntSlice
//
// With --leak, a thread "leak" also stores one more runheaptest() buffer in testmap every second
// (for 5 minutes) and never removes it: the leak that docs/tutorial.md finds with `pmprof heap
// --interval`.
//
// Differences, on purpose:
// - The tutorial profiles itself (pprof.StartCPUProfile, heap profiles written to files). Here the
//   profiler is outside: run `pmprof attach PID`, `pmprof stacks PID` or `pmprof heap PID`.
// - The tutorial's heap snapshots are taken inside main between the runheaptest() calls; from
//   outside, a heap that changes over time is needed to compare snapshots: --leak.
// - The tutorial returns after the first tick; this program keeps ticking every 10 s until it gets
//   SIGINT or SIGTERM, then stops its threads and exits 0.
// - Go's select locks both channels (runtime.sellock) before looking at them; here both queues sit
//   behind one mutex, so the profile shows the same kind of lock traffic in procmsg.
//
// With PMPROF_READY_FD set (pmprof's tests), "ready pid=P" is written to that fd once all threads
// run.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using GoInt = std::int64_t;  // Go's int is 64 bits on amd64: a buffer of 120000 is ~940 KiB
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMsgQueueCapacity = 10000;
constexpr std::size_t kTimerQueueCapacity = 10;
constexpr auto kTickInterval = std::chrono::seconds(10);

// Like Go's log.Println: "2019/05/18 23:48:00 tick" on stderr.
void log_println(const char* message) {
    std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y/%m/%d %H:%M:%S", &local);
    std::fprintf(stderr, "%s %s\n", stamp, message);
}

// The two buffered channels procmsg() selects on. One mutex guards both, as Go's select holds
// both channel locks while it looks; `readable` wakes the consumer, `writable` the producer.
class Mailbox {
  public:
    enum class Event { Message, Tick, Stop };

    // msgqueue <- value: blocks while the channel is full. false once stopped.
    bool send_message(std::uint64_t value) {
        std::unique_lock lock(mutex_);
        writable_.wait(lock, [&] { return stopped_ || msgqueue_.size() < kMsgQueueCapacity; });
        if (stopped_) return false;
        msgqueue_.push_back(value);
        readable_.notify_one();
        return true;
    }

    // timerqueue <- struct{}{}: a full timer channel blocks in Go too; ticks are 10 s apart
    // and the consumer is fast, so dropping the tick instead cannot be observed.
    void send_tick() {
        std::lock_guard lock(mutex_);
        if (timerqueue_ < kTimerQueueCapacity) ++timerqueue_;
        readable_.notify_one();
    }

    // select { case <-msgqueue: case <-timerqueue: }. Go picks at random among ready cases;
    // serving a pending tick first keeps a flooded msgqueue from starving the timer.
    Event select() {
        std::unique_lock lock(mutex_);
        readable_.wait(lock, [&] { return stopped_ || timerqueue_ > 0 || !msgqueue_.empty(); });
        if (stopped_) return Event::Stop;
        if (timerqueue_ > 0) {
            --timerqueue_;
            return Event::Tick;
        }
        msgqueue_.pop_front();
        writable_.notify_one();
        return Event::Message;
    }

    // Wakes everyone for shutdown; also ends the timer's sleep.
    void stop() {
        std::lock_guard lock(mutex_);
        stopped_ = true;
        readable_.notify_all();
        writable_.notify_all();
        stop_cv_.notify_all();
    }

    // time.Sleep(d), cut short by stop(). false when stopped.
    bool sleep_for(Clock::duration d) {
        std::unique_lock lock(mutex_);
        return !stop_cv_.wait_for(lock, d, [&] { return stopped_; });
    }

  private:
    std::mutex mutex_;
    std::condition_variable readable_, writable_, stop_cv_;
    std::deque<std::uint64_t> msgqueue_;
    std::size_t timerqueue_ = 0;  // chan struct{} carries no data: a count is the whole state
    bool stopped_ = false;
};

Mailbox mailbox;

// interface{}: what testmap holds. Go boxes the []int header into an interface value on the heap,
// with its type; here the box is an object with a vtable, which `pmprof heap` names by type.
struct Any {
    virtual ~Any() = default;
};
// []int: a slice header (the vector) pointing at its backing array.
struct IntSlice : Any {
    std::vector<GoInt> data;
};

std::mutex testmap_mutex;  // main writes testmap at start-up, the leak thread afterwards
std::map<int, std::unique_ptr<Any>> testmap;

// Named from main right after creation, so the names are in place before "ready".
void name_thread(std::thread& t, const char* name) { pthread_setname_np(t.native_handle(), name); }

// mem := make([]int, 100000, 120000): length 100000, capacity 120000, zeroed.
__attribute__((noinline)) std::unique_ptr<Any> runheaptest() {
    auto mem = std::make_unique<IntSlice>();
    mem->data.reserve(120000);
    mem->data.resize(100000);
    return mem;
}

// --leak: testmap[3], testmap[4], ... one buffer a second, never set to nil; it stops after
// kMaxLeaked buffers (about 280 MB) so that a forgotten example does not eat the machine.
constexpr int kMaxLeaked = 300;
__attribute__((noinline)) void leak() {
    for (int key = 3; key < 3 + kMaxLeaked && mailbox.sleep_for(std::chrono::seconds(1)); ++key) {
        auto mem = runheaptest();
        std::lock_guard lock(testmap_mutex);
        testmap[key] = std::move(mem);
    }
}

// for { msgqueue <- i; i++ }
__attribute__((noinline)) void runcputest() {
    std::uint64_t i = 0;
    while (mailbox.send_message(i)) ++i;
}

// The tutorial's anonymous timer goroutine, repeated: sleep 10 s, log "tick", send a tick.
__attribute__((noinline)) void timer() {
    while (mailbox.sleep_for(kTickInterval)) {
        log_println("tick");
        mailbox.send_tick();
    }
}

// for { select { case <-msgqueue: case <-timerqueue: log.Println("timeout") } }
// The Go version returns on the first tick; this one keeps going until stopped.
__attribute__((noinline)) void procmsg() {
    for (;;) {
        switch (mailbox.select()) {
        case Mailbox::Event::Message:
            break;
        case Mailbox::Event::Tick:
            log_println("timeout");
            break;
        case Mailbox::Event::Stop:
            return;
        }
    }
}

// SIGINT/SIGTERM are blocked in every thread and taken here with sigwait(3), so shutdown runs as
// ordinary code (no async-signal-safety limits).
void wait_for_stop_signal(sigset_t signals) {
    int sig = 0;
    sigwait(&signals, &sig);
    log_println(sig == SIGINT ? "interrupted" : "terminated");
    mailbox.stop();
}

// The test harness's readiness protocol: a line on the fd named by PMPROF_READY_FD, if set.
void report_ready() {
    const char* fd_text = std::getenv("PMPROF_READY_FD");
    if (!fd_text) return;
    std::string line = "ready pid=" + std::to_string(getpid()) + "\n";
    ssize_t n = write(std::atoi(fd_text), line.data(), line.size());
    (void)n;
}

}  // namespace

int main(int argc, char** argv) {
    bool leaking = argc == 2 && std::string(argv[1]) == "--leak";
    if (argc > 1 && !leaking) {
        std::fprintf(stderr, "usage: %s [--leak]\n", argv[0]);
        return 64;
    }
    std::printf("pprof_tutorial: pid %d%s\n", getpid(),
                leaking ? ", leaking a 940 KiB buffer a second" : "");
    std::fflush(stdout);

    // Block before any thread exists, so every thread inherits the mask and only the signal
    // thread ever takes SIGINT/SIGTERM.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::thread signal_thread(wait_for_stop_signal, stop_signals);
    name_thread(signal_thread, "signals");

    // The tutorial's heap test: two buffers alive at once, then both released.
    std::unique_lock map_lock(testmap_mutex);
    testmap[1] = runheaptest();
    std::thread producer(runcputest);  // go runcputest()
    std::thread ticker(timer);         // go func(){ time.Sleep(10 * time.Second) ... }()
    name_thread(producer, "runcputest");
    name_thread(ticker, "timer");
    testmap[2] = runheaptest();
    testmap[2] = nullptr;
    testmap[1] = nullptr;
    map_lock.unlock();
    std::thread leaker;
    if (leaking) {
        leaker = std::thread(leak);
        name_thread(leaker, "leak");
    }

    report_ready();
    procmsg();  // run in main thread, until SIGINT/SIGTERM

    producer.join();
    ticker.join();
    if (leaker.joinable()) leaker.join();
    signal_thread.join();
    return 0;
}
