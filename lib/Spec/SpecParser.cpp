//===- SpecParser.cpp - YAML tiling specs -> validated KernelSpecs --------===//
//
// Two kinds of checks, with different consequences:
//  - field checks look at one value on its own (unknown field, wrong type,
//    value outside the field's allowed set). They fail the whole parse: a
//    typo would otherwise silently remove kernels from a bundle.
//  - cross-field rules (validateSpec) depend on a combination of values. In a
//    sweep some combinations are expected to be invalid, so those points are
//    returned as RejectedSpec; an entry without any list has exactly one
//    point, and a rule violation there is an error.
//
// Every message is "<file>:<line>:<col>: <field>: <what>; allowed: <values>"
// so editors can jump to it and the user sees what to write instead.
//
//===----------------------------------------------------------------------===//

#include "moelora/Spec/SpecParser.h"

#include "SpecSchema.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

namespace fs = std::filesystem;

namespace moelora {
using namespace spec;
namespace {

/// K is optional; an absent K travels through the sweep as this value, which
/// no parsed K can take (K >= 1).
constexpr int kNoK = 0;
/// An absent min_blocks_per_sm: the family's default, resolved once the
/// point's kernel family is known (no written value can be negative).
constexpr int kFamilyDefault = -1;
/// Points one entry may sweep, and all entries of a file together (entries
/// can repeat through YAML aliases): the cartesian product of a few short
/// lists is otherwise unbounded in time and memory.
constexpr uint64_t kMaxSweepPoints = 100000;
constexpr uint64_t kMaxFilePoints = 1000000;

/// 1-based "line:col" prefix of a diagnostic.
std::string at(const std::string &file, const YAML::Mark &m) {
  return fmt::format("{}:{}:{}: ", file, m.line + 1, m.column + 1);
}

Error locatedError(const std::string &file, const YAML::Mark &m,
                   std::string_view field, std::string_view what,
                   std::string_view allowed) {
  return makeError(
      fmt::format("{}{}: {}; allowed: {}", at(file, m), field, what, allowed));
}

const char *nodeKindName(const YAML::Node &n) {
  switch (n.Type()) {
  case YAML::NodeType::Map:
    return "a mapping";
  case YAML::NodeType::Sequence:
    return "a list";
  case YAML::NodeType::Null:
    return "nothing";
  default:
    return "a scalar";
  }
}

/// One field as written in an entry or inherited from `defaults:`.
struct FieldSource {
  YAML::Node key;
  YAML::Node value;
  bool fromDefaults = false;

  /// yaml-cpp marks an empty value at the next token, which may be on a
  /// later line; the key is where the user has to look.
  YAML::Mark mark() const { return value.IsNull() ? key.Mark() : value.Mark(); }
};

/// Absent fields are nullopt. Entries override defaults by emplace(), never
/// by assigning a YAML::Node: yaml-cpp's Node::operator= writes through to
/// the node it refers to, which would rewrite `defaults:` for later entries.
using FieldSources = std::array<std::optional<FieldSource>, kNumFields>;

/// One entry's values per field (one value, or a sweep list), parsed and
/// checked but not yet expanded.
struct PreparedEntry {
  std::array<std::vector<int>, kNumFields> dims;
  /// The product of the dims' sizes (at most kMaxSweepPoints).
  uint64_t points = 1;
  bool isSweep = false;
  /// `rank` written in the entry itself (not inherited from `defaults:`).
  bool rankWritten = false;
  YAML::Mark mark;
};

class EntryParser {
public:
  explicit EntryParser(const std::string &file) : file(file) {}

  /// Reads the keys of `map` into `sources` (later calls override earlier
  /// ones, which is how an entry overrides `defaults:`).
  Status collect(const YAML::Node &map, bool fromDefaults,
                 FieldSources &sources) const {
    std::unordered_set<std::string> seen;
    for (const auto &kv : map) {
      const YAML::Node &key = kv.first;
      if (!key.IsScalar())
        return locatedError(file, key.Mark(), "<key>",
                            fmt::format("field names must be scalars, got {}",
                                        nodeKindName(key)),
                            allFieldNames());
      const std::string &name = key.Scalar();
      std::optional<Field> f = lookupField(name);
      if (!f)
        return locatedError(file, key.Mark(), name, "unknown field",
                            allFieldNames());
      // yaml-cpp keeps both copies of a repeated key; which one wins would be
      // an accident of lookup order, so refuse it.
      if (!seen.insert(name).second)
        return locatedError(file, key.Mark(), name, "duplicate field",
                            "each field at most once per mapping");
      sources[static_cast<size_t>(*f)].emplace(
          FieldSource{key, kv.second, fromDefaults});
    }
    return Status::ok();
  }

