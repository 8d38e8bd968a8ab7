// Byte and SentencePiece tokenizers, and the text-file checks of the lm task.
#include "tasks/tokenizer.h"

#include <absl/strings/str_cat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#ifdef HIPPO_WITH_SENTENCEPIECE
#include <dlfcn.h>
#include <unistd.h>

#include "tasks/spm_bridge.h"
#endif

namespace hippo {

namespace {
class ByteTokenizer : public Tokenizer {
 public:
  int64_t vocab_size() const override { return 256; }
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string s(ids.size(), '\0');
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] > 255)
        throw StatusError(absl::InvalidArgumentError(absl::StrCat("byte tokenizer: id ", ids[i], " is not in [0, 256)")));
      s[i] = static_cast<char>(ids[i]);
    }
    return s;
  }
  std::string name() const override { return "bytes"; }
};

#ifdef HIPPO_WITH_SENTENCEPIECE
// The SentencePiece module's entry points, resolved once: the module next to the executable, else where the
// build put it, opened into a link namespace of its own (spm_bridge.h says why).
struct SpmModule {
  decltype(&hippo_spm_train) train = nullptr;
  decltype(&hippo_spm_load) load = nullptr;
  decltype(&hippo_spm_free) free = nullptr;
  decltype(&hippo_spm_pieces) pieces = nullptr;
  decltype(&hippo_spm_encode) encode = nullptr;
  decltype(&hippo_spm_decode) decode = nullptr;
};

const SpmModule* spm_module(std::string* error) {
  static SpmModule m;
  static std::string load_error;
  static bool tried = false, ok = false;
  if (!tried) {
    tried = true;
    std::vector<std::string> candidates;
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
      std::string dir(exe, static_cast<size_t>(n));
      candidates.push_back(dir.substr(0, dir.rfind('/')) + "/libhippo_spm.so");
    }
    candidates.push_back(HIPPO_SPM_MODULE);
    for (const auto& c : candidates) {
      void* h = dlmopen(LM_ID_NEWLM, c.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        load_error += absl::StrCat(load_error.empty() ? "" : "; ", dlerror());
        continue;
      }
      m.train = reinterpret_cast<decltype(m.train)>(dlsym(h, "hippo_spm_train"));
      m.load = reinterpret_cast<decltype(m.load)>(dlsym(h, "hippo_spm_load"));
      m.free = reinterpret_cast<decltype(m.free)>(dlsym(h, "hippo_spm_free"));
      m.pieces = reinterpret_cast<decltype(m.pieces)>(dlsym(h, "hippo_spm_pieces"));
      m.encode = reinterpret_cast<decltype(m.encode)>(dlsym(h, "hippo_spm_encode"));
      m.decode = reinterpret_cast<decltype(m.decode)>(dlsym(h, "hippo_spm_decode"));
      ok = m.train && m.load && m.free && m.pieces && m.encode && m.decode;
      if (ok) break;
      load_error += absl::StrCat(load_error.empty() ? "" : "; ", c, " lacks an entry point");
    }
  }
  if (!ok) *error = "cannot load hippo's SentencePiece module (" + load_error + ")";
  return ok ? &m : nullptr;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const SpmModule* mod, void* model, std::string path)
      : mod_(mod), model_(model), path_(std::move(path)), pieces_(mod->pieces(model)) {}
  ~SentencePieceTokenizer() override { mod_->free(model_); }
  int64_t vocab_size() const override { return pieces_; }
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int> ids(text.size() + 16);
    char err[512];
    long n = mod_->encode(model_, text.data(), text.size(), ids.data(), ids.size(), err, sizeof(err));
    if (n > static_cast<long>(ids.size())) {
      ids.resize(static_cast<size_t>(n));
      n = mod_->encode(model_, text.data(), text.size(), ids.data(), ids.size(), err, sizeof(err));
    }
    if (n < 0) throw StatusError(absl::InternalError(absl::StrCat("sentencepiece encode: ", err)));
    return {ids.begin(), ids.begin() + n};
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<int> v;
    v.reserve(ids.size());
    for (auto id : ids) {
      if (id < 0 || id >= vocab_size())
        throw StatusError(absl::InvalidArgumentError(
            absl::StrCat("sentencepiece tokenizer: id ", id, " is not in [0, ", vocab_size(), ")")));
      v.push_back(static_cast<int>(id));
    }
    std::string out(16 * v.size() + 16, '\0');
    char err[512];
    long n = mod_->decode(model_, v.data(), v.size(), out.data(), out.size(), err, sizeof(err));
    if (n > static_cast<long>(out.size())) {
      out.resize(static_cast<size_t>(n));
      n = mod_->decode(model_, v.data(), v.size(), out.data(), out.size(), err, sizeof(err));
    }
    if (n < 0) throw StatusError(absl::InternalError(absl::StrCat("sentencepiece decode: ", err)));
    out.resize(static_cast<size_t>(n));
    return out;
  }
  std::string name() const override { return "sentencepiece:" + path_; }

 private:
  const SpmModule* mod_;
  void* model_;
  std::string path_;
  int64_t pieces_;
};
#endif

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid.
size_t utf8_len(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  return n;
}
}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

