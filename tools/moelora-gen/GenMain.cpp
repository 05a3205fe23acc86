//===- GenMain.cpp - moelora-gen: spec files -> a kernel bundle -----------===//
//
//   moelora-gen [options] <spec files or directories>... -o <bundle dir>
//
// Every spec point becomes <entry>.ptx and <entry>.json (metadata) in the
// bundle, plus manifest.json, which is what the runtime's module cache reads.
// The bundle is written to a sibling temporary directory and renamed into
// place only when everything succeeded, so a failed run never leaves a
// bundle that looks complete, and a previous bundle survives a failed run.
//
// Exit status: 0 success, 1 generation/ptxas/I/O failure, 2 bad input
// (command line, spec files, options that do not fit the specs).
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/Generator.h"
#include "moelora/Spec/KernelAbi.h"
#include "moelora/Spec/SpecParser.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <llvm/Support/ErrorHandling.h>
#include <nlohmann/json.hpp>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <regex>
#include <set>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <unordered_set>

extern char **environ;

namespace fs = std::filesystem;
// Insertion order: the files read in the order the fields are documented.
using json = nlohmann::ordered_json;
using namespace moelora;

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitBadInput = 2;

/// The temporary bundle while it is being written. Every way out other than
/// success removes it: fail(), the LLVM fatal error handler and the signal
/// watcher. gBundleMutex keeps the watcher from removing it mid-commit.
fs::path gTempDir;
std::mutex gBundleMutex;

void removeTempDir() {
  if (gTempDir.empty())
    return;
  std::error_code ec;
  fs::remove_all(gTempDir, ec);
}

[[noreturn]] void fail(int code, const std::string &message) {
  removeTempDir();
  std::fprintf(stderr, "moelora-gen: error: %s\n", message.c_str());
  std::exit(code);
}

/// LLVM reports some errors (e.g. a PTX version below what the target needs)
/// with report_fatal_error, which would exit and leave the temporary bundle
/// behind. Other generator threads are still running here, so leave with
/// _Exit: running static destructors under their feet could crash instead.
void onLlvmFatalError(void *, const char *reason, bool) {
  removeTempDir();
  std::fprintf(stderr, "moelora-gen: error: LLVM: %s (no bundle written)\n",
               reason);
  std::_Exit(kExitFailure);
}

/// Signals that end the run (Ctrl-C, kill, a closed terminal).
sigset_t endingSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

/// Removes the temporary bundle when the run is interrupted. The signals are
/// blocked in every thread (the workers inherit the mask) and taken by this
/// one with sigwait, where removing a directory tree is safe, unlike in a
/// signal handler.
void watchSignals() {
  sigset_t set = endingSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    if (sigwait(&set, &sig) != 0)
      return;
    std::lock_guard<std::mutex> lock(gBundleMutex);
    removeTempDir();
    std::fprintf(stderr, "\nmoelora-gen: interrupted (%s); no bundle written\n",
                 strsignal(sig));
    std::_Exit(128 + sig);
  }).detach();
}

//===----------------------------------------------------------------------===//
// Option checks that need the specs or LLVM
//===----------------------------------------------------------------------===//

/// The allowed-values text of validateSpec's target rule, so that the tool
/// names exactly the targets the spec parser accepts.
std::string allowedTargets() {
  KernelSpec probe;
  probe.sm = 0;
  std::string why = validateSpec(probe);
  auto pos = why.find("allowed: ");
  return pos == std::string::npos ? why : why.substr(pos);
}

/// Parses --target; the error lists the allowed targets.
Expected<int> checkTarget(const std::string &text) {
  std::optional<int> sm = parseTarget(text);
  if (!sm)
    return makeError(fmt::format("--target {}: not of the form sm_<digits>; {}",
                                 text, allowedTargets()));
  KernelSpec probe;
  probe.sm = *sm;
  if (std::string why = validateSpec(probe); !why.empty())
    return makeError(fmt::format("--target {}: {}", text, why));
  return *sm;
}

//===----------------------------------------------------------------------===//
// ptxas
//===----------------------------------------------------------------------===//

