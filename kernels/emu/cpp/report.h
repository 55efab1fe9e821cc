// report.h — how the emulator reports a bug it caught.
//
// API misuse returns the CUresult a real driver returns (and, for the memory checks, also
// prints why). A memory error inside device work — an out-of-bounds or use-after-free
// access by a kernel or a queued copy, a corrupted red zone, a divergent barrier, a
// deadlocked block — is fatal like under compute-sanitizer: `fatal` prints a report
// naming the operation being executed (tls_op) and aborts the process, so the test that
// drove it fails whatever it does with error codes.
#pragma once

#include <cstddef>

namespace vigil_emu {

/// Print "vigil-cuda-emu: ERROR: <message>" plus the device operation in progress on this
/// thread, then abort().
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/// Print "vigil-cuda-emu: <message>" (diagnostics that accompany an error code).
void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/// The device operation this thread is executing ("" when none): set by the executor of
/// queued work, read by fatal() and by the SIGSEGV reporter (so it is a fixed buffer).
extern __thread char tls_op[256];

/// Write `s` to stderr with write(2): async-signal-safe.
void raw_write(const char* s);

}  // namespace vigil_emu
