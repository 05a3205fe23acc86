//===- Generator.cpp - KernelSpec -> MLIR -> LLVM IR -> PTX ---------------===//

#include "moelora/Codegen/Generator.h"
#include "moelora/Codegen/KernelBuilder.h"
#include "moelora/Codegen/MoeBlock.h"
#include "moelora/Spec/SpecValidation.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/Analysis/LoopInfo.h"
#include "llvm/IR/Dominators.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Triple.h"
#include "llvm/Transforms/Utils/LoopUtils.h"

#include "llvm/MC/MCSubtargetInfo.h"
#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <mutex>

using namespace mlir;

extern "C" {
void LLVMInitializeNVPTXTargetInfo();
void LLVMInitializeNVPTXTarget();
void LLVMInitializeNVPTXTargetMC();
void LLVMInitializeNVPTXAsmPrinter();
}

namespace moelora {

namespace {

using Clock = std::chrono::steady_clock;
double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

/// Per-thread MLIR context with every dialect and interface the route needs
/// (registering them per generation costs more than the generation itself).
MLIRContext &threadContext() {
  thread_local std::unique_ptr<MLIRContext> ctx = [] {
    DialectRegistry registry;
    registry
        .insert<arith::ArithDialect, scf::SCFDialect, gpu::GPUDialect,
                LLVM::LLVMDialect, NVVM::NVVMDialect, cf::ControlFlowDialect>();
    // Without these, convert-gpu-to-nvvm leaves arith/cf ops half converted.
    arith::registerConvertArithToLLVMInterface(registry);
    cf::registerConvertControlFlowToLLVMInterface(registry);
    registerConvertNVVMToLLVMInterface(registry);
    registerLLVMDialectTranslation(registry);
    registerNVVMDialectTranslation(registry);
    registerGPUDialectTranslation(registry);
    auto c = std::make_unique<MLIRContext>(registry,
                                           MLIRContext::Threading::DISABLED);
    c->loadAllAvailableDialects();
    return c;
  }();
  return *ctx;
}

void initNvptxOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
  });
}

std::string printOp(Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  op->print(os);
  return text;
}

/// Builds `gpu.module { llvm.mlir.global @moelora_smem; gpu.func @entry }`.
gpu::GPUModuleOp buildModule(ModuleOp top, const KernelSpec &spec) {
  MLIRContext *ctx = top.getContext();
  OpBuilder b(ctx);
  Location loc = FileLineColLoc::get(
      ctx, spec.origin.empty() ? "spec" : spec.origin, 0, 0);
  b.setInsertionPointToEnd(top.getBody());
  auto gpuModule = gpu::GPUModuleOp::create(b, loc, "moelora");
  b.setInsertionPointToStart(gpuModule.getBody());
  // Dynamic shared memory: `.extern .shared .align 16 .b8 moelora_smem[]`;
  // wgmma's swizzled tiles need their atoms 1024-byte aligned.
  LLVM::GlobalOp::create(b, loc, LLVM::LLVMArrayType::get(b.getI8Type(), 0),
                         /*isConstant=*/false, LLVM::Linkage::External,
                         "moelora_smem", Attribute(),
                         /*alignment=*/
                         spec.wgmma || spec.wgmmaExpand ? 1024 : 16,
                         /*addrSpace=*/3);
  SmallVector<Type> argTypes;
  for (const KernelParam &p : kernelParams(spec)) {
    switch (p.type) {
    case ParamType::TensorMap:
      // The map's address (generic): byval + grid_constant are set on the
      // lowered function (markTensorMapParams).
      argTypes.push_back(LLVM::LLVMPointerType::get(ctx));
      break;
    case ParamType::Ptr:
      argTypes.push_back(LLVM::LLVMPointerType::get(ctx, 1));
      break;
    case ParamType::I32:
      argTypes.push_back(b.getI32Type());
      break;
    case ParamType::I64:
      argTypes.push_back(b.getI64Type());
      break;
    }
  }
  auto func = gpu::GPUFuncOp::create(b, loc, spec.entryName(),
                                     FunctionType::get(ctx, argTypes, {}));
  for (int s = 0; s < weightTensorMapParams(spec); ++s)
    func.setArgAttr(kNumGemmParams + s, LLVM::LLVMDialect::getAlignAttrName(),
                    b.getI64IntegerAttr(kTensorMapAlign));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  func.setKnownBlockSizeAttr(
      b.getDenseI32ArrayAttr({spec.launchThreads(), 1, 1}));
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  KernelArgs args{entry.getArguments()};
  // The tensor maps live in the parameters, which no earlier grid writes:
  // fetched while the predecessor still runs (a builder of its own, so that
  // other kernels' code stays as it was).
  if (spec.tmaWeights) {
    TileBuilder early(b, loc, spec);
    prefetchWeightTensorMaps(early, args);
  }
  // Programmatic dependent launch: wait for the grids this one depends on
  // before touching global memory, then let this grid's own dependents
  // start their prologue at once (their wait still orders them after all of
  // this grid). Nothing before this point reads or writes global memory.
  if (kernelWaitsOnGridDependency(spec.sm)) {
    NVVM::GriddepcontrolOp::create(b, loc, NVVM::GridDepActionKind::wait);
    NVVM::GriddepcontrolOp::create(b, loc,
                                   NVVM::GridDepActionKind::launch_dependents);
  }
  TileBuilder tb(b, loc, spec);
  switch (spec.family) {
  case KernelFamily::OneShot:
    buildOneShotKernel(tb, args);
    break;
  case KernelFamily::SmallBatch:
    buildSmallBatchKernel(tb, args);
    break;
  case KernelFamily::Shrink:
    buildShrinkKernel(tb, args);
    break;
  case KernelFamily::Expand:
    buildExpandKernel(tb, args);
    break;
  case KernelFamily::AlignBlockSize:
    buildAlignBlockSizeKernel(tb, args);
    break;
  }
  gpu::ReturnOp::create(b, loc);
  return gpuModule;
}

