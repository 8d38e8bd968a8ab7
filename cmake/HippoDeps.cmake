# Finds hippo's dependencies (Debian 12 packages, or PyTorch's LibTorch plus unpacked .debs on a CUDA host)
# and defines hippo_torch_pch, the precompiled LibTorch header that every LibTorch-using target reuses.
find_package(Torch REQUIRED)
find_package(absl REQUIRED)
find_package(Boost REQUIRED COMPONENTS program_options)
find_package(SQLite3 REQUIRED)
find_package(SQLiteCpp REQUIRED)
find_package(Eigen3 REQUIRED NO_MODULE)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(Threads REQUIRED)

# SentencePiece (Debian's libsentencepiece-dev) is optional: without it the lm task has the byte tokenizer only.
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(sentencepiece QUIET IMPORTED_TARGET sentencepiece)
endif()
if(sentencepiece_FOUND)
  set(HIPPO_WITH_SENTENCEPIECE ON)
else()
  set(HIPPO_WITH_SENTENCEPIECE OFF)
endif()

# TorchConfig puts its flags into TORCH_CXX_FLAGS (the ABI define) rather than onto the target on some versions.
separate_arguments(HIPPO_TORCH_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")

include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER AND TARGET torch_cuda)
  enable_language(CUDA)
  set(HIPPO_WITH_CUDA ON)
  add_compile_definitions(HIPPO_WITH_CUDA)
else()
  set(HIPPO_WITH_CUDA OFF)
endif()
message(STATUS "hippo: LibTorch ${Torch_VERSION}, CUDA kernels ${HIPPO_WITH_CUDA}, SentencePiece ${HIPPO_WITH_SENTENCEPIECE}")

# One precompiled header for all LibTorch translation units: parsing torch/torch.h costs ~15 s per file.
add_library(hippo_torch_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/torch_pch.cc)
target_link_libraries(hippo_torch_pch PUBLIC ${TORCH_LIBRARIES} nlohmann_json::nlohmann_json absl::status
                      absl::statusor absl::strings)
target_compile_options(hippo_torch_pch PUBLIC ${HIPPO_TORCH_FLAGS})
target_precompile_headers(hippo_torch_pch PRIVATE <torch/torch.h> <nlohmann/json.hpp> <absl/status/statusor.h>
                          <absl/strings/str_cat.h> <string> <vector>)

# Adds the shared precompiled header to a LibTorch-using target.
function(hippo_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM hippo_torch_pch)
endfunction()
