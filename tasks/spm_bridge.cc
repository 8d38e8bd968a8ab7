// The SentencePiece module (see spm_bridge.h for why it is separate and loaded with dlmopen).
#include "tasks/spm_bridge.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <vector>

#define HIPPO_EXPORT __attribute__((visibility("default")))

namespace {
void set_error(const std::string& msg, char* err, size_t errlen) {
  if (errlen == 0) return;
  std::strncpy(err, msg.c_str(), errlen - 1);
  err[errlen - 1] = '\0';
}
}  // namespace

extern "C" {
HIPPO_EXPORT int hippo_spm_train(const char* flags, char* err, size_t errlen) {
  auto st = sentencepiece::SentencePieceTrainer::Train(flags);
  if (!st.ok()) set_error(st.ToString(), err, errlen);
  return st.ok() ? 0 : -1;
}

HIPPO_EXPORT void* hippo_spm_load(const char* path, char* err, size_t errlen) {
  auto* p = new sentencepiece::SentencePieceProcessor();
  auto st = p->Load(path);
  if (!st.ok()) {
    set_error(st.ToString(), err, errlen);
    delete p;
    return nullptr;
  }
  return p;
}

HIPPO_EXPORT void hippo_spm_free(void* model) { delete static_cast<sentencepiece::SentencePieceProcessor*>(model); }

HIPPO_EXPORT int hippo_spm_pieces(void* model) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(model)->GetPieceSize();
}

HIPPO_EXPORT long hippo_spm_encode(void* model, const char* text, size_t len, int* ids, size_t cap, char* err,
                                   size_t errlen) {
  std::vector<int> v;
  auto st = static_cast<sentencepiece::SentencePieceProcessor*>(model)->Encode(std::string(text, len), &v);
  if (!st.ok()) {
    set_error(st.ToString(), err, errlen);
    return -1;
  }
  for (size_t i = 0; i < v.size() && i < cap; ++i) ids[i] = v[i];
  return static_cast<long>(v.size());
}

HIPPO_EXPORT long hippo_spm_decode(void* model, const int* ids, size_t n, char* out, size_t cap, char* err,
                                   size_t errlen) {
  std::string s;
  auto st = static_cast<sentencepiece::SentencePieceProcessor*>(model)->Decode(std::vector<int>(ids, ids + n), &s);
  if (!st.ok()) {
    set_error(st.ToString(), err, errlen);
    return -1;
  }
  std::memcpy(out, s.data(), std::min(cap, s.size()));
  return static_cast<long>(s.size());
}
}
