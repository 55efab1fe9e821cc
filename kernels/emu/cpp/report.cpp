// report.cpp — see report.h.
#include "report.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vigil_emu {

__thread char tls_op[256];

void raw_write(const char* s) {
    size_t n = std::strlen(s);
    while (n > 0) {
        ssize_t w = ::write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= static_cast<size_t>(w);
    }
}

void fatal(const char* fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char out[2600];
    std::snprintf(out, sizeof out, "\nvigil-cuda-emu: ERROR: %s\n%s%s%s", msg,
                  tls_op[0] ? "vigil-cuda-emu:   while executing " : "", tls_op,
                  tls_op[0] ? "\n" : "");
    raw_write(out);
    raw_write("vigil-cuda-emu: aborting (a device memory or synchronisation error is fatal, as under compute-sanitizer)\n");
    std::abort();
}

void note(const char* fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char out[2100];
    std::snprintf(out, sizeof out, "vigil-cuda-emu: %s\n", msg);
    raw_write(out);
}

}  // namespace vigil_emu
