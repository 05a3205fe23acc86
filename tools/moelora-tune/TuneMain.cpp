//===- TuneMain.cpp - moelora-tune: the autotuning sweep ------------------===//
//
// Two steps, because kernels are generated where LLVM is and timed where
// the GPU is:
//   moelora-tune prepare --sweep S.yaml --workload W.yaml --cache DIR
//                        --plan plan.json [--ptxas] [--gpu NAME]
//     (generator machine) for every workload case, the dispatcher's path
//     and every sweep candidate for it: planned, validated, generated into a
//     disk cache; rejected candidates are listed with the reason.
//   moelora-tune run --plan plan.json --cache DIR --out tuned.json
//                    [--progress progress.jsonl]
//     (GPU machine) times the default and every candidate of each case as
//     the benchmark does, checks each candidate's output against the
//     default config's once (relative L2 < 1e-2), and writes the tuned
//     table the dispatcher loads. Resumable: finished (case, candidate)
//     results are kept in the progress file and not run again.
//
//===----------------------------------------------------------------------===//

#include "BenchHarness.h"
#include "BenchShapeCall.h"
#include "BucketChoice.h"
#include "moelora/Runtime/Dispatcher.h"
#include "moelora/Runtime/ModuleCache.h"
#include "moelora/Spec/KernelAbi.h"
#include "moelora/Spec/SpecValidation.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <unistd.h>

#ifdef MOELORA_TUNE_WITH_JIT
#include "moelora/Runtime/Jit.h"
#endif

using namespace moelora;
using namespace moelora::bench;
using json = nlohmann::json;

namespace {

[[noreturn]] void die(const std::string &m) {
  std::fprintf(stderr, "moelora-tune: error: %s\n", m.c_str());
  std::exit(2);
}

std::vector<YAML::Node> listOf(const YAML::Node &n) {
  std::vector<YAML::Node> out;
  if (n.IsSequence())
    for (const auto &e : n)
      out.push_back(e);
  else if (n)
    out.push_back(n);
  return out;
}

YAML::Node loadYaml(const std::string &path) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::Exception &e) {
    die(fmt::format("{}:{}:{}: invalid YAML: {}", path, e.mark.line + 1,
                    e.mark.column + 1, e.msg));
  }
}

/// Workload YAML -> benchmark cases (cartesian product of each entry).
std::vector<BenchCase> readWorkload(const std::string &path) {
  YAML::Node root = loadYaml(path);
  std::vector<BenchCase> cases;
  for (const auto &entry : root["cases"]) {
    bool sorted =
        entry["metadata"] && entry["metadata"].as<std::string>() == "sorted";
    bool two = entry["two_kernel"] && entry["two_kernel"].as<bool>();
    // routing: dense (the default) and/or sparse (a quarter of the experts).
    std::vector<bool> routings;
    for (const auto &r : entry["routing"] ? listOf(entry["routing"])
                                          : std::vector<YAML::Node>{}) {
      std::string v = r.as<std::string>();
      if (v != "dense" && v != "sparse")
        die(fmt::format("{}:{}: routing '{}': allowed: dense, sparse", path,
                        r.Mark().line + 1, v));
      routings.push_back(v == "sparse");
    }
    if (routings.empty())
      routings.push_back(false);
    for (const auto &p : listOf(entry["preset"])) {
      const Preset *preset = nullptr;
      for (const Preset &q : kPresets)
        if (p.as<std::string>() == q.name)
          preset = &q;
      if (!preset)
        die(fmt::format("{}:{}: preset '{}': allowed: qwen3moe, mixtral, "
                        "glm5_1",
                        path, p.Mark().line + 1, p.as<std::string>()));
      for (const auto &sh : listOf(entry["shape"]))
        for (const auto &m : listOf(entry["M"]))
          for (const auto &r : listOf(entry["rank"])) {
            std::string shape = sh.as<std::string>();
            if (shape != "w13" && shape != "w2")
              die(fmt::format("{}:{}: shape '{}': allowed: w13, w2", path,
                              sh.Mark().line + 1, shape));
            for (bool sparse : routings)
              cases.push_back({preset, shape == "w13" ? Shape::W13 : Shape::W2,
                               m.as<int>(), r.as<int>(), sorted, two, sparse});
          }
    }
  }
  return cases;
}