/// Tensor-map parameters are passed by value and read in place: `.param
/// .align 64 .b8 [128]`, addressed by the bulk tensor copies. gpu.func's
/// lowering keeps only their alignment, and the NVVM dialect accepts
/// grid_constant only on a kernel's llvm.func, so both are set here.
void markTensorMapParams(gpu::GPUModuleOp gpuModule, const KernelSpec &spec) {
  if (weightTensorMapParams(spec) == 0)
    return;
  auto func = gpuModule.lookupSymbol<LLVM::LLVMFuncOp>(spec.entryName());
  MLIRContext *ctx = gpuModule.getContext();
  Type bytes =
      LLVM::LLVMArrayType::get(IntegerType::get(ctx, 8), kTensorMapBytes);
  for (int s = 0; s < weightTensorMapParams(spec); ++s) {
    func.setArgAttr(kNumGemmParams + s, LLVM::LLVMDialect::getByValAttrName(),
                    TypeAttr::get(bytes));
    func.setArgAttr(kNumGemmParams + s, "nvvm.grid_constant",
                    UnitAttr::get(ctx));
  }
}

Status lowerToLLVMDialect(ModuleOp top) {
  PassManager pm(top.getContext());
  OpPassManager &gpm = pm.nest<gpu::GPUModuleOp>();
  gpm.addPass(createSCFToControlFlowPass());
  ConvertGpuOpsToNVVMOpsOptions nvvmOptions;
  nvvmOptions.indexBitwidth = 64;
  gpm.addPass(createConvertGpuOpsToNVVMOps(nvvmOptions));
  // NVVM ops without an LLVM intrinsic (wgmma.mma_async) become inline PTX
  // here; kernels without such ops are unchanged.
  gpm.addPass(createConvertNVVMToLLVMPass());
  gpm.addPass(createCanonicalizerPass());
  gpm.addPass(createCSEPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  std::string diag;
  {
    ScopedDiagnosticHandler handler(top.getContext(), [&](Diagnostic &d) {
      diag += d.str() + "\n";
      return success();
    });
    if (failed(pm.run(top)))
      return makeError("MLIR lowering failed: " + diag);
  }
  return Status::ok();
}

int parsePtxVersion(const std::string &ptx) {
  auto pos = ptx.find(".version ");
  if (pos == std::string::npos)
    return 0;
  int major = 0, minor = 0;
  if (std::sscanf(ptx.c_str() + pos + 9, "%d.%d", &major, &minor) != 2)
    return 0;
  return major * 10 + minor;
}

} // namespace

/// The lowest PTX ISA version that can describe code for a PTX target
/// (PTX ISA manual, target notes); 0 when not known here.
static int minimumPtxVersion(std::string_view target) {
  if (target == "sm_80")
    return 70;
  if (target == "sm_86")
    return 71;
  if (target == "sm_89" || target == "sm_90")
    return 78;
  if (target == "sm_90a") // wgmma, setmaxnreg
    return 80;
  return 0;
}

