//===- TunedTable.cpp - Tuned configs per GPU and shape bucket ------------===//

#include "moelora/Runtime/TunedTable.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

namespace moelora {

Expected<std::string> TunedTable::readText(const std::string &path) {
  std::ifstream in(path);
  if (!in)
    return makeError("tuned table " + path + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Expected<TunedTable> TunedTable::load(const std::string &path) {
  auto text = readText(path);
  if (!text)
    return text.error();
  return parse(*text, path);
}

namespace {

/// An integer field of a JSON object, as T. nlohmann's get<int>() of a
/// floating-point number outside int's range is undefined behaviour, and
/// of an integer outside it a silent wrap (test/fuzz/RESULTS.md, F3), so
/// the value must be a JSON integer within T's range. Absent: `fallback`,
/// or an error when there is none (a required field). `where` names the
/// origin and the entry.
template <typename T>
Expected<T> integerField(const nlohmann::json &object, const char *name,
                         std::optional<T> fallback, const std::string &where) {
  auto it = object.find(name);
  if (it == object.end()) {
    if (fallback)
      return *fallback;
    return makeError(
        fmt::format("{}: {}: missing; allowed: an integer", where, name));
  }
  const nlohmann::json &v = *it;
  constexpr T lo = std::numeric_limits<T>::min();
  constexpr T hi = std::numeric_limits<T>::max();
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(hi))
      return static_cast<T>(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= static_cast<int64_t>(lo) && i <= static_cast<int64_t>(hi))
      return static_cast<T>(i);
  }
  return makeError(fmt::format("{}: {} = {}: allowed: an integer in {}..{}",
                               where, name, v.dump(), lo, hi));
}

} // namespace

Expected<TunedTable> TunedTable::parse(const std::string &text,
                                       const std::string &origin) {
  TunedTable table;
  try {
    auto j = nlohmann::json::parse(text);
    if (j.value("format", "") != "moelora-tuned")
      return makeError(origin + ": format is not moelora-tuned");
    table.gpu = j.at("gpu").get<std::string>();
    for (const auto &e : j.at("entries")) {
      const size_t index = table.entries.size();
      const std::string where = fmt::format("{}: entry {}", origin, index);
      if (!e.is_object())
        return makeError(where + ": expected an object");
      TunedEntry t;
      t.path = e.at("path").get<std::string>();
      // A misspelt path would make the entry silently never match.
      if (t.path != "one_shot" && t.path != "small_batch" &&
          t.path != "two_kernel" && t.path != "fused")
        return makeError(fmt::format("{}: path '{}': allowed: one_shot, "
                                     "small_batch, two_kernel, fused",
                                     origin, t.path));
      auto dt = parseDType(e.at("dtype").get<std::string>());
      if (!dt)
        return makeError(origin + ": dtype must be fp16 or bf16");
      t.dtype = *dt;
      t.sorted = e.value("sorted", false);
      const std::optional<int> required;
      struct {
        const char *name;
        int *field;
        std::optional<int> fallback;
      } ints[] = {{"rank", &t.rank, required},
                  {"K", &t.K, required},
                  {"N", &t.N, required},
                  {"num_slices", &t.numSlices, 1}};
      for (const auto &f : ints) {
        Expected<int> v = integerField<int>(e, f.name, f.fallback, where);
        if (!v)
          return v.error();
        *f.field = *v;
      }
      Expected<long> maxPairs =
          integerField<long>(e, "max_pairs", std::nullopt, where);
      if (!maxPairs)
        return maxPairs.error();
      t.maxPairs = *maxPairs;
      if (t.path == "fused") {
        // A path choice, not a kernel config.
        auto use = e.find("use");
        if (use == e.end() || !use->is_string() ||
            (*use != "one_shot" && *use != "two_kernel"))
          return makeError(fmt::format(
              "{}: use = {}: allowed: \"one_shot\", \"two_kernel\" (path "
              "fused)",
              where, use == e.end() ? std::string("missing") : use->dump()));
        t.use = use->get<std::string>();
        if (e.contains("config") &&
            !(e["config"].is_object() && e["config"].empty()))
          return makeError(where + ": config: path fused takes none");
        table.entries.push_back(t);
        continue;
      }
      if (e.contains("use"))
        return makeError(
            fmt::format("{}: use: only path fused takes it", where));
      const auto &c = e.at("config");
      if (!c.is_object())
        return makeError(where + ": config: expected an object");
      const std::string configWhere = where + ": config";
      struct {
        const char *name;
        int *field;
        int fallback;
      } config[] = {{"BLOCK_SIZE_N", &t.config.blockN, 0},
                    {"BLOCK_SIZE_K", &t.config.blockK, 0},
                    {"num_warps", &t.config.numWarps, 0},
                    {"num_stages", &t.config.numStages, 0},
                    {"NPID", &t.config.npid, 0},
                    {"tiles_per_item", &t.config.tilesPerItem, 0},
                    {"SPLIT_K", &t.config.splitK, 0},
                    {"min_blocks_per_sm", &t.config.minBlocksPerSm, -1},
                    {"few_rows_tile", &t.config.fewRowsTile, 0}};
      // The boolean kernel choices, each on one_shot and on two_kernel (the
      // kernel of that path it configures); absent stays -1.
      struct BoolChoice {
        const char *name;
        int *field;
        const char *twoKernelKernel;
      } choices[] = {{"fuse_slices", &t.config.fuseSlices, "shrink"},
                     {"wgmma", &t.config.wgmma, "shrink"},
                     {"few_rows", &t.config.fewRows, "expand"},
                     {"tma_weights", &t.config.tmaWeights, "shrink"},
                     {"producer_warp", &t.config.producerWarp, "shrink"},
                     {"persistent", &t.config.persistent, "one_shot"},
                     {"wgmma_expand", &t.config.wgmmaExpand, "expand"},
                     {"bulk_output", &t.config.bulkOutput, "expand"},
                     {"bulk_shrink", &t.config.bulkShrink, "shrink"},
                     {"early_expand", &t.config.earlyExpand, "one_shot"},
                     {"reduce_scatter", &t.config.reduceScatter, "one_shot"}};
      // A misspelt key would otherwise leave its default in place, silently.
      std::vector<std::string> keys;
      for (const auto &f : config)
        keys.push_back(f.name);
      for (const BoolChoice &b : choices)
        keys.push_back(b.name);
      for (const auto &item : c.items())
        if (std::find(keys.begin(), keys.end(), item.key()) == keys.end())
          return makeError(fmt::format("{}: {}: unknown key; allowed: {}",
                                       configWhere, item.key(),
                                       fmt::join(keys, ", ")));
      for (const auto &f : config) {
        Expected<int> v = integerField<int>(c, f.name, f.fallback, configWhere);
        if (!v)
          return v.error();
        *f.field = *v;
      }
      if (t.config.tilesPerItem < 0)
        return makeError(fmt::format(
            "{}: entry {}: tiles_per_item = {}: allowed: 0 (the rule) or >= 1",
            origin, index, t.config.tilesPerItem));
      // SPLIT_K is the small_batch / one_shot cluster size here (the
      // two-kernel shrink's split is not tuned): 0 = the rule, else a power
      // of two up to 16 (16: a non-portable cluster).
      const int sk = t.config.splitK;
      if (sk != 0 && ((t.path != "small_batch" && t.path != "one_shot") ||
                      sk < 1 || sk > kMaxClusterBlocks || (sk & (sk - 1)) != 0))
        return makeError(fmt::format(
            "{}: entry {}: SPLIT_K = {} on path {}: allowed: 1, 2, 4, 8, 16 on "
            "small_batch and one_shot only",
            origin, index, sk, t.path));
      const int frt = t.config.fewRowsTile;
      if (frt != 0 && ((t.path != "one_shot" && t.path != "two_kernel") ||
                       (frt != 16 && frt != 32)))
        return makeError(fmt::format(
            "{}: entry {}: few_rows_tile = {} on path {}: allowed: 16 or 32, "
            "on one_shot and two_kernel (its expand) only",
            origin, index, frt, t.path));
      // A one_shot cluster is its row block's NPID programs.
      if (t.path == "one_shot" && sk > 1 && t.config.npid != 0 &&
          t.config.npid != sk)
        return makeError(fmt::format(
            "{}: entry {}: NPID = {} with SPLIT_K = {}: allowed: NPID 0 or "
            "{} (a one_shot cluster is its row block's NPID programs)",
            origin, index, t.config.npid, sk, sk));
      for (const BoolChoice &b : choices) {
        auto v = c.find(b.name);
        if (v == c.end())
          continue;
        if (!v->is_boolean() ||
            (t.path != "two_kernel" && t.path != "one_shot"))
          return makeError(fmt::format(
              "{}: {} = {} on path {}: allowed: true or false, on one_shot and "
              "two_kernel (its {}) only",
              configWhere, b.name, v->dump(), t.path, b.twoKernelKernel));
        *b.field = v->get<bool>() ? 1 : 0;
      }
      for (auto [name, value] : {std::pair{"persistent", t.config.persistent},
                                 {"early_expand", t.config.earlyExpand},
                                 {"reduce_scatter", t.config.reduceScatter}})
        if (value != -1 && t.path != "one_shot")
          return makeError(
              fmt::format("{}: {} on path {}: allowed on one_shot only",
                          configWhere, name, t.path));
      if (c.contains("min_blocks_per_sm") &&
          (t.config.minBlocksPerSm < 0 ||
           t.config.minBlocksPerSm > kMaxMinBlocksPerSm))
        return makeError(fmt::format(
            "{}: entry {}: min_blocks_per_sm = {}: allowed: 0..{}", origin,
            table.entries.size(), t.config.minBlocksPerSm, kMaxMinBlocksPerSm));
      table.entries.push_back(t);
    }
  } catch (const std::exception &e) {
    return makeError(fmt::format("{}: bad tuned table: {}", origin, e.what()));
  }
  return table;
}

Expected<std::string> mergeTunedTables(const std::string &baseText,
                                       const std::string &updateText,
                                       const std::string &origin) {
  auto base = TunedTable::parse(baseText, origin + " (base)");
  if (!base)
    return base.error();
  auto update = TunedTable::parse(updateText, origin + " (update)");
  if (!update)
    return update.error();
  if (base->gpu != update->gpu)
    return makeError(fmt::format("{}: the tables are for different GPUs "
                                 "('{}' and '{}')",
                                 origin, base->gpu, update->gpu));
  using nlohmann::json;
  json out = json::parse(baseText);
  const json add = json::parse(updateText);
  auto key = [](const json &e) {
    return fmt::format(
        "{}|{}|{}|{}|{}|{}|{}|{}", e.at("path").get<std::string>(),
        e.at("dtype").get<std::string>(), e.at("rank").get<int>(),
        e.at("K").get<int>(), e.at("N").get<int>(), e.value("num_slices", 1),
        e.value("sorted", false), e.at("max_pairs").get<long>());
  };
  std::set<std::string> replaced;
  for (const json &e : add.at("entries"))
    replaced.insert(key(e));
  json entries = json::array();
  for (const json &e : out.at("entries"))
    if (!replaced.count(key(e)))
      entries.push_back(e);
  for (const json &e : add.at("entries"))
    entries.push_back(e);
  out["entries"] = std::move(entries);
  return out.dump(1) + "\n";
}

const TunedEntry *TunedTable::find(const std::string &gpuName,
                                   const std::string &path, DType dtype,
                                   int rank, int K, int N, int numSlices,
                                   bool sorted, long pairs) const {
  if (gpuName != gpu)
    return nullptr;
  const TunedEntry *best = nullptr;
  for (const TunedEntry &e : entries) {
    if (e.path != path || e.dtype != dtype || e.rank != rank || e.K != K ||
        e.N != N || e.numSlices != numSlices || e.sorted != sorted ||
        pairs > e.maxPairs)
      continue;
    if (!best || e.maxPairs < best->maxPairs)
      best = &e;
  }
  return best;
}

} // namespace moelora