const char *pathName(DispatchPath p) {
  return p == DispatchPath::SmallBatch ? "small_batch"
         : p == DispatchPath::OneShot  ? "one_shot"
                                       : "two_kernel";
}

json entryFor(const BenchCase &c, const char *path, const json &config) {
  json e = tunedBucketEntry(c, path);
  e["config"] = config;
  return e;
}

/// The tuned-table key of the case's entry (its bucket), as text.
std::string bucketKey(const BenchCase &c, const char *path) {
  return tunedBucketEntry(c, path).dump();
}

TunedTable tableFor(const std::string &gpu, const json &entry) {
  json t = {{"format", "moelora-tuned"},
            {"version", 1},
            {"gpu", gpu},
            {"entries", json::array({entry})}};
  auto table = TunedTable::parse(t.dump(), "candidate");
  if (!table)
    die(table.error().message);
  return table.take();
}

/// Sweep candidates for a path: every combination of its fields.
std::vector<json> candidates(const YAML::Node &sweep, const char *path) {
  std::vector<json> out{json::object()};
  for (const auto &field : sweep[path]) {
    std::vector<json> next;
    for (const json &partial : out)
      for (const auto &v : listOf(field.second)) {
        json c = partial;
        const std::string name = field.first.as<std::string>();
        // The table's boolean config keys.
        if (name == "fuse_slices" || name == "wgmma" || name == "few_rows" ||
            name == "tma_weights" || name == "producer_warp" ||
            name == "persistent" || name == "wgmma_expand" ||
            name == "bulk_output" || name == "bulk_shrink" ||
            name == "early_expand" || name == "reduce_scatter")
          c[name] = v.as<bool>();
        else
          c[name] = v.as<int>();
        next.push_back(c);
      }
    out = next;
  }
  return out;
}

/// The config (JSON) of `base`'s entry that serves the case, if any: the
/// smallest bucket holding its pairs, as the dispatcher looks it up.
std::optional<json> currentConfig(const json &base, const TunedTable &table,
                                  const std::string &gpu, const BenchCase &c,
                                  const char *path) {
  const TunedEntry *e = table.find(
      gpu, path, c.dtype == MOELORA_DTYPE_BF16 ? DType::BF16 : DType::F16,
      c.rank, c.K(), c.N(), c.slices(), c.sorted, long(c.M) * c.preset->topK);
  if (!e)
    return std::nullopt;
  // Parsed entries keep the file's order: the same index in the JSON.
  return base.at("entries").at(size_t(e - table.entries.data())).at("config");
}

