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

#ifndef ISP_EXECUTORCH_VERSION
#define ISP_EXECUTORCH_VERSION "unknown"
#endif

namespace {

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::runtime::EValue;

enum Exit { kOk = 0, kInternal = 1, kUsage = 2, kLoad = 3, kInputs = 4, kInfer = 5, kWrite = 6 };

struct Failure {
  int code;
  std::string message;
};

struct Args {
  std::string model, inputs, outputs, timings, io_spec;
  int warmup = 3, iterations = 10, threads = 0;
  double debug_sleep_s = 0;
};

const char* kUsageText =
    "usage: isp_et_runner --model FILE.pte --inputs DIR --outputs DIR --warmup N --iterations N "
    "--timings OUT.json [--threads N] [--io-spec FILE]\n";

Args parse_args(int argc, char** argv) {
  Args a;
  std::map<std::string, std::string> kv;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      std::cout << kUsageText;
      std::exit(kOk);
    }
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) throw Failure{kUsage, "unexpected argument '" + k + "'"};
    kv[k] = argv[++i];
  }
  auto need = [&](const char* k) {
    auto it = kv.find(k);
    if (it == kv.end()) throw Failure{kUsage, std::string("missing ") + k};
    return it->second;
  };
  auto as_int = [&](const char* k, int def) {
    auto it = kv.find(k);
    if (it == kv.end()) return def;
    try {
      int v = std::stoi(it->second);
      if (v < 0) throw std::invalid_argument("negative");
      return v;
    } catch (const std::exception&) {
      throw Failure{kUsage, std::string(k) + " wants a non-negative integer, got '" + it->second + "'"};
    }
  };
  a.model = need("--model");
  a.inputs = need("--inputs");
  a.outputs = need("--outputs");
  a.timings = need("--timings");
  a.warmup = as_int("--warmup", 3);
  a.iterations = as_int("--iterations", 10);
  a.threads = as_int("--threads", 0);
  if (kv.count("--io-spec")) a.io_spec = kv["--io-spec"];
  if (kv.count("--debug-sleep-s")) a.debug_sleep_s = std::stod(kv["--debug-sleep-s"]);
  for (const auto& p : kv) {
    static const char* known[] = {"--model", "--inputs", "--outputs", "--timings", "--warmup", "--iterations",
                                  "--threads", "--io-spec", "--debug-sleep-s"};
    if (std::none_of(std::begin(known), std::end(known), [&](const char* k) { return p.first == k; }))
      throw Failure{kUsage, "unknown option " + p.first};
  }
  return a;
}

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool make_dirs(const std::string& path) {  // mkdir -p
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
  }
  return true;
}

std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// {"inputs": ["a", "b"], "outputs": ["c"]} -> the string list under `key` (enough JSON for the io spec).
std::vector<std::string> json_string_list(const std::string& text, const std::string& key) {
  std::vector<std::string> out;
  auto k = text.find("\"" + key + "\"");
  if (k == std::string::npos) return out;
  auto open = text.find('[', k), close = text.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return out;
  for (size_t i = open; i < close; ++i) {
    if (text[i] != '"') continue;
    std::string s;
    for (++i; i < close && text[i] != '"'; ++i) {
      if (text[i] == '\\' && i + 1 < close) ++i;
      s.push_back(text[i]);
    }
    out.push_back(s);
  }
  return out;
}

std::string sanitize(const std::string& name) {  // same rule as host_runner.sanitize_name
  std::string s = name.empty() ? "unnamed" : name;
  for (auto& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  if (s[0] == '.') s[0] = '_';
  return s;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o;
}

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
std::string numpy_name(const std::string& descr) {
  static const std::map<std::string, std::string> n = {{"<f4", "float32"}, {"<f2", "float16"}, {"<f8", "float64"},
                                                       {"|u1", "uint8"},   {"|i1", "int8"},    {"<i2", "int16"},
                                                       {"<i4", "int32"},   {"<i8", "int64"},   {"|b1", "bool"}};
  auto it = n.find(descr);
  return it == n.end() ? descr : it->second;
}

long peak_rss_bytes() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss * 1024L;  // KiB on Linux and Android
}

long current_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  if (!(f >> pages >> resident)) return -1;
  return resident * sysconf(_SC_PAGESIZE);
}

