// isp_et_runner: the device-side runner protocol (android_harness/runner_protocol.md) for ExecuTorch .pte files.
//
//   isp_et_runner --model m.pte --inputs DIR --outputs DIR --warmup N --iterations N --timings OUT.json
//                 [--threads N] [--io-spec FILE] [--debug-sleep-s S]
//
// Same contract as host_runner.py: inputs DIR/<input name>.npy, outputs DIR/<output name>.npy, timings JSON with
// per-iteration ms (std::chrono::steady_clock around Module::execute), peak RSS (getrusage), runtime / backend /
// version; exit codes 0 ok, 1 internal, 2 usage, 3 load, 4 inputs, 5 inference, 6 write. Names come from the
// sidecar <model>.io.json (or --io-spec), else input_<i> / output_<i>. Written for the ExecuTorch Module extension;
// the same source builds for the host (the executorch wheel's libraries) and for Android (an NDK build of ExecuTorch).
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/platform/runtime.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "npy.h"
#include "runner_common.h"

#ifndef ISP_EXECUTORCH_VERSION
#define ISP_EXECUTORCH_VERSION "unknown"
#endif

const char* isp_runner::kUsageText =
    "usage: isp_et_runner --model FILE.pte --inputs DIR --outputs DIR --warmup N --iterations N "
    "--timings OUT.json [--threads N] [--io-spec FILE]\n";

namespace {

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::runtime::EValue;

using namespace isp_runner;

// ScalarType <-> numpy descr for the dtypes the protocol carries.
const std::vector<std::pair<ScalarType, std::string>>& dtype_table() {
  static const std::vector<std::pair<ScalarType, std::string>> t = {
      {ScalarType::Float, "<f4"}, {ScalarType::Half, "<f2"},  {ScalarType::Double, "<f8"},
      {ScalarType::Byte, "|u1"},  {ScalarType::Char, "|i1"},  {ScalarType::Short, "<i2"},
      {ScalarType::Int, "<i4"},   {ScalarType::Long, "<i8"},  {ScalarType::Bool, "|b1"}};
  return t;
}
std::string descr_of(ScalarType t) {  // "?<code>" when the dtype has no .npy mapping
  for (const auto& p : dtype_table())
    if (p.first == t) return p.second;
  return "?" + std::to_string(static_cast<int>(t));
}
int run(const Args& a) {
  if (a.debug_sleep_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(a.debug_sleep_s));
  if (!file_exists(a.model)) throw Failure{kLoad, "model file " + a.model + " does not exist"};
  const std::string io_path = a.io_spec.empty() ? a.model + ".io.json" : a.io_spec;
  if (!a.io_spec.empty() && !file_exists(io_path)) throw Failure{kUsage, "--io-spec " + io_path + " does not exist"};
  const std::string io_text = file_exists(io_path) ? read_text(io_path) : "";

  executorch::runtime::runtime_init();
  if (a.threads > 0)
    std::cerr << "runner: warning: --threads is not applied by this build (the runtime picks its thread count)\n";
  const long rss_start = current_rss_bytes();
  const auto t_load = std::chrono::steady_clock::now();
  Module module(a.model, Module::LoadMode::Mmap);
  if (module.load() != executorch::runtime::Error::Ok) throw Failure{kLoad, "ExecuTorch could not load " + a.model};
  auto meta = module.method_meta("forward");
  if (!meta.ok()) throw Failure{kLoad, "ExecuTorch could not load " + a.model + ": no method 'forward'"};
  if (module.load_method("forward") != executorch::runtime::Error::Ok)
    throw Failure{kLoad, "ExecuTorch could not load method 'forward' of " + a.model};
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_load).count();
  const long rss_loaded = current_rss_bytes();

  const size_t n_in = meta->num_inputs(), n_out = meta->num_outputs();
  auto names_in = json_string_list(io_text, "inputs"), names_out = json_string_list(io_text, "outputs");
  if (names_in.empty())
    for (size_t i = 0; i < n_in; ++i) names_in.push_back("input_" + std::to_string(i));
  if (names_out.empty())
    for (size_t i = 0; i < n_out; ++i) names_out.push_back("output_" + std::to_string(i));
  if (names_in.size() != n_in || names_out.size() != n_out)
    throw Failure{kUsage, "io spec names " + std::to_string(names_in.size()) + " inputs / " +
                              std::to_string(names_out.size()) + " outputs, the program has " + std::to_string(n_in) +
                              " / " + std::to_string(n_out)};

  // inputs: read, check against the method's tensor meta, wrap (the arrays own the memory)
  std::vector<isp_npy::Array> arrays(n_in);
  std::vector<TensorPtr> tensors;
  std::vector<EValue> inputs;
  std::string problems;
  for (size_t i = 0; i < n_in; ++i) {
    auto info = meta->input_tensor_meta(i);
    if (!info.ok()) throw Failure{kInputs, "input " + std::to_string(i) + " is not a tensor"};
    std::vector<int64_t> want(info->sizes().begin(), info->sizes().end());
    problems += read_input(a.inputs, names_in[i], want, descr_of(info->scalar_type()), arrays[i]);
  }
  if (!problems.empty()) throw Failure{kInputs, "inputs do not match the model: " + problems};
  for (size_t i = 0; i < n_in; ++i) {
    auto info = meta->input_tensor_meta(i);
    std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
    tensors.push_back(executorch::extension::make_tensor_ptr(sizes, arrays[i].data.data(), info->scalar_type()));
    inputs.emplace_back(*tensors.back());
  }

