//===- BucketChoice.h - The tuned config of one table bucket ------*- C++
//-*-===//
//
// A tuned-table entry serves every call of its bucket (path, dtype, shape,
// pairs up to max_pairs), so moelora-tune picks it by the summed time of all
// the bucket's workload cases (e.g. dense and sparse routing of one batch
// size), not case by case: a winner for one case must not lose the bucket's
// other cases. The rules' config ("default") and the table's current entry
// ("current", when the plan was made against a table) compete too, so a run
// never replaces an entry with a slower one by its own measurements. Nor
// does it trade one case for another: a replacement may make no case of the
// bucket more than 3% slower than what the bucket runs now (issue 13's rule
// for the benchmark; a summed time let a dense case lose 8% while its
// sparse bucket-mate gained).
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_TOOLS_TUNE_BUCKETCHOICE_H
#define MOELORA_TOOLS_TUNE_BUCKETCHOICE_H

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace moelora::tune {

inline constexpr const char *kDefaultConfig = "default";
inline constexpr const char *kCurrentConfig = "current";

/// Times (us) of one bucket's cases per config: config -> one time per case
/// (NaN where the config failed or was not measured for that case).
using BucketTimes = std::map<std::string, std::vector<double>>;

enum class BucketOutcome {
  KeepCurrent, ///< no entry: the table keeps what it has (or the rules)
  UseRules,    ///< an entry with an empty config: the rules beat the current
  UseConfig,   ///< an entry with `config`
};

struct BucketChoice {
  BucketOutcome outcome = BucketOutcome::KeepCurrent;
  std::string config;   ///< UseConfig: the winner
  double chosenUs = 0;  ///< summed time of what the bucket will run
  double defaultUs = 0; ///< summed time of the rules' config
  double currentUs = 0; ///< summed time of the current entry (0: none)
};

/// Sum over the cases; infinity when any case has no valid time.
inline double totalUs(const std::vector<double> &times) {
  double sum = 0;
  for (double t : times) {
    if (!std::isfinite(t) || t <= 0)
      return std::numeric_limits<double>::infinity();
    sum += t;
  }
  return times.empty() ? std::numeric_limits<double>::infinity() : sum;
}

/// Whether `candidate` keeps every case within `caseLimit` of `now` (a case
/// `now` has no valid time for cannot get worse).
inline bool noCaseSlower(const std::vector<double> &candidate,
                         const std::vector<double> &now, double caseLimit) {
  for (size_t i = 0; i < candidate.size() && i < now.size(); ++i)
    if (std::isfinite(now[i]) && now[i] > 0 &&
        !(candidate[i] <= now[i] * caseLimit))
      return false;
  return true;
}

/// A sweep config wins when its total beats the better of the rules and the
/// current entry by more than `margin` (timing noise) and no case of the
/// bucket gets slower than `caseLimit` times what the bucket runs now;
/// otherwise the current entry stays, unless the rules win by the same two
/// tests.
inline BucketChoice chooseForBucket(const BucketTimes &times,
                                    double margin = 0.97,
                                    double caseLimit = 1.03) {
  auto total = [&](const char *name) {
    auto it = times.find(name);
    return it == times.end() ? std::numeric_limits<double>::infinity()
                             : totalUs(it->second);
  };
  BucketChoice c;
  const double def = total(kDefaultConfig), cur = total(kCurrentConfig);
  c.defaultUs = std::isfinite(def) ? def : 0;
  c.currentUs = std::isfinite(cur) ? cur : 0;
  const bool hasCurrent = times.count(kCurrentConfig) != 0;
  // What the bucket runs without a new entry, in total and per case.
  const double keep = hasCurrent ? cur : def;
  const char *keepName = hasCurrent ? kCurrentConfig : kDefaultConfig;
  static const std::vector<double> none;
  const std::vector<double> &keepTimes =
      times.count(keepName) ? times.at(keepName) : none;
  double bestUs = std::numeric_limits<double>::infinity();
  std::string best;
  for (const auto &[config, t] : times) {
    if (config == kDefaultConfig || config == kCurrentConfig)
      continue;
    double us = totalUs(t);
    if (us < bestUs && noCaseSlower(t, keepTimes, caseLimit)) {
      bestUs = us;
      best = config;
    }
  }
  const double baseline = std::min(def, keep);
  if (!best.empty() && bestUs < baseline * margin) {
    c.outcome = BucketOutcome::UseConfig;
    c.config = best;
    c.chosenUs = bestUs;
  } else if (hasCurrent && def < cur * margin &&
             noCaseSlower(times.at(kDefaultConfig), keepTimes, caseLimit)) {
    c.outcome = BucketOutcome::UseRules;
    c.chosenUs = def;
  } else {
    c.outcome = BucketOutcome::KeepCurrent;
    c.chosenUs = keep;
  }
  return c;
}

} // namespace moelora::tune

#endif // MOELORA_TOOLS_TUNE_BUCKETCHOICE_H