  /// Parses one scalar of field `f` into its integer encoding (enums as
  /// their underlying value, bools as 0/1).
  Expected<int> parseScalar(Field f, const YAML::Node &node,
                            const YAML::Mark &mark) const {
    const FieldInfo &fi = info(f);
    if (node.IsNull())
      return locatedError(file, mark, fi.name, "missing value", fi.allowed);
    if (!node.IsScalar())
      return locatedError(file, mark, fi.name,
                          fmt::format("wrong type: expected a scalar, got {}",
                                      nodeKindName(node)),
                          fi.allowed);
    const std::string &text = node.Scalar();
    // yaml-cpp tags quoted scalars "!" and plain ones "?": "16" in quotes is
    // a string, and accepting it as a number would hide a quoting mistake.
    bool quoted = node.Tag() == "!";
    switch (fi.kind) {
    case ValueKind::Text:
      return 0;
    case ValueKind::Enum: {
      std::optional<int> value;
      if (f == Field::Kernel) {
        if (auto k = parseKernelFamily(text))
          value = static_cast<int>(*k);
      } else if (f == Field::DType) {
        if (auto d = parseDType(text))
          value = static_cast<int>(*d);
      } else if (f == Field::Target) {
        auto sm = parseTarget(text);
        if (sm &&
            std::find(kTargets.begin(), kTargets.end(), *sm) != kTargets.end())
          value = *sm;
      } else if (f == Field::Metadata) {
        if (text == "naive")
          value = 0;
        else if (text == "sorted")
          value = 1;
      }
      if (!value)
        return locatedError(file, mark, fi.name,
                            fmt::format("unknown value '{}'", text),
                            fi.allowed);
      return *value;
    }
    case ValueKind::Bool: {
      // The YAML 1.2 core schema spellings only; yaml-cpp would also take
      // yes/no/on/off, which read as strings to most people.
      if (!quoted && (text == "true" || text == "True" || text == "TRUE"))
        return 1;
      if (!quoted && (text == "false" || text == "False" || text == "FALSE"))
        return 0;
      return locatedError(
          file, mark, fi.name,
          fmt::format("wrong type: expected a boolean, got '{}'", text),
          fi.allowed);
    }
    case ValueKind::Int: {
      long long v = 0;
      const char *begin = text.data();
      const char *end = begin + text.size();
      auto [ptr, ec] = std::from_chars(begin, end, v);
      if (quoted || text.empty() || ec == std::errc::invalid_argument ||
          ptr != end)
        return locatedError(
            file, mark, fi.name,
            fmt::format("wrong type: expected an integer, got {}'{}'",
                        quoted ? "the string " : "", text),
            fi.allowed);
      if (ec == std::errc::result_out_of_range || v > INT_MAX || v < INT_MIN)
        return locatedError(file, mark, fi.name,
                            fmt::format("{} is out of range", text),
                            fi.allowed);
      std::string wrong = checkIntValue(f, v);
      if (!wrong.empty())
        return locatedError(file, mark, fi.name, wrong, fi.allowed);
      return static_cast<int>(v);
    }
    }
    return 0;
  }

  /// All values of one field (one for a scalar, several for a sweep list).
  Expected<std::vector<int>> parseValues(Field f,
                                         const FieldSource &src) const {
    const FieldInfo &fi = info(f);
    std::vector<int> values;
    if (!src.value.IsSequence()) {
      Expected<int> v = parseScalar(f, src.value, src.mark());
      if (!v)
        return v.error();
      values.push_back(*v);
      return values;
    }
    if (src.value.size() == 0)
      return locatedError(file, src.mark(), fi.name,
                          "empty list (a sweep needs at least one value)",
                          fi.allowed);
    for (const YAML::Node &item : src.value) {
      Expected<int> v = parseScalar(f, item, item.Mark());
      if (!v)
        return v.error();
      values.push_back(*v);
    }
    return values;
  }

