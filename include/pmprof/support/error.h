// Errors: Result<T> for what the target or the OS can make fail, FatalError for the one
// exception type that ends a run (caught once, in main).
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace pmprof {

/// A failure that names the call and the object ("PTRACE_SEIZE tid 4242: Operation not permitted").
struct Error {
    std::string message;
    int errno_value = 0;  // 0 when the failure did not come from errno

    /// Builds "<what>: strerror(err)" and keeps err.
    static Error from_errno(std::string what, int err);
};

/// Either a value or an Error; no exceptions on the failure path.
template <typename T> class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
    Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    const Error& error() const { return std::get<1>(v_); }

  private:
    std::variant<T, Error> v_;
};

/// Result<void>: success or an Error.
template <> class [[nodiscard]] Result<void> {
  public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design
    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const Error& error() const { return error_; }

  private:
    Error error_;
    bool ok_ = true;
};

/// Exit codes, documented in --help and pmprof(1).
enum ExitCode : int {
    kExitComplete = 0,  // output complete
    kExitPartial = 1,   // output written but partial (threads skipped, target exited, ...)
    kExitFatal = 2,     // nothing useful could be done
    kExitDeadlock = 3,  // pmprof stacks: the dump was written and shows a deadlock
    kExitUsage = 64,    // bad command line
};

/// The one fatal exception; `hint` is printed on a second line when not empty.
class FatalError : public std::runtime_error {
  public:
    explicit FatalError(const std::string& message, std::string hint = {},
                        int exit_code = kExitFatal)
        : std::runtime_error(message), hint_(std::move(hint)), exit_code_(exit_code) {}
    explicit FatalError(const Error& e, std::string hint = {})
        : FatalError(e.message, std::move(hint)) {}
    const std::string& hint() const { return hint_; }
    int exit_code() const { return exit_code_; }

  private:
    std::string hint_;
    int exit_code_;
};

}  // namespace pmprof
