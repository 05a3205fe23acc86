//===- GlibcCompat.cpp - glibc functions newer than the oldest target -----===//
//
// Debian's static LLVM was configured against glibc 2.36 and calls
// arc4random (llvm::sys::Process::GetRandomNumber), which glibc has only
// since 2.36. The self-contained libmoelora.so defines it here, hidden, so
// the library also loads on glibc 2.34/2.35 (Ubuntu 22.04, vLLM's images);
// nothing outside the library sees this definition.
//
//===----------------------------------------------------------------------===//

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <sys/random.h>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t value = 0;
  // getrandom (glibc 2.25) blocks only before the kernel's pool is seeded.
  for (;;) {
    if (getrandom(&value, sizeof(value), 0) == sizeof(value))
      return value;
    if (errno != EINTR)
      break;
  }
  // No getrandom (a sandbox without it): LLVM uses these numbers for
  // temporary names, not for secrets.
  return uint32_t(std::chrono::steady_clock::now().time_since_epoch().count() *
                  2654435761u);
}