std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string ms_list(const std::vector<double>& v) {
  std::ostringstream o;
  o.precision(6);
  o << "[";
  for (size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << v[i];
  o << "]";
  return o.str();
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
    const std::string file = a.inputs + "/" + sanitize(names_in[i]) + ".npy";
    std::vector<int64_t> want(info->sizes().begin(), info->sizes().end());
    const std::string want_descr = descr_of(info->scalar_type());
    if (!file_exists(file)) {
      problems += "missing " + sanitize(names_in[i]) + ".npy (input '" + names_in[i] + "', shape " +
                  shape_json(want) + ", " + numpy_name(want_descr) + "); ";
      continue;
    }
    try {
      arrays[i] = isp_npy::read(file);
    } catch (const std::exception& e) {
      problems += std::string(e.what()) + "; ";
      continue;
    }
    if (arrays[i].descr != want_descr)
      problems += sanitize(names_in[i]) + ".npy: dtype " + numpy_name(arrays[i].descr) + ", the model wants " +
                  numpy_name(want_descr) + "; ";
    if (arrays[i].shape != want)
      problems += sanitize(names_in[i]) + ".npy: shape " + shape_json(arrays[i].shape) + ", the model wants " +
                  shape_json(want) + "; ";
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
      outputs_json << (i ? ", " : "") << "{\"name\": \"" << json_escape(names_out[i]) << "\", \"file\": \""
                   << json_escape(file) << "\", \"shape\": " << shape_json(shape) << ", \"dtype\": \""
                   << numpy_name(descr) << "\"}";
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

  std::vector<double> s = timed;
  std::sort(s.begin(), s.end());
  std::ostringstream summary;
  summary.precision(6);
  if (!s.empty()) {
    const double mean = std::accumulate(s.begin(), s.end(), 0.0) / s.size();
    double var = 0;
    for (double v : s) var += (v - mean) * (v - mean);
    const double median = s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
    const size_t p90 = std::min(s.size() - 1, static_cast<size_t>(std::lround(0.9 * (s.size() - 1))));
    summary << "{\"mean_ms\": " << mean << ", \"median_ms\": " << median << ", \"min_ms\": " << s.front()
            << ", \"max_ms\": " << s.back() << ", \"p90_ms\": " << s[p90]
            << ", \"stdev_ms\": " << (s.size() > 1 ? std::sqrt(var / (s.size() - 1)) : 0.0) << "}";
  } else {
    summary << "{}";
  }
  std::ostringstream inputs_json;
  inputs_json << "[";
  for (size_t i = 0; i < n_in; ++i)
    inputs_json << (i ? ", " : "") << "{\"name\": \"" << json_escape(names_in[i]) << "\", \"file\": \""
                << json_escape(sanitize(names_in[i])) << ".npy\", \"shape\": " << shape_json(arrays[i].shape)
                << ", \"dtype\": \"" << numpy_name(arrays[i].descr) << "\"}";
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
    << " \"iteration_ms\": " << ms_list(timed) << ",\n \"summary\": " << summary.str() << ",\n"
    << " \"peak_rss_bytes\": " << peak << ",\n \"rss_start_bytes\": " << rss_start << ",\n"
    << " \"rss_after_load_bytes\": " << rss_loaded << ",\n"
    << " \"inputs\": " << inputs_json.str() << ",\n \"outputs\": " << outputs_json.str() << "\n}\n";
  const std::string tmp = a.timings + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    f << j.str();
    if (!f) throw Failure{kWrite, "cannot write timings to " + tmp};
  }
  if (std::rename(tmp.c_str(), a.timings.c_str()) != 0) throw Failure{kWrite, "cannot rename " + tmp};

  std::printf("%s: executorch %s [%s] median %.3f ms over %d iterations, peak RSS %.1f MiB\n", model_name.c_str(),
              ISP_EXECUTORCH_VERSION, backend.c_str(), s.empty() ? NAN : s[s.size() / 2], a.iterations,
              peak / 1048576.0);
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const Failure& f) {
    std::cerr << "runner: error: " << f.message << "\n";
    if (f.code == kUsage) std::cerr << kUsageText;
    return f.code;
  } catch (const std::exception& e) {
    std::cerr << "runner: error: unexpected: " << e.what() << "\n";
    return kInternal;
  }
}
