# How moelora's shared libraries are linked for engines.
#
# moelora_export_c_abi_only(target): exports the C ABI alone (a version
# script: every other symbol, moelora's C++, LLVM's, MLIR's and libstdc++'s,
# stays local) and drops unreferenced sections, so that the library loads
# beside another program's LLVM (Triton) or torch without meeting them.
# libstdc++ and libgcc_s stay shared: a static libstdc++ and libgcc would
# need glibc 2.36 (arc4random, _dl_find_object) and shut out Ubuntu 22.04,
# while the system's libstdc++ is the one torch itself uses.
#
# moelora_link_generator_statically(target): links the generator
# (moelora_jit, moelora_codegen) and the LLVM/MLIR it needs from Debian's
# static archives into `target`, so that the JIT runs on a machine without
# LLVM. Only what the generator reaches is kept (--gc-sections; the
# generator registers only the dialects, translations and NVPTX target it
# uses), so every archive may be offered to the linker.

function(moelora_export_c_abi_only target)
  set(map ${PROJECT_SOURCE_DIR}/runtime/moelora.map)
  target_link_options(${target} PRIVATE
    -Wl,--version-script=${map} -Wl,--gc-sections
    -Wl,--as-needed -Wl,-O1)
  if(MOELORA_LLD)
    target_link_options(${target} PRIVATE -Wl,--icf=all)
  endif()
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${map})
endfunction()

function(moelora_link_generator_statically target)
  if(NOT MOELORA_LLD)
    message(FATAL_ERROR "MOELORA_SELF_CONTAINED needs lld (Debian: lld-22)")
  endif()
  file(GLOB mlir_archives ${LLVM_LIBRARY_DIR}/libMLIR*.a)
  file(GLOB llvm_archives ${LLVM_LIBRARY_DIR}/libLLVM*.a)
  if(NOT mlir_archives OR NOT llvm_archives)
    message(FATAL_ERROR "MOELORA_SELF_CONTAINED: no static LLVM/MLIR archives "
                        "under ${LLVM_LIBRARY_DIR} (llvm-22-dev, libmlir-22-dev)")
  endif()
  list(LENGTH mlir_archives n_mlir)
  list(LENGTH llvm_archives n_llvm)
  message(STATUS "moelora: ${target} links the generator statically "
                 "(${n_mlir} MLIR + ${n_llvm} LLVM archives)")
  find_library(MOELORA_LIBZ z REQUIRED)
  find_library(MOELORA_ZSTD zstd REQUIRED)
  # The archives are given as files, not as targets: the targets carry
  # Debian's shared libMLIR/libLLVM in their link interfaces.
  target_link_libraries(${target} PRIVATE
    -Wl,--whole-archive $<TARGET_FILE:moelora_jit> -Wl,--no-whole-archive
    $<TARGET_FILE:moelora_codegen> $<TARGET_FILE:moelora_runtime>
    $<TARGET_FILE:moelora_spec>
    -Wl,--start-group ${mlir_archives} ${llvm_archives} -Wl,--end-group
    ${MOELORA_ZSTD} ${MOELORA_LIBZ} ${CMAKE_DL_LIBS} Threads::Threads)
  target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/runtime/GlibcCompat.cpp)
  # JitHook.cpp.o registers the generator at load time; --whole-archive
  # keeps it. Strip here so the built file is the shipped one.
  target_link_options(${target} PRIVATE -Wl,--strip-all)
  add_dependencies(${target} moelora_jit moelora_codegen moelora_runtime
                   moelora_spec)
endfunction()