/// The lowest PTX ISA version a spec's kernel needs: its target's, or 8.0
/// for a thread-block cluster (SPLIT_K > 1: barrier.cluster.arrive.relaxed).
static int minimumPtxVersion(const KernelSpec &spec) {
  // Clusters, the prefetch.global.L1 of a persistent sm_90 one-shot (LLVM
  // selects it for PTX 8.0 and sm_90 only) and bulk copies need PTX 8.0.
  return std::max(minimumPtxVersion(spec.ptxTarget()),
                  spec.splitK > 1 || prefetchesNextRowIds(spec) ||
                          spec.bulksOutput() || spec.bulkShrink
                      ? 80
                      : 0);
}

/// `ptxVersion` is at least `least`, which `what` needs.
static Status requirePtxVersion(int ptxVersion, int least,
                                std::string_view what) {
  if (ptxVersion >= least)
    return Status::ok();
  return makeError(fmt::format("{}: {} needs PTX ISA {}.{} or newer (>= {})",
                               ptxVersion, what, least / 10, least % 10,
                               least));
}

Status checkPtxVersion(int ptxVersion, std::string_view target) {
  initNvptxOnce();
  // The versions the backend knows, from its feature table, so the check
  // follows the LLVM in use.
  static const std::vector<int> known = [] {
    std::vector<int> versions;
    llvm::Triple triple("nvptx64-nvidia-cuda");
    std::string err;
    const llvm::Target *target =
        llvm::TargetRegistry::lookupTarget(triple, err);
    if (!target)
      return versions;
    std::unique_ptr<llvm::MCSubtargetInfo> sti(
        target->createMCSubtargetInfo(triple, "sm_80", ""));
    for (const llvm::SubtargetFeatureKV &f :
         sti ? sti->getAllProcessorFeatures()
             : llvm::ArrayRef<llvm::SubtargetFeatureKV>()) {
      llvm::StringRef key(f.Key);
      int v = 0;
      if (key.consume_front("ptx") && !key.getAsInteger(10, v))
        versions.push_back(v);
    }
    std::sort(versions.begin(), versions.end());
    return versions;
  }();
  if (std::find(known.begin(), known.end(), ptxVersion) == known.end())
    return makeError(
        fmt::format("{}: not a PTX ISA version LLVM's NVPTX backend emits "
                    "(major*10+minor); allowed: {}",
                    ptxVersion, fmt::join(known, ", ")));
  return requirePtxVersion(ptxVersion, minimumPtxVersion(target), target);
}

int sharedMemoryBytes(const KernelSpec &spec) {
  switch (spec.family) {
  case KernelFamily::OneShot:
    return oneShotSharedBytes(spec);
  case KernelFamily::SmallBatch:
    return smallBatchSharedBytes(spec);
  case KernelFamily::Shrink:
    return shrinkSharedBytes(spec);
  case KernelFamily::Expand:
    return expandSharedBytes(spec);
  case KernelFamily::AlignBlockSize:
    return alignBlockSizeSharedBytes(spec);
  }
  return 0;
}