int prepare(const std::string &sweepPath, const std::string &workloadPath,
            const std::string &cacheDir, const std::string &planPath,
            const std::string &gpu, bool ptxas,
            const std::string &baseTablePath) {
#ifdef MOELORA_TUNE_WITH_JIT
  installJitHook();
#else
  die("prepare needs the generator: this moelora-tune was built without it");
#endif
  YAML::Node sweep = loadYaml(sweepPath);
  std::vector<BenchCase> cases = readWorkload(workloadPath);
  // The table the run's winners must beat: its entries compete as the
  // candidate "current" of each case.
  json baseJson;
  TunedTable baseTable;
  if (!baseTablePath.empty()) {
    auto text = TunedTable::readText(baseTablePath);
    if (!text)
      die(text.error().message);
    auto t = TunedTable::parse(*text, baseTablePath);
    if (!t)
      die(t.error().message);
    if (t->gpu != gpu)
      die(fmt::format("{}: a table for '{}', the plan is for '{}' (--gpu)",
                      baseTablePath, t->gpu, gpu));
    baseTable = t.take();
    baseJson = json::parse(*text);
  }
  ModuleCacheOptions o;
  o.diskDir = cacheDir;
  ModuleCache cache(nullptr, o);
  DeviceInfo device{90, 132, gpu};
  json plan = {
      {"gpu", gpu}, {"cases", json::array()}, {"rejected", json::array()}};
  size_t kept = 0, rejected = 0;
  for (const BenchCase &c : cases) {
    MoeLoraCall call = benchShapeCall(c);
    auto def = planFusedMoeLora(call, c.twoKernel, device, nullptr);
    if (!def)
      die(c.name() + ": " + def.error().message);
    if (def->path == DispatchPath::None)
      continue;
    const char *path = pathName(def->path);
    // The run times the rules' config first, as the baseline: its kernels
    // are needed whether or not the sweep lists the same config.
    for (const PlannedKernel &k : def->kernels)
      if (auto img = cache.image(k.spec); !img)
        die(c.name() + " (the rules' config): " + img.error().message);
    // Sorted cases build their metadata with the align kernel on the GPU.
    if (c.sorted)
      if (auto img = cache.image(alignBlockSizeSpec(90, 64)); !img)
        die(img.error().message);
    json jc = {{"name", c.name()},
               {"preset", c.preset->name},
               {"shape", c.shape == Shape::W13 ? "w13" : "w2"},
               {"M", c.M},
               {"rank", c.rank},
               {"sorted", c.sorted},
               {"two_kernel", c.twoKernel},
               {"sparse", c.sparse},
               {"path", path},
               {"bucket", bucketKey(c, path)},
               {"candidates", json::array()}};
    std::set<std::string> seen;
    std::vector<json> configs = candidates(sweep, path);
    std::optional<json> current;
    if (!baseTablePath.empty())
      current = currentConfig(baseJson, baseTable, gpu, c, path);
    if (current) // first, so that a sweep point with the same kernels is it
      configs.insert(configs.begin(), *current);
    for (const json &cfg : configs) {
      TunedTable table = tableFor(gpu, entryFor(c, path, cfg));
      auto p = planFusedMoeLora(call, c.twoKernel, device, &table);
      std::string reason, keys;
      if (!p)
        reason = p.error().message;
      for (size_t i = 0; p && i < p->kernels.size() && reason.empty(); ++i) {
        const KernelSpec &s = p->kernels[i].spec;
        // Launch knobs are part of a candidate's identity: configs that
        // differ only in tiles_per_item or NPID run the same kernels.
        keys += fmt::format("{}{} [npid={} tiles_per_item={}]", i ? " + " : "",
                            s.cacheKey(), p->kernels[i].knobs.npid,
                            p->kernels[i].knobs.tilesPerItem);
        if (std::string why = validateSpec(s); !why.empty())
          reason = why;
        else if (auto img = cache.image(s); !img)
          reason = img.error().message;
        else if (ptxas) {
          std::string file = fmt::format("{}/{}.ptx", cacheDir, s.entryName());
          std::string cmd = fmt::format(
              "/usr/local/cuda/bin/ptxas -arch={} -v {} -o /dev/null 2>&1",
              s.ptxTarget(), file);
          FILE *f = popen(cmd.c_str(), "r");
          std::string outText;
          char buf[512];
          while (f && fgets(buf, sizeof buf, f))
            outText += buf;
          int rc = f ? pclose(f) : -1;
          if (rc != 0)
            reason = "ptxas rejected it: " + outText;
          else if (outText.find(" 0 bytes spill stores") == std::string::npos)
            reason = "spills registers (ptxas -v)";
        }
      }
      if (!reason.empty()) {
        ++rejected;
        plan["rejected"].push_back(
            {{"case", c.name()}, {"config", cfg}, {"reason", reason}});
        continue;
      }
      if (!seen.insert(keys).second)
        continue; // same kernels as an earlier candidate
      json cand = {{"config", cfg}, {"keys", keys}};
      if (current && &cfg == &configs.front())
        cand["current"] = true;
      jc["candidates"].push_back(cand);
      ++kept;
    }
    plan["cases"].push_back(jc);
    if (isatty(2))
      std::fprintf(stderr,
                   "\r[prepare] %zu/%zu cases, %zu candidates, %zu "
                   "rejected",
                   plan["cases"].size(), cases.size(), kept, rejected);
  }
  if (isatty(2))
    std::fprintf(stderr, "\n");
  std::ofstream(planPath) << plan.dump(1);
  std::printf("plan: %s (%zu cases, %zu candidates, %zu rejected; kernels in "
              "%s)\n",
              planPath.c_str(), plan["cases"].size(), kept, rejected,
              cacheDir.c_str());
  return 0;
}