struct PtxasStats {
  int registers = 0, spillStores = 0, spillLoads = 0, stackBytes = 0;
};

std::string ptxasPath() {
  if (const char *p = std::getenv("MOELORA_PTXAS"); p && *p)
    return p;
  return "/usr/local/cuda/bin/ptxas";
}

struct ProcessResult {
  int exitCode = -1;  ///< -1 when killed by a signal
  std::string output; ///< stdout and stderr, interleaved
};

/// Runs a program without a shell (paths need no quoting) and collects its
/// output. The pipe is close-on-exec so that a ptxas started by another
/// thread does not inherit this one's write end and delay its EOF.
Expected<ProcessResult> runProcess(const std::vector<std::string> &argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return makeError(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  std::vector<char *> args;
  for (const std::string &a : argv)
    args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  // ptxas gets the default signal mask, not the one that routes our
  // signals to the watcher thread: Ctrl-C must stop it too.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid;
  int rc =
      posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return makeError(
        fmt::format("cannot run {}: {}", argv[0], std::strerror(rc)));
  }
  ProcessResult result;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0)
      result.output.append(buf, n);
    else if (n == 0 || errno != EINTR)
      break;
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status))
    result.exitCode = WEXITSTATUS(status);
  return result;
}

/// Reads ptxas -v's resource report. A PTX file holds one entry, but the
/// report is per function: take the largest register count and add up the
/// stack and spill bytes, so nothing a helper function spills is hidden.
Expected<PtxasStats> parsePtxasReport(const std::string &log) {
  static const std::regex registers(R"(Used (\d+) registers)");
  static const std::regex frame(
      R"((\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads)");
  PtxasStats s;
  bool sawRegisters = false;
  for (std::sregex_iterator it(log.begin(), log.end(), registers), end;
       it != end; ++it) {
    s.registers = std::max(s.registers, std::stoi((*it)[1]));
    sawRegisters = true;
  }
  for (std::sregex_iterator it(log.begin(), log.end(), frame), end; it != end;
       ++it) {
    s.stackBytes += std::stoi((*it)[1]);
    s.spillStores += std::stoi((*it)[2]);
    s.spillLoads += std::stoi((*it)[3]);
  }
  if (!sawRegisters)
    return makeError("no register count in ptxas -v output:\n" + log);
  return s;
}

Expected<PtxasStats> runPtxas(const fs::path &ptx, const std::string &target) {
  auto run = runProcess(
      {ptxasPath(), "-arch=" + target, "-v", ptx.string(), "-o", "/dev/null"});
  if (!run)
    return run.error();
  if (run->exitCode != 0)
    return makeError(fmt::format("ptxas -arch={} rejected {} (exit {}):\n{}",
                                 target, ptx.filename().string(), run->exitCode,
                                 run->output));
  return parsePtxasReport(run->output);
}

//===----------------------------------------------------------------------===//
// Bundle files
//===----------------------------------------------------------------------===//

Status writeFile(const fs::path &path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out)
    return makeError(fmt::format("cannot write {}: {}", path.string(),
                                 std::strerror(errno)));
  return Status::ok();
}

std::string contentHash(const std::string &ptx) {
  return fmt::format("{:016x}", XXH3_64bits(ptx.data(), ptx.size()));
}

