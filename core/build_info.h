// What built this binary: the git commit (embedded at build time) and hippo's version. Stored with every run.
#pragma once

namespace hippo {
// Short git commit of the source tree at build time, "-dirty" appended when it had uncommitted changes;
// "unknown" outside a git checkout.
const char* build_commit();
// hippo's version, from the top-level CMakeLists.txt (e.g. "0.1.0").
const char* build_version();
}  // namespace hippo