  /// Parses one entry (merged over `defaults`) into the values of each
  /// field, without expanding it. An entry of more than kMaxSweepPoints
  /// points is an error.
  Expected<PreparedEntry> prepareEntry(const YAML::Node &entry,
                                       const YAML::Node *defaults) const {
    if (!entry.IsMap())
      return locatedError(file, entry.Mark(), "kernels",
                          fmt::format("each entry must be a mapping, got {}",
                                      nodeKindName(entry)),
                          allFieldNames());
    FieldSources sources;
    if (defaults)
      if (Status s = collect(*defaults, /*fromDefaults=*/true, sources); !s)
        return s.error();
    if (Status s = collect(entry, /*fromDefaults=*/false, sources); !s)
      return s.error();

    const std::optional<FieldSource> &nameSrc =
        sources[static_cast<size_t>(Field::Name)];
    if (nameSrc && !nameSrc->value.IsScalar())
      return locatedError(
          file, nameSrc->mark(), "name",
          fmt::format("expected a single string (names are not swept), got {}",
                      nodeKindName(nameSrc->value)),
          info(Field::Name).allowed);

    if (!sources[static_cast<size_t>(Field::Kernel)])
      return locatedError(file, entry.Mark(), "kernel",
                          "missing required field",
                          info(Field::Kernel).allowed);

    // Parse every field; absent ones take the KernelSpec default. Fields are
    // visited in schema order, so the kernel values are known at rank.
    const KernelSpec defaultSpec;
    std::array<std::vector<int>, kNumFields> dims;
    bool isSweep = false;
    for (size_t i = 0; i < kNumFields; ++i) {
      Field f = static_cast<Field>(i);
      const std::optional<FieldSource> &src = sources[i];
      if (f == Field::Name) {
        dims[i] = {0};
        continue;
      }
      if (f == Field::Rank) {
        const std::vector<int> &families =
            dims[static_cast<size_t>(Field::Kernel)];
        auto notAlign =
            std::find_if(families.begin(), families.end(), [](int v) {
              return static_cast<KernelFamily>(v) !=
                     KernelFamily::AlignBlockSize;
            });
        // align_block_size has no rank. A rank inherited from `defaults:` is
        // meant for the other entries: it neither applies here nor makes
        // the entry a sweep.
        if (notAlign == families.end() && (!src || src->fromDefaults)) {
          dims[i] = {0};
          continue;
        }
        if (!src)
          return locatedError(
              file, entry.Mark(), "rank",
              fmt::format("missing required field (kernel {})",
                          toString(static_cast<KernelFamily>(*notAlign))),
              info(Field::Rank).allowed);
      }
      if (!src && f == Field::MinBlocksPerSm) {
        dims[i] = {kFamilyDefault}; // resolved per point, below
        continue;
      }
      if (!src) {
        dims[i] = {defaultValue(f, defaultSpec)};
        continue;
      }
      isSweep |= src->value.IsSequence();
      Expected<std::vector<int>> values = parseValues(f, *src);
      if (!values)
        return values.error();
      dims[i] = values.take();
    }

    // The sweep's size before anything is expanded: a few bytes of lists
    // can ask for billions of points (test/fuzz/RESULTS.md, F1). The
    // product is checked for overflow (a wrapped one could pass the limit).
    PreparedEntry prepared;
    bool overLimit = false;
    std::string lists;
    for (size_t i = 0; i < kNumFields; ++i) {
      if (dims[i].size() < 2)
        continue;
      lists += fmt::format("{}{} {}", lists.empty() ? "" : " x ",
                           info(static_cast<Field>(i)).name, dims[i].size());
      uint64_t product = 0;
      if (__builtin_mul_overflow(prepared.points, uint64_t(dims[i].size()),
                                 &product))
        overLimit = true;
      else
        prepared.points = product;
    }
    if (overLimit || prepared.points > kMaxSweepPoints)
      return locatedError(
          file, entry.Mark(), "kernels",
          fmt::format("{} sweeps {} points ({})",
                      nameSrc
                          ? fmt::format("entry '{}'", nameSrc->value.Scalar())
                          : std::string("the entry"),
                      overLimit ? fmt::format("more than {}", kMaxSweepPoints)
                                : std::to_string(prepared.points),
                      lists),
          fmt::format("at most {} points per entry (split the sweep into "
                      "several entries)",
                      kMaxSweepPoints));

    const std::optional<FieldSource> &rankSrc =
        sources[static_cast<size_t>(Field::Rank)];
    prepared.dims = std::move(dims);
    prepared.isSweep = isSweep;
    prepared.rankWritten = rankSrc && !rankSrc->fromDefaults;
    prepared.mark = entry.Mark();
    return prepared;
  }