json metadata(const KernelSpec &s, const GeneratedKernel &k,
              const std::string &hash, const std::optional<PtxasStats> &p) {
  json params = json::array();
  for (const KernelParam &q : kernelParams(s))
    params.push_back({{"name", q.name}, {"type", toString(q.type)}});
  bool align = s.family == KernelFamily::AlignBlockSize;
  json j = {{"entry", k.entryName},
            {"family", toString(s.family)},
            {"cache_key", s.cacheKey()},
            {"params", params},
            {"threads", k.threads},
            {"shared_bytes", k.sharedBytes},
            {"constexpr",
             {{"BLOCK_SIZE_M", s.blockM},
              {"BLOCK_SIZE_N", s.blockN},
              {"BLOCK_SIZE_K", s.blockK},
              {"GROUP_SIZE_M", s.groupSizeM},
              {"SPLIT_K", s.splitK},
              {"num_warps", s.numWarps},
              {"num_stages", s.numStages},
              {"EVEN_K", s.evenK()},
              // align_block_size has no rank, so no BLOCK_R either.
              {"BLOCK_R", align ? 0 : s.blockR()},
              {"rank", s.rank},
              {"K", s.k ? json(*s.k) : json(nullptr)},
              {"MUL_ROUTED_WEIGHT", s.mulRoutedWeight},
              {"ADD_INPUTS", s.addInputs},
              {"num_slices", s.numSlices},
              {"NPID", s.npid},
              {"min_blocks_per_sm", s.minBlocksPerSm},
              {"out_aligned", s.alignedOutput},
              {"fuse_slices", s.fusesSlices()},
              {"wgmma", s.wgmma},
              {"few_rows", s.fewRowsExpand()},
              {"few_rows_tile", s.fewRowsExpand() ? s.fewRowsTile : 0},
              {"tma_weights", s.tmaWeights},
              {"producer_warp", s.producerWarp},
              {"persistent", s.persistent},
              {"wgmma_expand", s.wgmmaExpand},
              {"bulk_output", s.bulksOutput()},
              {"bulk_shrink", s.bulkShrink},
              {"early_expand", s.expandsEarly()},
              {"reduce_scatter", s.scattersClusterSum()},
              {"metadata", s.sorted ? "sorted" : "naive"}}},
            {"dtype", toString(s.dtype)},
            {"target", fmt::format("sm_{}", s.sm)},
            {"ptx_target", s.ptxTarget()},
            {"ptx_version",
             fmt::format("{}.{}", k.ptxVersion / 10, k.ptxVersion % 10)},
            {"spec_origin", s.origin},
            {"content_hash", hash},
            {"generation_ms", std::round(k.totalMs() * 100) / 100}};
  if (p)
    j["ptxas"] = {{"registers", p->registers},
                  {"spill_stores", p->spillStores},
                  {"spill_loads", p->spillLoads},
                  {"stack_bytes", p->stackBytes}};
  return j;
}

/// The bundle directory without a trailing separator, so that the temporary
/// `<dir>.tmp-<pid>` is its sibling (on the same file system, for rename)
/// and not a directory inside it.
Expected<fs::path> bundlePath(const std::string &arg) {
  std::error_code ec;
  fs::path p = fs::absolute(arg, ec).lexically_normal();
  if (ec)
    return makeError(fmt::format("--output {}: {}", arg, ec.message()));
  if (!p.has_filename())
    p = p.parent_path();
  if (p == p.root_path())
    return makeError(
        fmt::format("--output {}: not a directory to create", arg));
  return p;
}

/// An existing output is replaced only when it is a bundle (or empty): a
/// mistyped -o must not delete an unrelated directory.
Status checkReplaceable(const fs::path &dir, const std::string &arg) {
  std::error_code ec;
  fs::file_status st = fs::symlink_status(dir, ec);
  if (!fs::exists(st))
    return Status::ok();
  if (!fs::is_directory(st))
    return makeError(fmt::format(
        "--output {}: exists and is not a directory (a link or a file)", arg));
  if (fs::is_empty(dir, ec) || fs::exists(dir / "manifest.json", ec))
    return Status::ok();
  return makeError(
      fmt::format("refusing to replace {}: it is not a moelora bundle (no "
                  "manifest.json); remove it or choose another --output",
                  arg));
}

