// A narrow C bridge to SentencePiece, built as its own loadable module (libhippo_spm.so) and opened with
// dlmopen into a link namespace of its own.
// Why: Debian's libsentencepiece carries a private copy of protobuf-lite whose symbols interpose with the
// libprotobuf that LibTorch loads (the process crashes in static initialisation when both are linked in), and
// RTLD_DEEPBIND breaks libstdc++'s std::cerr under copy relocations. In its own namespace SentencePiece has its
// own C and C++ runtimes, so only plain C data crosses: no allocation is ever freed on the other side.
// (SentencePiece's header also declares `absl::string_view`, which clashes with Abseil's.)
#pragma once

#include <stddef.h>

extern "C" {
// Each returns < 0 (or NULL) on failure with a message in err[0..errlen).
int hippo_spm_train(const char* flags, char* err, size_t errlen);
void* hippo_spm_load(const char* path, char* err, size_t errlen);
void hippo_spm_free(void* model);
int hippo_spm_pieces(void* model);
// Writes at most cap ids; returns the number of ids of the encoding (may exceed cap: call again with more).
long hippo_spm_encode(void* model, const char* text, size_t len, int* ids, size_t cap, char* err, size_t errlen);
// Writes at most cap bytes; returns the length of the decoded text (may exceed cap: call again with more).
long hippo_spm_decode(void* model, const int* ids, size_t n, char* out, size_t cap, char* err, size_t errlen);
}
