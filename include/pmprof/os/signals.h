// The one mutable global: "the user asked us to stop" (SIGINT, SIGTERM, SIGHUP), set by a signal
// handler and polled by every loop that can take long. SIGPIPE is ignored so writes fail with
// EPIPE instead of killing pmprof while threads are stopped.
#pragma once

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

}  // namespace pmprof