bool sentencepiece_available() {
#ifdef HIPPO_WITH_SENTENCEPIECE
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Tokenizer>> load_sentencepiece(const std::string& model_path) {
#ifdef HIPPO_WITH_SENTENCEPIECE
  if (!std::ifstream(model_path).good())
    return absl::NotFoundError(absl::StrCat("tokenizer model '", model_path, "' cannot be read"));
  std::string error;
  const SpmModule* mod = spm_module(&error);
  if (!mod) return absl::InternalError(error);
  char err[512] = {0};
  void* model = mod->load(model_path.c_str(), err, sizeof(err));
  if (!model) return absl::InvalidArgumentError(absl::StrCat("'", model_path, "' is not a SentencePiece model (", err, ")"));
  return std::unique_ptr<Tokenizer>(std::make_unique<SentencePieceTokenizer>(mod, model, model_path));
#else
  return absl::UnimplementedError(absl::StrCat("tokenizer '", model_path,
                                               "': this hippo was built without SentencePiece (install "
                                               "libsentencepiece-dev and rebuild); the byte tokenizer is available"));
#endif
}

absl::Status train_sentencepiece(const std::string& input, int64_t vocab_size, const std::string& out) {
  if (vocab_size < 64 || vocab_size > (1 << 20))
    return absl::InvalidArgumentError(absl::StrCat("--vocab-size ", vocab_size, " is not in [64, 1048576]"));
  HIPPO_ASSIGN_OR_RETURN(auto text, read_text_file(input));
  (void)text;
#ifdef HIPPO_WITH_SENTENCEPIECE
  const std::string prefix = out + ".tmp-spm";
  // Each line is one sentence for the trainer; long lines are skipped by SentencePiece past 4192 bytes.
  const std::string args = absl::StrCat("--input=", input, " --model_prefix=", prefix, " --vocab_size=", vocab_size,
                                        " --model_type=bpe --byte_fallback=true --character_coverage=1.0",
                                        // lossless: no normalisation, spaces and newlines kept as they are
                                        " --normalization_rule_name=identity --remove_extra_whitespaces=false",
                                        " --split_by_whitespace=true --allow_whitespace_only_pieces=true",
                                        " --minloglevel=2 --num_threads=2");
  std::string error;
  const SpmModule* mod = spm_module(&error);
  if (!mod) return absl::InternalError(error);
  char err[512] = {0};
  if (mod->train(args.c_str(), err, sizeof(err)) != 0)
    return absl::InvalidArgumentError(absl::StrCat("sentencepiece training failed: ", err));
  std::remove((prefix + ".vocab").c_str());
  if (std::rename((prefix + ".model").c_str(), out.c_str()) != 0)
    return absl::InvalidArgumentError(absl::StrCat("cannot write the tokenizer model to '", out, "'"));
  return absl::OkStatus();
#else
  (void)out;
  return absl::UnimplementedError(
      "this hippo was built without SentencePiece (install libsentencepiece-dev and rebuild)");
#endif
}

absl::StatusOr<std::string> read_text_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return absl::InvalidArgumentError(absl::StrCat("text file '", path, "' is a directory; expected a UTF-8 text file"));
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return absl::InvalidArgumentError(absl::StrCat("text file '", path, "' cannot be read"));
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat("text file '", path, "' cannot be read"));
  if (s.empty()) return absl::InvalidArgumentError(absl::StrCat("text file '", path, "' is empty"));
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '\0')
      return absl::InvalidArgumentError(
          absl::StrCat("text file '", path, "' looks binary (a NUL byte at offset ", i, "); expected UTF-8 text"));
    const size_t n = utf8_len(s, i);
    if (n == 0)
      return absl::InvalidArgumentError(
          absl::StrCat("text file '", path, "' is not valid UTF-8 (at byte offset ", i, ")"));
    i += n;
  }
  return s;
}

}  // namespace hippo
