//===- RuntimeTestUtil.h - Temp dirs, env guards, a counting fake JIT -----===//
//
// The runtime tests link moelora_runtime alone (no generator): kernel images
// come from a fake JIT hook that records every call, so the module cache's
// logic is tested quickly and without a GPU.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_TEST_UNIT_RUNTIME_RUNTIMETESTUTIL_H
#define MOELORA_TEST_UNIT_RUNTIME_RUNTIMETESTUTIL_H

#include "moelora/Runtime/ModuleCache.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace moelora::test {

/// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
public:
  TempDir() {
    std::string templ =
        (std::filesystem::temp_directory_path() / "moelora-rt-test-XXXXXX")
            .string();
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()))
      dir = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    if (!dir.empty())
      std::filesystem::remove_all(dir, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return dir; }
  std::string operator/(const std::string &name) const {
    return (std::filesystem::path(dir) / name).string();
  }

private:
  std::string dir;
};

/// Sets (or unsets, with nullopt) an environment variable for a scope and
/// restores the previous value afterwards.
class ScopedEnv {
public:
  ScopedEnv(const char *name, std::optional<std::string> value) : name(name) {
    if (const char *old = std::getenv(name))
      previous = old;
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (previous)
      ::setenv(name.c_str(), previous->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  std::string name;
  std::optional<std::string> previous;
};

inline std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void writeText(const std::string &path, const std::string &text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

/// What the fake generator produces for a spec: PTX naming the key, a shared
/// memory size derived from the spec (so different specs differ) and the
/// spec's thread count.
inline KernelImage fakeImage(const KernelSpec &spec) {
  KernelImage image;
  image.spec = spec;
  image.ptx = "// fake PTX\n// cache_key: " + spec.cacheKey() +
              "\n.visible .entry " + spec.entryName() + "()\n{\n\tret;\n}\n";
  image.sharedBytes = 1024 * spec.numStages + 16 * spec.blockN;
  image.threads = spec.launchThreads();
  image.contentHash = contentHash(image.ptx);
  return image;
}

/// Registers a counting fake JIT hook for its lifetime; unregisters it (no
/// hook) when destroyed so tests never leak a generator into each other.
class FakeJit {
public:
  explicit FakeJit(std::chrono::milliseconds delay = {}) : state(new State) {
    state->delay = delay;
    std::shared_ptr<State> s = state;
    setJitHook([s](const KernelSpec &spec) -> Expected<KernelImage> {
      ++s->calls;
      if (s->delay.count())
        std::this_thread::sleep_for(s->delay);
      if (s->fail)
        return makeError("fake generator failed for " + spec.cacheKey());
      return fakeImage(spec);
    });
  }
  ~FakeJit() { setJitHook(nullptr); }
  FakeJit(const FakeJit &) = delete;
  FakeJit &operator=(const FakeJit &) = delete;

  int calls() const { return state->calls.load(); }
  void setFail(bool f) { state->fail = f; }

private:
  struct State {
    std::atomic<int> calls{0};
    std::atomic<bool> fail{false};
    std::chrono::milliseconds delay{0};
  };
  std::shared_ptr<State> state;
};

/// A typical one-shot spec (qwen3moe W13 decode shape).
inline KernelSpec sampleSpec() {
  KernelSpec s;
  s.family = KernelFamily::OneShot;
  s.dtype = DType::BF16;
  s.sm = 90;
  s.rank = 16;
  s.k = 2048;
  s.blockM = 16;
  s.blockN = 128;
  s.blockK = 128;
  s.numWarps = 4;
  s.numStages = 3;
  s.numSlices = 2;
  return s;
}

} // namespace moelora::test

#endif // MOELORA_TEST_UNIT_RUNTIME_RUNTIMETESTUTIL_H