  std::vector<double> warm, timed;
  std::vector<EValue> outs;
  bool ran = false;  // --warmup 0 --iterations 0 still runs once (untimed) to produce the outputs
  for (int i = 0; i < a.warmup + a.iterations || !ran; ++i) {
    const auto t = std::chrono::steady_clock::now();
    auto result = module.execute("forward", inputs);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
    if (!result.ok())
      throw Failure{kInfer, "inference failed: error 0x" + [&] {
                      char b[16];
                      std::snprintf(b, sizeof b, "%x", static_cast<unsigned>(result.error()));
                      return std::string(b);
                    }()};
    if (i < a.warmup) warm.push_back(ms);
    else if (i < a.warmup + a.iterations) timed.push_back(ms);
    outs = std::move(*result);
    ran = true;
  }

  // outputs, then the peak RSS (before anything else allocates), then the timings record
  std::ostringstream outputs_json;
  outputs_json << "[";
  if (!make_dirs(a.outputs)) throw Failure{kWrite, "cannot create " + a.outputs + ": " + std::strerror(errno)};
  try {
    for (size_t i = 0; i < n_out && i < outs.size(); ++i) {
      if (!outs[i].isTensor()) throw Failure{kWrite, "output " + std::to_string(i) + " is not a tensor"};
      const auto& t = outs[i].toTensor();
      std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
      const std::string descr = descr_of(t.scalar_type());
      if (descr[0] == '?') throw Failure{kWrite, "output " + std::to_string(i) + " dtype has no .npy mapping"};
      const std::string file = sanitize(names_out[i]) + ".npy";
      isp_npy::write(a.outputs + "/" + file, descr, shape, t.const_data_ptr(), t.nbytes());
      outputs_json << (i ? ", " : "") << tensor_json(names_out[i], shape, descr);
    }
  } catch (const std::runtime_error& e) {
    throw Failure{kWrite, std::string("cannot write outputs to ") + a.outputs + ": " + e.what()};
  }
  outputs_json << "]";
  const long peak = peak_rss_bytes();

  // delegates used: registered backend ids that occur in the program bytes
  const std::string blob = read_text(a.model);
  std::string backend;
  for (size_t i = 0; i < executorch::runtime::get_num_registered_backends(); ++i) {
    auto name = executorch::runtime::get_backend_name(i);
    if (name.ok() && blob.find(*name) != std::string::npos) backend += (backend.empty() ? "" : "+") + std::string(*name);
  }
  if (backend.empty()) backend = "portable/optimized CPU kernels (no delegate)";

  std::ostringstream inputs_json;
  inputs_json << "[";
  for (size_t i = 0; i < n_in; ++i)
    inputs_json << (i ? ", " : "") << tensor_json(names_in[i], arrays[i].shape, arrays[i].descr);
  inputs_json << "]";
  const std::string model_name = a.model.substr(a.model.find_last_of('/') + 1);

  std::ostringstream j;
  j.precision(9);
  j << "{\n \"schema\": \"isp_bench.timings/1\",\n \"runner\": \"isp_et_runner\",\n"
    << " \"model\": \"" << json_escape(model_name) << "\",\n \"model_bytes\": " << blob.size() << ",\n"
    << " \"format\": \"pte\",\n \"runtime\": \"executorch\",\n \"runtime_version\": \"" << ISP_EXECUTORCH_VERSION
    << "\",\n \"backend\": \"" << json_escape(backend) << "\",\n \"threads\": null,\n"
    << " \"warmup\": " << a.warmup << ",\n \"iterations\": " << a.iterations << ",\n"
    << " \"load_ms\": " << load_ms << ",\n \"warmup_ms\": " << ms_list(warm) << ",\n"
    << " \"iteration_ms\": " << ms_list(timed) << ",\n \"summary\": " << summary_json(timed) << ",\n"
    << " \"peak_rss_bytes\": " << peak << ",\n \"rss_start_bytes\": " << rss_start << ",\n"
    << " \"rss_after_load_bytes\": " << rss_loaded << ",\n"
    << " \"inputs\": " << inputs_json.str() << ",\n \"outputs\": " << outputs_json.str() << "\n}\n";
  write_timings(a.timings, j.str());

  std::printf("%s: executorch %s [%s] median %.3f ms over %d iterations, peak RSS %.1f MiB\n", model_name.c_str(),
              ISP_EXECUTORCH_VERSION, backend.c_str(), median_of(timed), a.iterations,
              peak / 1048576.0);
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  return protocol_main([&] { return run(parse_args(argc, argv)); });
}