  /// Expands a prepared entry into `out`. `seen` holds the cache keys
  /// already in `out`.
  Status expandEntry(const PreparedEntry &entry, SpecSet &out,
                     std::unordered_set<std::string> &seen) const {
    const auto &dims = entry.dims;
    std::string origin = fmt::format("{}:{}", file, entry.mark.line + 1);

    // Odometer over the dimensions; the last field turns fastest, so the
    // first field in schema order is the outermost loop.
    std::array<size_t, kNumFields> idx{};
    while (true) {
      KernelSpec spec;
      for (size_t i = 0; i < kNumFields; ++i)
        apply(static_cast<Field>(i), dims[i][idx[i]], spec);
      // The same rule for align_block_size points of a sweep that mixes
      // families. A rank written in the entry itself is kept, and
      // validateSpec rejects it.
      if (spec.family == KernelFamily::AlignBlockSize && !entry.rankWritten)
        spec.rank = 0;
      if (spec.minBlocksPerSm == kFamilyDefault)
        spec.minBlocksPerSm = defaultMinBlocksPerSm(spec.family);
      spec.origin = origin;

      std::string reason = validateSpec(spec);
      if (!reason.empty() && !entry.isSweep)
        return makeError(at(file, entry.mark) + reason);
      // Sweeps can produce the same kernel twice (e.g. the ignored rank
      // above); the first point wins.
      if (seen.insert(spec.cacheKey()).second) {
        if (reason.empty())
          out.specs.push_back(std::move(spec));
        else
          out.rejected.push_back(RejectedSpec{std::move(spec), reason});
      }

      size_t i = kNumFields;
      while (i > 0) {
        --i;
        if (++idx[i] < dims[i].size())
          break;
        idx[i] = 0;
        if (i == 0)
          return Status::ok();
      }
    }
  }

private:
  static int defaultValue(Field f, const KernelSpec &d) {
    switch (f) {
    case Field::Name:
      return 0;
    case Field::Kernel:
      return static_cast<int>(d.family);
    case Field::DType:
      return static_cast<int>(d.dtype);
    case Field::Target:
      return d.sm;
    case Field::Rank:
      return d.rank;
    case Field::K:
      return d.k.value_or(kNoK);
    case Field::BlockM:
      return d.blockM;
    case Field::BlockN:
      return d.blockN;
    case Field::BlockK:
      return d.blockK;
    case Field::GroupSizeM:
      return d.groupSizeM;
    case Field::SplitK:
      return d.splitK;
    case Field::NumWarps:
      return d.numWarps;
    case Field::NumStages:
      return d.numStages;
    case Field::Metadata:
      return d.sorted ? 1 : 0;
    case Field::MulRoutedWeight:
      return d.mulRoutedWeight ? 1 : 0;
    case Field::AddInputs:
      return d.addInputs ? 1 : 0;
    case Field::NumSlices:
      return d.numSlices;
    case Field::Npid:
      return d.npid;
    case Field::MinBlocksPerSm:
      return d.minBlocksPerSm;
    case Field::OutAligned:
      return d.alignedOutput ? 1 : 0;
    case Field::FuseSlices:
      return d.fuseSlices ? 1 : 0;
    case Field::Wgmma:
      return d.wgmma ? 1 : 0;
    case Field::FewRows:
      return d.fewRows ? 1 : 0;
    case Field::FewRowsTile:
      return d.fewRowsTile;
    case Field::TmaWeights:
      return d.tmaWeights ? 1 : 0;
    case Field::ProducerWarp:
      return d.producerWarp ? 1 : 0;
    case Field::Persistent:
      return d.persistent ? 1 : 0;
    case Field::WgmmaExpand:
      return d.wgmmaExpand ? 1 : 0;
    case Field::BulkOutput:
      return d.bulkOutput ? 1 : 0;
    case Field::BulkShrink:
      return d.bulkShrink ? 1 : 0;
    case Field::EarlyExpand:
      return d.earlyExpand ? 1 : 0;
    case Field::ReduceScatter:
      return d.reduceScatter ? 1 : 0;
    }
    return 0;
  }

