//===- FuzzBundleManifest.cpp - libFuzzer target: bundle directories ------===//
//
// A bundle as moelora-gen writes it, read through the public API: the input
// is cut at lines "--8<--" into manifest.json, one kernel's metadata JSON
// (k.json) and its PTX (k.ptx), which are written into a private directory;
// a ModuleCache with that bundle (no driver, no disk cache, no JIT) then
// runs init() and looks up one kernel. In the text, @KEY@ stands for that
// kernel's cache key and @HASH@ for the content hash of the PTX part, so
// the seeds reach the success path and the mutations start from it.
// Errors must name the bundle (init) or be messages (lookup); a served
// image must be the PTX that was written. A crash, a sanitizer report, a
// hang or an escaping exception is a finding.
//
//===----------------------------------------------------------------------===//

#include "FuzzUtil.h"

#include "moelora/Runtime/ModuleCache.h"
#include "moelora/Spec/KernelAbi.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace moelora;
namespace fs = std::filesystem;

namespace {

std::string bundleDir;

void writeFile(const fs::path &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  FUZZ_CHECK(out.good(), "cannot write the bundle's files");
}

void removeBundleDir() {
  std::error_code ec;
  fs::remove_all(bundleDir, ec);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  // A directory of this process's own (tmpfs when there is one: each input
  // rewrites three files).
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : nullptr;
  std::string templ = (base ? fs::path(base) : fs::temp_directory_path()) /
                      "moelora-fuzz-XXXXXX";
  if (!mkdtemp(templ.data()))
    std::abort();
  bundleDir = templ;
  std::atexit(removeBundleDir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const KernelSpec spec = alignBlockSizeSpec(90, 16);
  static const std::string key = spec.cacheKey();
  std::vector<std::string> parts = fuzz::splitParts(
      std::string_view(reinterpret_cast<const char *>(data), size), 3);
  const std::string &ptx = parts[2];
  const std::string hash = contentHash(ptx);
  for (std::string *p : {&parts[0], &parts[1]}) {
    fuzz::replaceAll(*p, "@KEY@", key);
    fuzz::replaceAll(*p, "@HASH@", hash);
  }
  writeFile(fs::path(bundleDir) / "manifest.json", parts[0]);
  writeFile(fs::path(bundleDir) / "k.json", parts[1]);
  writeFile(fs::path(bundleDir) / "k.ptx", ptx);

  ModuleCacheOptions o;
  o.useDisk = false;
  o.useJit = false;
  o.bundles = {bundleDir};
  ModuleCache cache(nullptr, o);
  if (Status s = cache.init(); !s) {
    FUZZ_CHECK(s.error().message.rfind("bundle " + bundleDir, 0) == 0,
               "a bundle error that does not name the bundle");
    return 0;
  }
  auto image = cache.image(spec);
  if (!image) {
    FUZZ_CHECK(!image.error().message.empty(), "a lookup error without text");
    return 0;
  }
  // Served: from the bundle (nothing else is configured), and exactly the
  // PTX whose hash the manifest and metadata promised.
  FUZZ_CHECK(cache.stats().bundleHits == 1, "an image from nowhere");
  const KernelImage &img = **image;
  FUZZ_CHECK(img.contentHash == contentHash(img.ptx),
             "a served image whose PTX does not match its hash");
  FUZZ_CHECK(img.spec.cacheKey() == key, "an image of another kernel");
  return 0;
}
