// isp_litert_runner: the device-side runner protocol (android_harness/runner_protocol.md) for LiteRT .tflite files,
// on LiteRT's C API (libLiteRt.so: CompiledModel, CPU/XNNPACK, and the GPU accelerator where the device has one).
//
//   isp_litert_runner --model m.tflite --inputs DIR --outputs DIR --warmup N --iterations N --timings OUT.json
//                     [--accelerator cpu|gpu] [--threads N] [--debug-sleep-s S]
//
// Tensor names are the first signature's input / output keys (args_0, output_0 from litert-torch). One timed
// iteration = copy the inputs into their tensor buffers, run, copy the outputs out.
//
// The ai-edge-litert wheel ships libLiteRt.so but no headers, so the few C declarations used here are written out
// below from LiteRT's public litert/c headers (version 2.3.0: LiteRtCreateModelFromFile takes the environment
// first; LiteRtLayout is {rank:7, has_strides:1, int32 dimensions[8], uint32 strides[8]}, 68 bytes). Checked
// against the library's exported symbols; a mismatch would show as a load failure in the tests, not silently.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "npy.h"
#include "runner_common.h"

#ifndef ISP_LITERT_VERSION
#define ISP_LITERT_VERSION "unknown"
#endif

extern "C" {
typedef int LiteRtStatus;  // kLiteRtStatusOk = 0
typedef uint64_t LiteRtParamIndex;
typedef struct LiteRtEnvironmentT* LiteRtEnvironment;
typedef struct LiteRtModelT* LiteRtModel;
typedef struct LiteRtSignatureT* LiteRtSignature;
typedef struct LiteRtTensorT* LiteRtTensor;
typedef struct LiteRtOptionsT* LiteRtOptions;
typedef struct LiteRtCompiledModelT* LiteRtCompiledModel;
typedef struct LiteRtTensorBufferT* LiteRtTensorBuffer;
typedef int LiteRtHwAcceleratorSet;  // bit 0 CPU, bit 1 GPU, bit 2 NPU
typedef void (*LiteRtHostMemoryDeallocator)(void*);

struct LiteRtLayout {
  unsigned int rank : 7;
  unsigned int has_strides : 1;
  int32_t dimensions[8];
  uint32_t strides[8];
};
struct LiteRtRankedTensorType {
  int element_type;  // TfLiteType values: 1 f32, 2 i32, 3 u8, 4 i64, 6 bool, 7 i16, 9 i8, 10 f16, 11 f64
  LiteRtLayout layout;
};
static_assert(sizeof(LiteRtLayout) == 68, "LiteRtLayout must be 68 bytes (LiteRT 2.x ABI)");

LiteRtStatus LiteRtCreateEnvironment(int num_options, const void* options, LiteRtEnvironment* env);
void LiteRtDestroyEnvironment(LiteRtEnvironment env);
LiteRtStatus LiteRtCreateModelFromFile(LiteRtEnvironment env, const char* filename, LiteRtModel* model);
void LiteRtDestroyModel(LiteRtModel model);
LiteRtStatus LiteRtGetNumModelSignatures(LiteRtModel model, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetModelSignature(LiteRtModel model, LiteRtParamIndex i, LiteRtSignature* sig);
LiteRtStatus LiteRtGetNumSignatureInputs(LiteRtSignature sig, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetNumSignatureOutputs(LiteRtSignature sig, LiteRtParamIndex* n);
LiteRtStatus LiteRtGetSignatureInputName(LiteRtSignature sig, LiteRtParamIndex i, const char** name);
LiteRtStatus LiteRtGetSignatureOutputName(LiteRtSignature sig, LiteRtParamIndex i, const char** name);
LiteRtStatus LiteRtGetSignatureInputTensorByIndex(LiteRtSignature sig, LiteRtParamIndex i, LiteRtTensor* t);
LiteRtStatus LiteRtGetSignatureOutputTensorByIndex(LiteRtSignature sig, LiteRtParamIndex i, LiteRtTensor* t);
LiteRtStatus LiteRtGetRankedTensorType(LiteRtTensor t, LiteRtRankedTensorType* type);
LiteRtStatus LiteRtCreateOptions(LiteRtOptions* options);
void LiteRtDestroyOptions(LiteRtOptions options);
LiteRtStatus LiteRtSetOptionsHardwareAccelerators(LiteRtOptions options, LiteRtHwAcceleratorSet set);
LiteRtStatus LiteRtCreateCompiledModel(LiteRtEnvironment env, LiteRtModel model, LiteRtOptions options,
                                       LiteRtCompiledModel* compiled);
void LiteRtDestroyCompiledModel(LiteRtCompiledModel compiled);
LiteRtStatus LiteRtCompiledModelIsFullyAccelerated(LiteRtCompiledModel compiled, bool* fully);
LiteRtStatus LiteRtRunCompiledModel(LiteRtCompiledModel compiled, LiteRtParamIndex signature, size_t n_in,
                                    LiteRtTensorBuffer* in, size_t n_out, LiteRtTensorBuffer* out);
LiteRtStatus LiteRtCreateTensorBufferFromHostMemory(const LiteRtRankedTensorType* type, void* addr, size_t size,
                                                    LiteRtHostMemoryDeallocator dealloc, LiteRtTensorBuffer* buf);
void LiteRtDestroyTensorBuffer(LiteRtTensorBuffer buf);
LiteRtStatus LiteRtLockTensorBuffer(LiteRtTensorBuffer buf, void** addr, int mode);  // 0 read, 1 write
LiteRtStatus LiteRtUnlockTensorBuffer(LiteRtTensorBuffer buf);
}

const char* isp_runner::kUsageText =
    "usage: isp_litert_runner --model FILE.tflite --inputs DIR --outputs DIR --warmup N --iterations N "
    "--timings OUT.json [--accelerator cpu|gpu] [--threads N]\n";

namespace {

using namespace isp_runner;

std::string descr_of(int element_type) {  // "?<code>" when the type has no .npy mapping
  switch (element_type) {
    case 1: return "<f4";
    case 2: return "<i4";
    case 3: return "|u1";
    case 4: return "<i8";
    case 6: return "|b1";
    case 7: return "<i2";
    case 9: return "|i1";
    case 10: return "<f2";
    case 11: return "<f8";
    default: return "?" + std::to_string(element_type);
  }
}

struct Tensor {
  std::string name, descr;
  std::vector<int64_t> shape;
  LiteRtRankedTensorType type{};
  size_t bytes = 0;
  void* host = nullptr;  // 64-byte aligned (LiteRT's host-memory alignment), owned here
  LiteRtTensorBuffer buffer = nullptr;
};

void check(LiteRtStatus s, int code, const std::string& what) {
  if (s != 0) throw Failure{code, what + " (LiteRT status " + std::to_string(s) + ")"};
}

Tensor describe(LiteRtTensor t, const char* name) {
  Tensor out;
  out.name = name ? name : "";
  check(LiteRtGetRankedTensorType(t, &out.type), kLoad, "tensor '" + out.name + "' has no static rank");
  out.descr = descr_of(out.type.element_type);
  size_t count = 1;
  for (unsigned i = 0; i < out.type.layout.rank; ++i) {
    if (out.type.layout.dimensions[i] < 0) throw Failure{kLoad, "tensor '" + out.name + "' has a dynamic shape"};
    out.shape.push_back(out.type.layout.dimensions[i]);
    count *= static_cast<size_t>(out.type.layout.dimensions[i]);
  }
  if (out.descr[0] == '?') throw Failure{kLoad, "tensor '" + out.name + "' has an element type with no .npy dtype"};
  out.bytes = count * std::stoul(out.descr.substr(2));
  const size_t padded = (out.bytes + 63) / 64 * 64;
  out.host = std::aligned_alloc(64, padded ? padded : 64);
  if (!out.host) throw Failure{kInternal, "out of memory for tensor '" + out.name + "'"};
  check(LiteRtCreateTensorBufferFromHostMemory(&out.type, out.host, out.bytes, nullptr, &out.buffer), kLoad,
        "cannot create the tensor buffer of '" + out.name + "'");
  return out;
}

int run(const Args& a) {
  if (a.debug_sleep_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(a.debug_sleep_s));
  if (!file_exists(a.model)) throw Failure{kLoad, "model file " + a.model + " does not exist"};
  const std::string accel = a.extra.count("--accelerator") ? a.extra.at("--accelerator") : "cpu";
  if (accel != "cpu" && accel != "gpu") throw Failure{kUsage, "--accelerator wants cpu or gpu, got '" + accel + "'"};
  if (a.threads > 0)
    std::cerr << "runner: warning: --threads is not applied by this build (the runtime picks its thread count)\n";

  const long rss_start = current_rss_bytes();
  const auto t_load = std::chrono::steady_clock::now();
  LiteRtEnvironment env = nullptr;
  check(LiteRtCreateEnvironment(0, nullptr, &env), kLoad, "LiteRT could not create its environment");
  LiteRtModel model = nullptr;
  check(LiteRtCreateModelFromFile(env, a.model.c_str(), &model), kLoad, "LiteRT could not load " + a.model);
  LiteRtParamIndex n_sig = 0;
  check(LiteRtGetNumModelSignatures(model, &n_sig), kLoad, "LiteRT could not read the signatures of " + a.model);
  if (n_sig < 1) throw Failure{kLoad, a.model + " has no signature (export it with litert-torch)"};
  LiteRtSignature sig = nullptr;
  check(LiteRtGetModelSignature(model, 0, &sig), kLoad, "LiteRT could not read signature 0 of " + a.model);

  // CPU (XNNPACK) always; with --accelerator gpu the GPU accelerator first, falling back to the CPU where the
  // device has none (the record says which ran)
  std::string backend = "CPU (XNNPACK)";
  LiteRtCompiledModel compiled = nullptr;
  auto compile = [&](LiteRtHwAcceleratorSet set) {
    LiteRtOptions opts = nullptr;
    check(LiteRtCreateOptions(&opts), kLoad, "LiteRT could not create compilation options");
    check(LiteRtSetOptionsHardwareAccelerators(opts, set), kLoad, "LiteRT rejected the accelerator set");
    const LiteRtStatus s = LiteRtCreateCompiledModel(env, model, opts, &compiled);
    LiteRtDestroyOptions(opts);
    return s;
  };
  if (accel == "gpu") {
    const LiteRtStatus s = compile(0x2 | 0x1);
    bool fully = false;
    if (s == 0 && LiteRtCompiledModelIsFullyAccelerated(compiled, &fully) == 0 && fully) {
      backend = "GPU";
    } else if (s == 0) {
      backend = "GPU + CPU (XNNPACK) (partly accelerated, or no GPU: check the device)";
    } else {
      std::cerr << "runner: warning: the GPU accelerator is not available here (LiteRT status " << s
                << "); running on the CPU\n";
      backend = "CPU (XNNPACK) (GPU requested, not available)";
      compiled = nullptr;
    }
  }
  if (compiled == nullptr) check(compile(0x1), kLoad, "LiteRT could not compile " + a.model + " for the CPU");

  LiteRtParamIndex n_in = 0, n_out = 0;
  check(LiteRtGetNumSignatureInputs(sig, &n_in), kLoad, "no signature inputs");
  check(LiteRtGetNumSignatureOutputs(sig, &n_out), kLoad, "no signature outputs");
  using NameFn = LiteRtStatus (*)(LiteRtSignature, LiteRtParamIndex, const char**);
  using TensorFn = LiteRtStatus (*)(LiteRtSignature, LiteRtParamIndex, LiteRtTensor*);
  auto collect = [&](LiteRtParamIndex n, NameFn name_of, TensorFn tensor_of, const char* what) {
    std::vector<Tensor> v;
    for (LiteRtParamIndex i = 0; i < n; ++i) {
      const char* name = nullptr;
      LiteRtTensor t = nullptr;
      check(name_of(sig, i, &name), kLoad, std::string(what) + " name " + std::to_string(i));
      check(tensor_of(sig, i, &t), kLoad, std::string(what) + " tensor " + std::to_string(i));
      v.push_back(describe(t, name));
    }
    return v;
  };
  std::vector<Tensor> ins = collect(n_in, LiteRtGetSignatureInputName, LiteRtGetSignatureInputTensorByIndex, "input");
  std::vector<Tensor> outs =
      collect(n_out, LiteRtGetSignatureOutputName, LiteRtGetSignatureOutputTensorByIndex, "output");
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_load).count();
  const long rss_loaded = current_rss_bytes();

  // inputs: read and check every file first, so the message lists every mismatch
  std::vector<isp_npy::Array> arrays(ins.size());
  std::string problems;
  for (size_t i = 0; i < ins.size(); ++i)
    problems += read_input(a.inputs, ins[i].name, ins[i].shape, ins[i].descr, arrays[i]);
  if (!problems.empty()) throw Failure{kInputs, "inputs do not match the model: " + problems};

  std::vector<LiteRtTensorBuffer> in_bufs, out_bufs;
  for (auto& t : ins) in_bufs.push_back(t.buffer);
  for (auto& t : outs) out_bufs.push_back(t.buffer);
  std::vector<std::vector<uint8_t>> results(outs.size());
  std::vector<double> warm, timed;
  bool ran = false;  // --warmup 0 --iterations 0 still runs once (untimed) to produce the outputs
  for (int it = 0; it < a.warmup + a.iterations || !ran; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < ins.size(); ++i) {
      void* p = nullptr;
      check(LiteRtLockTensorBuffer(ins[i].buffer, &p, 1), kInfer, "cannot map input '" + ins[i].name + "'");
      std::memcpy(p, arrays[i].data.data(), ins[i].bytes);
      LiteRtUnlockTensorBuffer(ins[i].buffer);
    }
    check(LiteRtRunCompiledModel(compiled, 0, in_bufs.size(), in_bufs.data(), out_bufs.size(), out_bufs.data()),
          kInfer, "inference failed");
    for (size_t i = 0; i < outs.size(); ++i) {
      void* p = nullptr;
      check(LiteRtLockTensorBuffer(outs[i].buffer, &p, 0), kInfer, "cannot map output '" + outs[i].name + "'");
      results[i].assign(static_cast<uint8_t*>(p), static_cast<uint8_t*>(p) + outs[i].bytes);
      LiteRtUnlockTensorBuffer(outs[i].buffer);
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (it < a.warmup) warm.push_back(ms);
    else if (it < a.warmup + a.iterations) timed.push_back(ms);
    ran = true;
  }

  if (!make_dirs(a.outputs)) throw Failure{kWrite, "cannot create " + a.outputs + ": " + std::strerror(errno)};
  std::string outputs_json = "[", inputs_json = "[";
  try {
    for (size_t i = 0; i < outs.size(); ++i) {
      isp_npy::write(a.outputs + "/" + sanitize(outs[i].name) + ".npy", outs[i].descr, outs[i].shape,
                     results[i].data(), results[i].size());
      outputs_json += (i ? ", " : "") + tensor_json(outs[i].name, outs[i].shape, outs[i].descr);
    }
  } catch (const std::runtime_error& e) {
    throw Failure{kWrite, std::string("cannot write outputs to ") + a.outputs + ": " + e.what()};
  }
  outputs_json += "]";
  for (size_t i = 0; i < ins.size(); ++i)
    inputs_json += (i ? ", " : "") + tensor_json(ins[i].name, ins[i].shape, ins[i].descr);
  inputs_json += "]";
  const long peak = peak_rss_bytes();

  struct stat st;
  const long model_bytes = ::stat(a.model.c_str(), &st) == 0 ? static_cast<long>(st.st_size) : -1;
  const std::string model_name = a.model.substr(a.model.find_last_of('/') + 1);
  std::ostringstream j;
  j.precision(9);
  j << "{\n \"schema\": \"isp_bench.timings/1\",\n \"runner\": \"isp_litert_runner\",\n"
    << " \"model\": \"" << json_escape(model_name) << "\",\n \"model_bytes\": " << model_bytes << ",\n"
    << " \"format\": \"tflite\",\n \"runtime\": \"litert\",\n \"runtime_version\": \"" << ISP_LITERT_VERSION
    << "\",\n \"backend\": \"" << json_escape(backend) << "\",\n \"accelerator\": \"" << accel << "\",\n"
    << " \"threads\": null,\n \"warmup\": " << a.warmup << ",\n \"iterations\": " << a.iterations << ",\n"
    << " \"load_ms\": " << load_ms << ",\n \"warmup_ms\": " << ms_list(warm) << ",\n"
    << " \"iteration_ms\": " << ms_list(timed) << ",\n \"summary\": " << summary_json(timed) << ",\n"
    << " \"peak_rss_bytes\": " << peak << ",\n \"rss_start_bytes\": " << rss_start << ",\n"
    << " \"rss_after_load_bytes\": " << rss_loaded << ",\n"
    << " \"inputs\": " << inputs_json << ",\n \"outputs\": " << outputs_json << "\n}\n";
  write_timings(a.timings, j.str());

  for (auto& t : ins) LiteRtDestroyTensorBuffer(t.buffer), std::free(t.host);
  for (auto& t : outs) LiteRtDestroyTensorBuffer(t.buffer), std::free(t.host);
  LiteRtDestroyCompiledModel(compiled);
  LiteRtDestroyModel(model);
  LiteRtDestroyEnvironment(env);
  std::printf("%s: litert %s [%s] median %.3f ms over %d iterations, peak RSS %.1f MiB\n", model_name.c_str(),
              ISP_LITERT_VERSION, backend.c_str(), median_of(timed), a.iterations, peak / 1048576.0);
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  return protocol_main([&] { return run(parse_args(argc, argv, {"--accelerator"})); });
}