  static void apply(Field f, int v, KernelSpec &s) {
    switch (f) {
    case Field::Name:
      break;
    case Field::Kernel:
      s.family = static_cast<KernelFamily>(v);
      break;
    case Field::DType:
      s.dtype = static_cast<DType>(v);
      break;
    case Field::Target:
      s.sm = v;
      break;
    case Field::Rank:
      s.rank = v;
      break;
    case Field::K:
      s.k = v == kNoK ? std::nullopt : std::optional<int>(v);
      break;
    case Field::BlockM:
      s.blockM = v;
      break;
    case Field::BlockN:
      s.blockN = v;
      break;
    case Field::BlockK:
      s.blockK = v;
      break;
    case Field::GroupSizeM:
      s.groupSizeM = v;
      break;
    case Field::SplitK:
      s.splitK = v;
      break;
    case Field::NumWarps:
      s.numWarps = v;
      break;
    case Field::NumStages:
      s.numStages = v;
      break;
    case Field::Metadata:
      s.sorted = v != 0;
      break;
    case Field::MulRoutedWeight:
      s.mulRoutedWeight = v != 0;
      break;
    case Field::AddInputs:
      s.addInputs = v != 0;
      break;
    case Field::NumSlices:
      s.numSlices = v;
      break;
    case Field::Npid:
      s.npid = v;
      break;
    case Field::MinBlocksPerSm:
      s.minBlocksPerSm = v;
      break;
    case Field::OutAligned:
      s.alignedOutput = v != 0;
      break;
    case Field::FuseSlices:
      s.fuseSlices = v != 0;
      break;
    case Field::Wgmma:
      s.wgmma = v != 0;
      break;
    case Field::FewRows:
      s.fewRows = v != 0;
      break;
    case Field::FewRowsTile:
      s.fewRowsTile = v;
      break;
    case Field::TmaWeights:
      s.tmaWeights = v != 0;
      break;
    case Field::ProducerWarp:
      s.producerWarp = v != 0;
      break;
    case Field::Persistent:
      s.persistent = v != 0;
      break;
    case Field::WgmmaExpand:
      s.wgmmaExpand = v != 0;
      break;
    case Field::BulkOutput:
      s.bulkOutput = v != 0;
      break;
    case Field::BulkShrink:
      s.bulkShrink = v != 0;
      break;
    case Field::EarlyExpand:
      s.earlyExpand = v != 0;
      break;
    case Field::ReduceScatter:
      s.reduceScatter = v != 0;
      break;
    }
  }

  const std::string &file;
};

void mergeInto(SpecSet &dst, SpecSet &&src,
               std::unordered_set<std::string> &seen) {
  for (KernelSpec &s : src.specs)
    if (seen.insert(s.cacheKey()).second)
      dst.specs.push_back(std::move(s));
  for (RejectedSpec &r : src.rejected)
    if (seen.insert(r.spec.cacheKey()).second)
      dst.rejected.push_back(std::move(r));
}

constexpr std::string_view kTopLevelAllowed = "kernels, defaults";
constexpr std::string_view kFileShape =
    "a mapping with a `kernels:` list (and optional `defaults:`), or a single "
    "kernel entry";

/// Documents counted before `YAML::Load` (which reads only the first).
constexpr int kMaxDocuments = 1000;

struct DocumentCount {
  /// Up to kMaxDocuments + 1.
  int documents = 0;
  /// Where the second document's content starts (its root node).
  YAML::Mark secondAt = YAML::Mark::null_mark();
  /// A document started where the previous one did: yaml-cpp 0.7 would
  /// report empty documents there forever.
  bool stuck = false;
  YAML::Mark stuckAt = YAML::Mark::null_mark();
};

/// Receives the parser's events and keeps only what DocumentCount needs.
class DocumentCounter : public YAML::EventHandler {
public:
  explicit DocumentCounter(DocumentCount &count) : count(count) {}

