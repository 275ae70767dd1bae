// Error construction from errno values.
#include "pmprof/support/error.h"

#include <cstring>

namespace pmprof {

Error Error::from_errno(std::string what, int err) {
    Error e;
    // strerror_r has two incompatible signatures (GNU returns char*, XSI fills the buffer);
    // strerrordesc_np is GNU-only too. strerror is safe here: glibc returns static strings
    // for known values and a thread-local buffer for unknown ones.
    e.message = std::move(what) + ": " + std::strerror(err);
    e.errno_value = err;
    return e;
}

}  // namespace pmprof
