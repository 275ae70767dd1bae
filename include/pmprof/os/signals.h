// The one mutable global: "the user asked us to stop" (SIGINT, SIGTERM, SIGHUP), set by a signal
// handler and polled by every loop that can take long. SIGPIPE is ignored so writes fail with
// EPIPE instead of killing pmprof while threads are stopped.
//
// Also the one helper for blocking signals in a thread (SignalBlock) and waiting for them.
#pragma once

#include <signal.h>

#include <cstdint>
#include <initializer_list>

namespace pmprof {

/// Installs the handlers (no SA_RESTART: a blocked wait returns EINTR and checks the flag).
void install_stop_signal_handlers();
/// True once SIGINT, SIGTERM or SIGHUP arrived.
bool stop_requested();
/// The signal that set the flag (0 when none), for the exit message.
int stop_signal();
/// Sets the flag from code (tests, a client that disconnected).
void request_stop();
/// Clears the flag (between requests of a long-running server).
void clear_stop_request();

/// The set of `signals`.
sigset_t signal_set(std::initializer_list<int> signals);

/// sigtimedwait(2) for one of `set` (which the caller blocked) for at most `timeout_ns`: the
/// signal taken, or -1 on timeout or EINTR (the caller re-checks what it waits for).
int wait_for_signal(const sigset_t& set, int64_t timeout_ns, siginfo_t* info = nullptr);

/// Blocks `signals` in the calling thread for its lifetime (threads it creates meanwhile inherit
/// the mask), so that they stay pending for wait_for_signal instead of being delivered, or are
/// left to another thread. The destructor unblocks only those it blocked: a signal that was
/// already blocked stays blocked, so blocks nest.
class SignalBlock {
  public:
    explicit SignalBlock(std::initializer_list<int> signals);
    ~SignalBlock();
    SignalBlock(const SignalBlock&) = delete;
    SignalBlock& operator=(const SignalBlock&) = delete;

    /// The signals blocked (all of them, including those that already were).
    const sigset_t& set() const { return set_; }
    /// wait_for_signal on set().
    int wait(int64_t timeout_ns, siginfo_t* info = nullptr) const {
        return wait_for_signal(set_, timeout_ns, info);
    }

  private:
    sigset_t set_{};
    sigset_t added_{};  // the members of set_ that were not blocked before
};

}  // namespace pmprof