  void OnDocumentStart(const YAML::Mark &mark) override {
    if (count.documents > 0 && mark.pos == lastStart.pos) {
      count.stuck = true;
      count.stuckAt = mark;
    }
    lastStart = mark;
    ++count.documents;
    rootSeen = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark &mark, YAML::anchor_t) override { node(mark); }
  void OnAlias(const YAML::Mark &mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark &mark, const std::string &, YAML::anchor_t,
                const std::string &) override {
    node(mark);
  }
  void OnSequenceStart(const YAML::Mark &mark, const std::string &,
                       YAML::anchor_t, YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark &mark, const std::string &, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}

private:
  void node(const YAML::Mark &mark) {
    if (!rootSeen && count.documents == 2)
      count.secondAt = mark;
    rootSeen = true;
  }

  DocumentCount &count;
  YAML::Mark lastStart = YAML::Mark::null_mark();
  bool rootSeen = false;
};

/// Counts the documents of `text`, stopping after kMaxDocuments + 1 or at
/// the first document that does not advance. Throws YAML::Exception for
/// malformed YAML in any document (as YAML::LoadAll does).
DocumentCount countDocuments(const std::string &text) {
  DocumentCount count;
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter(count);
  while (!count.stuck && count.documents <= kMaxDocuments &&
         parser.HandleNextDocument(counter)) {
  }
  return count;
}

} // namespace
Expected<SpecSet> parseSpecText(const std::string &text,
                                const std::string &fileName) {
  // Not YAML::LoadAll: in yaml-cpp 0.7 it never returns on some malformed
  // input ("\n,\n" reports empty documents forever, allocating until the
  // process dies; test/fuzz/RESULTS.md, F2). The documents are counted
  // first by a parser that stops when one makes no progress, then the
  // first one is loaded.
  DocumentCount count;
  YAML::Node root;
  try {
    count = countDocuments(text);
    if (!count.stuck)
      root = YAML::Load(text);
  } catch (const YAML::Exception &e) {
    return makeError(
        fmt::format("{}invalid YAML: {}", at(fileName, e.mark), e.msg));
  }
  if (count.stuck) {
    const size_t pos = static_cast<size_t>(count.stuckAt.pos);
    const unsigned char c = pos < text.size() ? text[pos] : 0;
    return makeError(fmt::format(
        "{}invalid YAML: unexpected {} (the YAML parser cannot continue)",
        at(fileName, count.stuckAt),
        pos >= text.size()      ? std::string("end of input")
        : c >= 0x20 && c < 0x7f ? fmt::format("'{}'", char(c))
                                : fmt::format("byte 0x{:02x}", c)));
  }
  if (count.documents == 0 || root.IsNull())
    return makeError(fmt::format("{}:1:1: kernels: the file has no kernel "
                                 "entries; allowed: {}",
                                 fileName, kFileShape));
  if (count.documents > 1)
    return makeError(
        fmt::format("{}invalid YAML: expected one document, found {}{}",
                    at(fileName, count.secondAt),
                    count.documents > kMaxDocuments ? "more than " : "",
                    std::min(count.documents, kMaxDocuments)));

  if (!root.IsMap())
    return locatedError(fileName, root.Mark(), "kernels",
                        fmt::format("the top level must be a mapping, got {}",
                                    nodeKindName(root)),
                        kFileShape);

  SpecSet result;
  EntryParser parser(fileName);
  try {
    if (!root["kernels"]) {
      if (root["defaults"])
        return locatedError(fileName, root.Mark(), "kernels",
                            "missing required field (`defaults:` applies to "
                            "the entries of a `kernels:` list)",
                            "a list of kernel entries");
      Expected<PreparedEntry> entry = parser.prepareEntry(root, nullptr);
      if (!entry)
        return entry.error();
      std::unordered_set<std::string> seenKeys;
      if (Status s = parser.expandEntry(*entry, result, seenKeys); !s)
        return s.error();
      return result;
    }

    // Held in optionals and bound with emplace(): assigning to a YAML::Node
    // that already refers to a node overwrites that node's content.
    std::optional<YAML::Node> kernels, defaults;
    YAML::Mark kernelsKeyMark;
    std::unordered_set<std::string> seen;
    for (const auto &kv : root) {
      std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "<key>";
      if (name != "kernels" && name != "defaults")
        return locatedError(fileName, kv.first.Mark(), name,
                            "unknown top-level field", kTopLevelAllowed);
      if (!seen.insert(name).second)
        return locatedError(fileName, kv.first.Mark(), name, "duplicate field",
                            kTopLevelAllowed);
      if (name == "kernels") {
        kernels.emplace(kv.second);
        kernelsKeyMark = kv.first.Mark();
        continue;
      }
      defaults.emplace(kv.second);
      if (!defaults->IsMap())
        return locatedError(
            fileName, defaults->IsNull() ? kv.first.Mark() : defaults->Mark(),
            "defaults",
            fmt::format("expected a mapping, got {}", nodeKindName(*defaults)),
            allFieldNames());
    }
    if (!kernels->IsSequence() || kernels->size() == 0)
      return locatedError(
          fileName, kernels->IsNull() ? kernelsKeyMark : kernels->Mark(),
          "kernels",
          kernels->IsSequence()
              ? std::string("empty list")
              : fmt::format("expected a list, got {}", nodeKindName(*kernels)),
          "a non-empty list of kernel entries");
    // Validate `defaults:` on its own first so that an error in it is
    // reported once, at its own location, even before any entry uses it.
    if (defaults) {
      FieldSources ignored;
      if (Status s = parser.collect(*defaults, true, ignored); !s)
        return s.error();
    }
    const YAML::Node *defaultsNode = defaults ? &*defaults : nullptr;
    // Every entry is parsed before any is expanded, so that the file's
    // total is known first (entries can repeat through YAML aliases).
    std::vector<PreparedEntry> entries;
    uint64_t points = 0;
    for (const YAML::Node &entry : *kernels) {
      Expected<PreparedEntry> prepared =
          parser.prepareEntry(entry, defaultsNode);
      if (!prepared)
        return prepared.error();
      points += prepared->points;
      if (points > kMaxFilePoints)
        return locatedError(
            fileName, entry.Mark(), "kernels",
            fmt::format("the entries up to this one sweep {} points", points),
            fmt::format("at most {} points per file", kMaxFilePoints));
      entries.push_back(prepared.take());
    }
    std::unordered_set<std::string> seenKeys;
    for (const PreparedEntry &entry : entries)
      if (Status s = parser.expandEntry(entry, result, seenKeys); !s)
        return s.error();
  } catch (const YAML::Exception &e) {
    // Node accessors only throw on programming errors here, but a library
    // boundary must not leak exceptions.
    return makeError(
        fmt::format("{}invalid YAML: {}", at(fileName, e.mark), e.msg));
  }
  return result;
}

Expected<SpecSet> parseSpecFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return makeError(fmt::format("{}: cannot open file", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return makeError(fmt::format("{}: read error", path));
  return parseSpecText(text.str(), path);
}

Expected<SpecSet> parseSpecPaths(const std::vector<std::string> &paths) {
  std::vector<std::string> files;
  for (const std::string &p : paths) {
    std::error_code ec;
    fs::file_status st = fs::status(p, ec);
    if (!fs::exists(st))
      return makeError(fmt::format("{}: no such file or directory", p));
    if (!fs::is_directory(st)) {
      // A file named explicitly is read whatever its extension.
      files.push_back(p);
      continue;
    }
    std::vector<std::string> found;
    fs::recursive_directory_iterator it(p, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      if (!it->is_regular_file(ec))
        continue;
      std::string ext = it->path().extension().string();
      if (ext == ".yaml" || ext == ".yml")
        found.push_back(it->path().string());
    }
    if (ec)
      return makeError(
          fmt::format("{}: cannot list directory: {}", p, ec.message()));
    // Directory order is file-system dependent; sorting makes the merged
    // order (and which duplicate's origin is kept) reproducible.
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }

  SpecSet merged;
  std::unordered_set<std::string> seenKeys;
  std::unordered_set<std::string> seenFiles;
  for (const std::string &f : files) {
    std::error_code ec;
    fs::path canonical = fs::weakly_canonical(f, ec);
    if (!seenFiles.insert(ec ? f : canonical.string()).second)
      continue;
    Expected<SpecSet> one = parseSpecFile(f);
    if (!one)
      return one.error();
    mergeInto(merged, one.take(), seenKeys);
  }
  return merged;
}

} // namespace moelora