moelora_runtime *makeRuntime(const std::string &cacheDir,
                             const std::string &tablePath) {
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
  o.cache_dir = cacheDir.c_str();
  o.enable_jit = 0;
  o.tuned_table_path = tablePath.c_str(); // "": vLLM's rules alone
  moelora_runtime *rt = nullptr;
  checkStatus(moelora_runtime_create(&o, &rt), "runtime_create");
  return rt;
}

int run(const std::string &planPath, const std::string &cacheDir,
        const std::string &outPath, const std::string &progressPath) {
  std::ifstream in(planPath);
  if (!in)
    die("cannot read " + planPath);
  json plan = json::parse(in);
  auto d = CudaDriver::get();
  if (!d)
    die(d.error().message);
  driver() = *d;
  moelora_runtime *rt = makeRuntime(cacheDir, "");
  CUstream stream;
  CK(driver()->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  char gpuName[256] = {0};
  CUdevice dev;
  CK(driver()->cuCtxGetDevice(&dev));
  CK(driver()->cuDeviceGetName(gpuName, sizeof(gpuName), dev));
  if (plan["gpu"] != gpuName)
    std::fprintf(stderr,
                 "moelora-tune: note: plan made for '%s', running on "
                 "'%s'\n",
                 plan["gpu"].get<std::string>().c_str(), gpuName);

  // Resume: results already measured.
  std::map<std::string, json> done;
  if (std::ifstream prog(progressPath); prog) {
    std::string line;
    while (std::getline(prog, line))
      if (!line.empty()) {
        json j = json::parse(line);
        done[j["id"].get<std::string>()] = j;
      }
  }
  std::ofstream progress(progressPath, std::ios::app);
  size_t total = 0, finished = 0;
  for (const json &c : plan["cases"])
    total += 1 + c["candidates"].size();
  Buffer flush(size_t(256) << 20);
  ProblemFactory factory(777);
  auto t0 = std::chrono::steady_clock::now();
  std::string tablePath =
      fmt::format("/tmp/moelora-tune-candidate-{}.json", getpid());
  json table = {{"format", "moelora-tuned"},
                {"version", 1},
                {"gpu", gpuName},
                {"entries", json::array()}};
  // Per tuned-table bucket: its cases and every config's time on each.
  struct Bucket {
    BenchCase first;
    std::string path;
    std::vector<std::string> cases;
    tune::BucketTimes times;
  };
  std::map<std::string, Bucket> buckets;
  std::vector<std::string> bucketOrder;
  for (const json &jc : plan["cases"]) {
    BenchCase c{nullptr,
                jc["shape"] == "w13" ? Shape::W13 : Shape::W2,
                jc["M"].get<int>(),
                jc["rank"].get<int>(),
                jc["sorted"].get<bool>(),
                jc["two_kernel"].get<bool>(),
                jc.value("sparse", false)};
    for (const Preset &p : kPresets)
      if (jc["preset"] == p.name)
        c.preset = &p;
    std::unique_ptr<BenchProblem> prob;
    std::vector<uint16_t> reference;
    const int iters = c.M >= 4096 ? 100 : 200;
    auto measure = [&](moelora_runtime *r, json &result) {
      if (!prob) {
        prob = factory.make(c, rt, stream);
        // The default config's output, once, is the reference.
        checkStatus(moelora_fused_moe_lora(rt, &prob->args, stream), "fused");
        CK(driver()->cuStreamSynchronize(stream));
        reference.resize(prob->out.bytes / 2);
        CK(driver()->cuMemcpyDtoH(reference.data(), prob->out.ptr,
                                  prob->out.bytes));
      }
      CK(driver()->cuMemcpyDtoDAsync(prob->out.ptr, prob->outInit.ptr,
                                     prob->out.bytes, stream));
      moelora_status st = moelora_fused_moe_lora(r, &prob->args, stream);
      CK(driver()->cuStreamSynchronize(stream));
      if (st != MOELORA_OK) {
        result["ok"] = false;
        result["reason"] = moelora_last_error();
        return;
      }
      std::vector<uint16_t> got(reference.size());
      CK(driver()->cuMemcpyDtoH(got.data(), prob->out.ptr, prob->out.bytes));
      double num = 0, den = 0;
      DType dt = DType::BF16;
      for (size_t i = 0; i < got.size(); ++i) {
        double a = toFloat(dt, got[i]), b = toFloat(dt, reference[i]);
        num += (a - b) * (a - b);
        den += b * b;
      }
      double err = std::sqrt(num / std::max(den, 1e-30));
      result["rel_l2_vs_default"] = err;
      if (!(err < 1e-2)) {
        result["ok"] = false;
        result["reason"] = "output differs from the default config's";
        return;
      }
      result["us"] = timeLaunch(
          [&](CUstream s) {
            checkStatus(moelora_fused_moe_lora(r, &prob->args, s), "fused");
          },
          stream, flush, iters);
      result["ok"] = true;
    };
    auto record = [&](const std::string &id, json result) {
      result["id"] = id;
      progress << result.dump() << "\n" << std::flush;
      done[id] = result;
      ++finished;
      double el =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count();
      double eta = finished ? el / finished * (total - finished) : 0;
      // A progress bar on a terminal, a line per 5% otherwise.
      bool tty = isatty(2);
      if (tty || finished * 20 / total != (finished - 1) * 20 / total) {
        int filled = int(30 * finished / total);
        std::fprintf(stderr, "%s[%-30s] %zu/%zu %-40s ETA %2.0f:%02.0f%s",
                     tty ? "\r" : "", std::string(filled, '#').c_str(),
                     finished, total, jc["name"].get<std::string>().c_str(),
                     std::floor(eta / 60), std::fmod(eta, 60), tty ? "" : "\n");
      }
    };
    std::string baseId = jc["name"].get<std::string>() + "|default";
    if (!done.count(baseId)) {
      json r;
      measure(rt, r);
      record(baseId, r);
    } else {
      ++finished;
    }
    const std::string bucketId = jc.value(
        "bucket", jc["name"].get<std::string>()); // older plans: per case
    auto [it, fresh] = buckets.try_emplace(bucketId);
    Bucket &bucket = it->second;
    if (fresh) {
      bucket.first = c;
      bucket.path = jc["path"].get<std::string>();
      bucketOrder.push_back(bucketId);
    }
    const size_t caseIndex = bucket.cases.size();
    bucket.cases.push_back(jc["name"].get<std::string>());
    auto note = [&](const std::string &config, const json &r) {
      std::vector<double> &t = bucket.times[config];
      t.resize(caseIndex + 1, std::nan(""));
      t[caseIndex] =
          r.value("ok", false) ? r["us"].get<double>() : std::nan("");
    };
    note(tune::kDefaultConfig, done[baseId]);
    for (const json &cand : jc["candidates"]) {
      std::string id =
          jc["name"].get<std::string>() + "|" + cand["config"].dump();
      if (!done.count(id)) {
        json entry =
            entryFor(c, jc["path"].get<std::string>().c_str(), cand["config"]);
        std::ofstream(tablePath) << json({{"format", "moelora-tuned"},
                                          {"version", 1},
                                          {"gpu", gpuName},
                                          {"entries", json::array({entry})}})
                                        .dump();
        moelora_runtime *crt = makeRuntime(cacheDir, tablePath);
        json r;
        measure(crt, r);
        moelora_runtime_destroy(crt);
        record(id, r);
      } else {
        ++finished;
      }
      note(cand.value("current", false) ? std::string(tune::kCurrentConfig)
                                        : cand["config"].dump(),
           done[id]);
    }
  }
  // Each bucket's entry, chosen by the summed time of its cases.
  std::vector<std::string> summary;
  for (const std::string &id : bucketOrder) {
    Bucket &b = buckets.at(id);
    for (auto &[config, t] : b.times)
      t.resize(b.cases.size(), std::nan("")); // not run for some case: loses
    tune::BucketChoice choice = tune::chooseForBucket(b.times);
    std::string names;
    for (const std::string &n : b.cases)
      names += (names.empty() ? "" : " + ") + n;
    std::string what;
    switch (choice.outcome) {
    case tune::BucketOutcome::UseConfig:
      table["entries"].push_back(
          entryFor(b.first, b.path.c_str(), json::parse(choice.config)));
      what = choice.config;
      break;
    case tune::BucketOutcome::UseRules:
      table["entries"].push_back(
          entryFor(b.first, b.path.c_str(), json::object()));
      what = "the rules (entry {})";
      break;
    case tune::BucketOutcome::KeepCurrent:
      what = b.times.count(tune::kCurrentConfig) ? "current entry kept"
                                                 : "rules kept (no entry)";
      break;
    }
    summary.push_back(fmt::format(
        "{}\n    rules {:.1f} us{} -> {:.1f} us: {}", names, choice.defaultUs,
        choice.currentUs > 0
            ? fmt::format(", current {:.1f} us", choice.currentUs)
            : std::string(),
        choice.chosenUs, what));
  }
  std::fprintf(stderr, "\n");
  std::remove(tablePath.c_str());
  std::ofstream(outPath) << table.dump(1);
  std::printf("Buckets (summed over their cases; rules, current -> "
              "chosen):\n");
  for (const std::string &s : summary)
    std::printf("%s\n", s.c_str());
  std::printf("tuned table: %s (%zu entries, GPU '%s')\n", outPath.c_str(),
              table["entries"].size(), gpuName);
  moelora_runtime_destroy(rt);
  return 0;
}

int mergeTables(const std::string &basePath, const std::string &updatePath,
                const std::string &outPath) {
  auto base = TunedTable::readText(basePath);
  if (!base)
    die(base.error().message);
  auto update = TunedTable::readText(updatePath);
  if (!update)
    die(update.error().message);
  auto merged = mergeTunedTables(*base, *update, basePath + " + " + updatePath);
  if (!merged)
    die(merged.error().message);
  std::ofstream out(outPath);
  out << *merged;
  if (!out.flush())
    die("cannot write " + outPath);
  std::printf("merged table: %s\n", outPath.c_str());
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"moelora-tune: autotuning sweep -> tuned table"};
  app.require_subcommand(1);
  std::string sweep, workload, cache, planPath, gpu = "NVIDIA H100 80GB HBM3",
                                                out, progress;
  bool ptxas = false;
  auto *prep = app.add_subcommand("prepare", "plan and generate candidates");
  prep->add_option("--sweep", sweep, "sweep YAML")
      ->required()
      ->check(CLI::ExistingFile);
  prep->add_option("--workload", workload, "workload YAML")
      ->required()
      ->check(CLI::ExistingFile);
  prep->add_option("--cache", cache, "disk cache to fill")->required();
  prep->add_option("--plan", planPath, "plan JSON to write")->required();
  prep->add_option("--gpu", gpu, "GPU name the table is for");
  prep->add_flag("--ptxas", ptxas,
                 "reject candidates ptxas rejects or that spill");
  std::string baseTable;
  prep->add_option("--base-table", baseTable,
                   "tuned table whose entries compete as 'current'")
      ->check(CLI::ExistingFile);
  auto *runCmd = app.add_subcommand("run", "time candidates on the GPU");
  runCmd->add_option("--plan", planPath, "plan JSON")
      ->required()
      ->check(CLI::ExistingFile);
  runCmd->add_option("--cache", cache, "disk cache with the kernels")
      ->required();
  runCmd->add_option("--out", out, "tuned table JSON to write")->required();
  runCmd->add_option("--progress", progress, "progress file (resume)")
      ->default_val("tune-progress.jsonl");
  std::string base, update;
  auto *mergeCmd = app.add_subcommand(
      "merge", "merge a (partial) tuned table into a full one");
  mergeCmd->add_option("--base", base, "tuned table to update")
      ->required()
      ->check(CLI::ExistingFile);
  mergeCmd->add_option("--update", update, "moelora-tune run's table")
      ->required()
      ->check(CLI::ExistingFile);
  mergeCmd->add_option("--out", out, "merged table (may be --base)")
      ->required();
  CLI11_PARSE(app, argc, argv);
  if (*prep)
    return prepare(sweep, workload, cache, planPath, gpu, ptxas, baseTable);
  if (*mergeCmd)
    return mergeTables(base, update, out);
  return run(planPath, cache, out, progress);
}
