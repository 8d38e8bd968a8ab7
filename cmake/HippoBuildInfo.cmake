# Embeds the git commit and hippo's version into the binary (core/build_info.h), so every stored run can name
# the code that produced it. The commit is read at configure time and refreshed on every build.
find_package(Git QUIET)
set(HIPPO_BUILD_INFO_DIR ${CMAKE_BINARY_DIR}/generated)
file(MAKE_DIRECTORY ${HIPPO_BUILD_INFO_DIR})
add_custom_target(hippo_build_info
  COMMAND ${CMAKE_COMMAND} -DSRC=${CMAKE_SOURCE_DIR} -DOUT=${HIPPO_BUILD_INFO_DIR}/build_info.cc
          -DVERSION=${PROJECT_VERSION} -DGIT=${GIT_EXECUTABLE} -P ${CMAKE_SOURCE_DIR}/cmake/WriteBuildInfo.cmake
  BYPRODUCTS ${HIPPO_BUILD_INFO_DIR}/build_info.cc
  COMMENT "hippo: embedding git commit")