Expected<GeneratedKernel> generateKernel(const KernelSpec &spec,
                                         const GenerateOptions &options) {
  GeneratedKernel out;
  out.entryName = spec.entryName();
  out.threads = spec.launchThreads();
  out.sharedBytes = sharedMemoryBytes(spec);
  auto fail = [&](const std::string &what) {
    return makeError(fmt::format("{}: {}", spec.cacheKey(), what));
  };
  // Builders assume a valid spec (power-of-two tiles, rank limits, a
  // target with cp.async and mma.sync): reject the rest here as an error,
  // not as a crash inside LLVM.
  if (std::string why = validateSpec(spec); !why.empty())
    return fail(why);
  // A tile whose shared memory exceeds what a block may opt into on the
  // target would only fail at launch (cuFuncSetAttribute); say so here.
  if (int limit = maxDynamicSharedBytes(spec.sm); out.sharedBytes > limit)
    return fail(fmt::format(
        "needs {} bytes of shared memory; sm_{} allows a block at most {} "
        "(smaller BLOCK_SIZE_N/K or num_stages)",
        out.sharedBytes, spec.sm, limit));
  if (options.ptxVersion)
    if (Status s = checkPtxVersion(options.ptxVersion, spec.ptxTarget()); !s)
      return fail("PTX version " + s.error().message);
  const int leastPtx = minimumPtxVersion(spec);
  if (options.ptxVersion)
    if (Status s = requirePtxVersion(
            options.ptxVersion, leastPtx,
            spec.splitK > 1
                ? fmt::format("a thread-block cluster (SPLIT_K = {})",
                              spec.splitK)
            : spec.bulksOutput() || spec.bulkShrink
                ? std::string("bulk copies (bulk_output, bulk_shrink)")
                : std::string("a persistent kernel's L1 prefetch"));
        !s)
      return fail("PTX version " + s.error().message);

  // 1. Build the MLIR module.
  auto t0 = Clock::now();
  MLIRContext &ctx = threadContext();
  OwningOpRef<ModuleOp> top = ModuleOp::create(UnknownLoc::get(&ctx));
  gpu::GPUModuleOp gpuModule = buildModule(*top, spec);
  {
    std::string diag;
    ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
      diag += d.str() + "\n";
      return success();
    });
    if (failed(verify(*top)))
      return fail("generated MLIR does not verify: " + diag);
  }
  if (options.dumpIR)
    out.dumps.emplace_back("mlir-built", printOp(*top));
  out.buildMs = msSince(t0);

  // 2. MLIR passes down to the LLVM + NVVM dialects.
  t0 = Clock::now();
  if (Status s = lowerToLLVMDialect(*top); !s)
    return fail(s.error().message);
  markTensorMapParams(gpuModule, spec);
  if (options.dumpIR)
    out.dumps.emplace_back("mlir-llvm", printOp(*top));
  llvm::LLVMContext llvmCtx;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(gpuModule, llvmCtx, "moelora");
  if (!llvmModule)
    return fail("translation to LLVM IR failed");
  // The spec's occupancy hint (.minnctapersm): the register budget ptxas may
  // use. Without it ptxas chooses, which suits the streaming GEMMs best.
  if (spec.minBlocksPerSm > 0)
    if (llvm::Function *f = llvmModule->getFunction(out.entryName))
      f->addFnAttr("nvvm.minctasm", std::to_string(spec.minBlocksPerSm));
  // SPLIT_K blocks form a cluster (small-batch, one-shot, shrink); a
  // compile-time cluster shape (.reqnctapercluster) lets a plain
  // cuLaunchKernel launch it.
  if (spec.splitK > 1)
    if (llvm::Function *f = llvmModule->getFunction(out.entryName))
      f->addFnAttr("nvvm.cluster_dim", fmt::format("{},1,1", spec.splitK));
  // A persistent kernel's loop over its programs (the function's only
  // outermost loop) keeps what each program computes inside it: hoisted,
  // every thread-invariant address of the program stayed live across it
  // (a rank-16 one-shot went from 52 to 116 registers).
  if (spec.persistent)
    if (llvm::Function *f = llvmModule->getFunction(out.entryName)) {
      llvm::DominatorTree dt(*f);
      llvm::LoopInfo loops(dt);
      for (llvm::Loop *loop : loops)
        llvm::addStringMetadataToLoop(loop, "llvm.licm.disable", 1);
    }
  out.lowerMs = msSince(t0);

  // 3. LLVM O3 and the NVPTX backend.
  t0 = Clock::now();
  initNvptxOnce();
  llvm::Triple triple("nvptx64-nvidia-cuda");
  std::string err;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, err);
  if (!target)
    return fail("NVPTX target unavailable: " + err);
  std::string cpu = spec.ptxTarget();
  // Without a version asked for, LLVM emits the target's lowest; a spec
  // that needs more (clusters) asks for its own lowest.
  const int ptxVersion = options.ptxVersion ? options.ptxVersion
                         : leastPtx > minimumPtxVersion(spec.ptxTarget())
                             ? leastPtx
                             : 0;
  std::string features = ptxVersion ? fmt::format("+ptx{}", ptxVersion) : "";
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      triple, cpu, features, llvm::TargetOptions(), std::nullopt, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  llvmModule->setTargetTriple(triple);
  llvmModule->setDataLayout(tm->createDataLayout());
  if (options.dumpIR) {
    std::string text;
    llvm::raw_string_ostream os(text);
    llvmModule->print(os, nullptr);
    out.dumps.emplace_back("llvm-ir", text);
  }
  {
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    llvm::PassBuilder pb(tm.get());
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    llvm::ModulePassManager mpm =
        pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
    mpm.run(*llvmModule, mam);
  }
  if (options.dumpIR) {
    std::string text;
    llvm::raw_string_ostream os(text);
    llvmModule->print(os, nullptr);
    out.dumps.emplace_back("llvm-ir-optimized", text);
  }
  llvm::SmallString<0> ptx;
  {
    llvm::raw_svector_ostream os(ptx);
    llvm::legacy::PassManager pm;
    if (tm->addPassesToEmitFile(pm, os, nullptr,
                                llvm::CodeGenFileType::AssemblyFile))
      return fail("NVPTX backend cannot emit assembly");
    pm.run(*llvmModule);
  }
  out.ptx = std::string(ptx.str());
  out.ptxVersion = parsePtxVersion(out.ptx);
  out.emitMs = msSince(t0);
  return out;
}

} // namespace moelora
