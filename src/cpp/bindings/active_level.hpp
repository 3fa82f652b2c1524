// The SIMD level chosen once when the module is imported.
#pragma once

#include "kernels/dispatch.hpp"

namespace fastopt::bindings {

// Set by register_dispatch() at import; never changes afterwards, so kernels and tables may be read
// without a lock from any thread.
const SimdLevel& active_level();

}  // namespace fastopt::bindings
