// Model construction from run configs, and model files.
#include "runner/model_io.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <fstream>

#include "core/device.h"

namespace hippo {

std::unique_ptr<Task> build_task(const Json& c) {
  const TaskEntry* te = value_or_throw(TaskRegistry::global().find(c.at("task").get<std::string>(), "task"));
  return te->factory(Options(c.at("task_options")));
}

LanguageModel build_model(const Json& c, const Task& task) {
  const Options train(c.at("train"));
  ModelConfig mc;
  mc.vocab_size = task.vocab_size();
  mc.d_model = train.get_int("d_model");
  mc.max_seq_len = task.input_len();
  mc.schedule = c.at("layers").get<std::vector<std::string>>();
  for (auto it = c.at("layer_options").begin(); it != c.at("layer_options").end(); ++it)
    mc.layer_options[it.key()] = Options(it.value());
  mc.embed_dropout = train.get_float("embed_dropout");
  mc.resid_dropout = train.get_float("resid_dropout");
  // Configs stored before mlp_ratio existed (or at its default, which is left out of the hash) have none: 4.
  if (train.json().contains("mlp_ratio")) mc.mlp_ratio = train.get_int("mlp_ratio");
  return LanguageModel(mc);
}

void save_model(const std::string& path, LanguageModel& model, const Json& config) {
  torch::serialize::OutputArchive archive, model_archive;
  model->save(model_archive);
  archive.write("model", model_archive);
  archive.write("config", c10::IValue(config.dump()));
  const std::string tmp = path + ".tmp";
  archive.save_to(tmp);
  TORCH_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot move the model file into place at ", path);
}

absl::StatusOr<LoadedModel> load_model(const std::string& path, const std::string& device,
                                       const Json& config_if_missing) {
  if (!std::ifstream(path).good()) return absl::NotFoundError(absl::StrCat("model file '", path, "' cannot be read"));
  HIPPO_ASSIGN_OR_RETURN(const torch::Device dev, parse_device(device));
  LoadedModel out;
  try {
    torch::serialize::InputArchive archive, model_archive;
    archive.load_from(path, dev);
    c10::IValue cfg;
    if (archive.try_read("config", cfg)) {
      out.config = Json::parse(cfg.toStringRef());
    } else if (!config_if_missing.is_null()) {
      out.config = config_if_missing;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", path, "' has no run config (a mid-run checkpoint?): pass --run RUN_ID so the config comes from the database"));
    }
    out.task = build_task(out.config);
    out.model = build_model(out.config, *out.task);
    archive.read("model", model_archive);
    out.model->load(model_archive);
    out.model->to(dev);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is not a hippo model file for its config: ", e.what_without_backtrace()));
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' holds an unreadable config: ", e.what()));
  } catch (const StatusError& e) {
    return e.status();
  }
  return out;
}

}  // namespace hippo