/// Moves the finished bundle into place. A previous bundle is moved aside
/// first (a directory cannot be renamed over a non-empty one) and restored
/// if the move fails.
Status commitBundle(const fs::path &tmp, const fs::path &dir) {
  std::error_code ec;
  fs::path old;
  if (fs::exists(fs::symlink_status(dir, ec))) {
    old = dir;
    old += fmt::format(".old-{}", getpid());
    fs::rename(dir, old, ec);
    if (ec)
      return makeError(fmt::format("cannot move the previous {} aside: {}",
                                   dir.string(), ec.message()));
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    std::error_code restore;
    if (!old.empty())
      fs::rename(old, dir, restore);
    return makeError(fmt::format("cannot move the bundle into {}: {}",
                                 dir.string(), ec.message()));
  }
  if (!old.empty() && fs::remove_all(old, ec) == static_cast<uintmax_t>(-1))
    std::fprintf(stderr, "moelora-gen: warning: could not remove %s: %s\n",
                 old.c_str(), ec.message().c_str());
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Generation
//===----------------------------------------------------------------------===//

struct Options {
  std::vector<std::string> inputs;
  std::string output;
  std::string target;
  int ptxVersion = 0;
  int jobs = 1;
  bool dumpIR = false, ptxas = false, quiet = false, strict = false;
};

struct Result {
  std::optional<GeneratedKernel> kernel;
  std::string contentHash;
  std::optional<PtxasStats> ptxas;
  std::string error;
};

/// Entry names are ~80 characters; a column keeps the readable start and
/// the `_h<hash>` end, which is what makes the name unique.
std::string shortName(const std::string &name, size_t width) {
  if (name.size() <= width)
    return name;
  constexpr size_t kTail = 10; // "_h" + 8 hex digits
  return name.substr(0, width - kTail - 3) + "..." +
         name.substr(name.size() - kTail);
}

/// One kernel: generate, write its PTX (and IR dumps), assemble it when
/// asked, write its metadata. Everything goes into the temporary bundle.
Result generateOne(const KernelSpec &spec, const Options &options,
                   const fs::path &tmpDir) {
  Result r;
  GenerateOptions generateOptions;
  generateOptions.ptxVersion = options.ptxVersion;
  generateOptions.dumpIR = options.dumpIR;
  auto generated = generateKernel(spec, generateOptions);
  if (!generated) {
    r.error = generated.error().message;
    return r;
  }
  const GeneratedKernel &k = *(r.kernel = generated.take());
  r.contentHash = contentHash(k.ptx);
  fs::path ptxPath = tmpDir / (k.entryName + ".ptx");
  if (Status s = writeFile(ptxPath, k.ptx); !s) {
    r.error = s.error().message;
    return r;
  }
  for (const auto &[stage, text] : k.dumps) {
    // The generator names its LLVM IR stages "llvm-..."; the others are MLIR.
    const char *ext = stage.rfind("llvm", 0) == 0 ? "ll" : "mlir";
    fs::path path =
        tmpDir / "ir" / fmt::format("{}.{}.{}", k.entryName, stage, ext);
    if (Status s = writeFile(path, text); !s) {
      r.error = s.error().message;
      return r;
    }
  }
  if (options.ptxas) {
    auto stats = runPtxas(ptxPath, spec.ptxTarget());
    if (!stats) {
      r.error = fmt::format("{}: {}", spec.cacheKey(), stats.error().message);
      return r;
    }
    r.ptxas = *stats;
  }
  std::string meta = metadata(spec, k, r.contentHash, r.ptxas).dump(2) + "\n";
  if (Status s = writeFile(tmpDir / (k.entryName + ".json"), meta); !s)
    r.error = s.error().message;
  return r;
}

/// Progress on stderr: one line rewritten in place on a terminal; in a log,
/// a line per 10% so that a CI log shows progress without 156 lines.
class Progress {
public:
  Progress(size_t total, bool quiet)
      : total(total), quiet(quiet), tty(isatty(STDERR_FILENO)) {}

  void done(const KernelSpec &spec, const Result &r) {
    if (quiet)
      return;
    std::lock_guard<std::mutex> lock(mutex);
    size_t n = ++finished;
    std::string line = fmt::format(
        "[{}/{}] {} {}", n, total, shortName(spec.entryName(), 64),
        r.error.empty() ? fmt::format("{:.1f} ms", r.kernel->totalMs())
                        : std::string("failed"));
    if (tty)
      std::fprintf(stderr, "\r%-90s", line.c_str());
    else if (n * 10 / total != (n - 1) * 10 / total || !r.error.empty())
      std::fprintf(stderr, "%s\n", line.c_str());
  }

  void finish() {
    if (!quiet && tty && finished)
      std::fprintf(stderr, "\n");
  }

private:
  size_t total;
  bool quiet, tty;
  size_t finished = 0;
  std::mutex mutex;
};

void printSummary(const std::vector<Result> &results, const Options &options,
                  double wallSeconds) {
  constexpr size_t kNameWidth = 64;
  std::printf("%-*s %5s %8s %7s %8s\n", static_cast<int>(kNameWidth), "kernel",
              "regs", "spill B", "smem", "gen ms");
  double totalMs = 0;
  int spilling = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const GeneratedKernel &k = *results[i].kernel;
    const std::optional<PtxasStats> &p = results[i].ptxas;
    std::string regs = p ? std::to_string(p->registers) : "-";
    std::string spills =
        p ? std::to_string(p->spillStores + p->spillLoads) : "-";
    spilling += p && (p->spillStores || p->spillLoads);
    std::printf("%-*s %5s %8s %7d %8.1f\n", static_cast<int>(kNameWidth),
                shortName(k.entryName, kNameWidth).c_str(), regs.c_str(),
                spills.c_str(), k.sharedBytes, k.totalMs());
    totalMs += k.totalMs();
  }
  std::printf("%zu kernels: generation %.1f ms total, %.1f ms mean; wall %.1f "
              "s with %d thread(s)\n",
              results.size(), totalMs, totalMs / results.size(), wallSeconds,
              options.jobs);
  if (options.ptxas)
    std::printf("ptxas: %d kernel(s) spill\n", spilling);
  std::printf("bundle: %s\n", options.output.c_str());
}

} // namespace

int main(int argc, char **argv) {
  Options options;
  CLI::App app{"moelora-gen: tiling specs -> a kernel bundle (PTX + JSON "
               "metadata + manifest.json)",
               "moelora-gen"};
  app.add_option("inputs", options.inputs,
                 "spec files or directories (*.yaml/*.yml, recursively)")
      ->required();
  app.add_option("-o,--output", options.output,
                 "bundle directory to write (replaced only on success)")
      ->required();
  app.add_option("--target", options.target,
                 "override every spec's target, e.g. sm_80");
  app.add_option("--ptx-version", options.ptxVersion,
                 "PTX ISA version as major*10+minor (e.g. 80); default: "
                 "LLVM's for the target")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--dump-ir", options.dumpIR,
               "also write the IR after each stage to <bundle>/ir/");
  app.add_flag("--ptxas", options.ptxas,
               "assemble each kernel with ptxas -v (MOELORA_PTXAS or "
               "/usr/local/cuda/bin/ptxas) and record registers and spills");
  app.add_option("-j,--jobs", options.jobs, "generator threads")
      ->check(CLI::Range(1, 256));
  app.add_flag("-q,--quiet", options.quiet, "no progress and no summary table");
  app.add_flag("--strict", options.strict,
               "fail when a sweep point is rejected");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    if (e.get_exit_code() == 0) // --help
      return app.exit(e);
    if (argc == 1) {
      std::fputs(app.help().c_str(), stderr);
      return kExitBadInput;
    }
    fail(kExitBadInput, fmt::format("{} (see moelora-gen --help)", e.what()));
  }
  llvm::install_fatal_error_handler(onLlvmFatalError);

  std::optional<int> targetOverride;
  if (!options.target.empty()) {
    auto sm = checkTarget(options.target);
    if (!sm)
      fail(kExitBadInput, sm.error().message);
    targetOverride = *sm;
  }

  auto parsed = parseSpecPaths(options.inputs);
  if (!parsed)
    fail(kExitBadInput, parsed.error().message);
  SpecSet set = parsed.take();
  for (const RejectedSpec &r : set.rejected)
    std::fprintf(stderr, "moelora-gen: rejected %s [%s]: %s\n",
                 r.spec.origin.c_str(), r.spec.cacheKey().c_str(),
                 r.reason.c_str());
  if (options.strict && !set.rejected.empty())
    fail(kExitBadInput, fmt::format("{} sweep point(s) rejected (--strict)",
                                    set.rejected.size()));

  // Specs that differ only in their target become one kernel under
  // --target: generate it once, or two threads would write the same files.
  std::vector<KernelSpec> specs;
  std::unordered_set<std::string> seen;
  for (KernelSpec &s : set.specs) {
    if (targetOverride)
      s.sm = *targetOverride;
    if (seen.insert(s.cacheKey()).second)
      specs.push_back(std::move(s));
  }
  if (specs.empty())
    fail(kExitBadInput,
         fmt::format("no kernel specs in the inputs ({} rejected)",
                     set.rejected.size()));
  if (options.ptxVersion) {
    std::set<std::string> targets;
    for (const KernelSpec &s : specs)
      targets.insert(s.ptxTarget());
    for (const std::string &target : targets)
      if (Status s = checkPtxVersion(options.ptxVersion, target); !s)
        fail(kExitBadInput, "--ptx-version " + s.error().message);
  }
  if (options.ptxas && access(ptxasPath().c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "moelora-gen: note: ptxas not found at %s (set "
                 "MOELORA_PTXAS); PTX is generated but not assembled\n",
                 ptxasPath().c_str());
    options.ptxas = false;
  }

  auto finalDir = bundlePath(options.output);
  if (!finalDir)
    fail(kExitBadInput, finalDir.error().message);
  if (Status s = checkReplaceable(*finalDir, options.output); !s)
    fail(kExitBadInput, s.error().message);
  fs::path tmpDir = *finalDir;
  tmpDir += fmt::format(".tmp-{}", getpid());
  {
    std::error_code ec;
    fs::remove_all(tmpDir, ec); // a leftover of a killed run with our pid
    gTempDir = tmpDir;
    watchSignals();
    fs::create_directories(options.dumpIR ? tmpDir / "ir" : tmpDir, ec);
    if (ec)
      fail(kExitFailure,
           fmt::format("cannot create {}: {}", tmpDir.string(), ec.message()));
  }

  auto t0 = std::chrono::steady_clock::now();
  std::vector<Result> results(specs.size());
  Progress progress(specs.size(), options.quiet);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < specs.size();) {
      try {
        results[i] = generateOne(specs[i], options, tmpDir);
      } catch (const std::exception &e) {
        results[i].error = fmt::format("{}: {}", specs[i].cacheKey(), e.what());
      }
      progress.done(specs[i], results[i]);
    }
  };
  std::vector<std::thread> pool;
  int threads = std::min<int>(options.jobs, static_cast<int>(specs.size()));
  for (int j = 0; j < threads; ++j)
    pool.emplace_back(worker);
  for (std::thread &t : pool)
    t.join();
  progress.finish();

  std::string errors;
  size_t failed = 0;
  for (const Result &r : results)
    if (!r.error.empty()) {
      errors += "\n  " + r.error;
      ++failed;
    }
  if (failed)
    fail(kExitFailure,
         fmt::format("{} of {} kernel(s) failed; no bundle written:{}", failed,
                     results.size(), errors));

  json manifest = {
      {"format", "moelora-bundle"}, {"version", 1}, {"kernels", json::array()}};
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string &entry = results[i].kernel->entryName;
    manifest["kernels"].push_back({{"cache_key", specs[i].cacheKey()},
                                   {"entry", entry},
                                   {"ptx", entry + ".ptx"},
                                   {"json", entry + ".json"},
                                   {"content_hash", results[i].contentHash}});
  }
  // The manifest is written last: a directory without one is never mistaken
  // for a bundle, even before the rename.
  if (Status s = writeFile(tmpDir / "manifest.json", manifest.dump(2) + "\n");
      !s)
    fail(kExitFailure, s.error().message);
  {
    std::lock_guard<std::mutex> lock(gBundleMutex);
    if (Status s = commitBundle(tmpDir, *finalDir); !s)
      fail(kExitFailure, s.error().message);
    gTempDir.clear();
  }

  double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  if (!options.quiet)
    printSummary(results, options, wall);
  return 0;
}
