// Shared by the runners of android_harness/runner_protocol.md (runner.cpp: ExecuTorch, litert_runner.cpp: LiteRT):
// the command line, exit codes, file helpers, names, JSON pieces and the timings record. C++17 standard library only.
#pragma once

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "npy.h"

namespace isp_runner {

enum Exit { kOk = 0, kInternal = 1, kUsage = 2, kLoad = 3, kInputs = 4, kInfer = 5, kWrite = 6 };

struct Failure {
  int code;
  std::string message;
};

struct Args {
  std::string model, inputs, outputs, timings, io_spec;
  int warmup = 3, iterations = 10, threads = 0;
  double debug_sleep_s = 0;
  std::map<std::string, std::string> extra;  // runner-specific options
};

// The runner's usage line (each runner defines it).
extern const char* kUsageText;

// Parses the protocol's flags; `extra` names runner-specific options (their values land in Args::extra).
inline Args parse_args(int argc, char** argv, std::initializer_list<const char*> extra = {}) {
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
    if (std::any_of(extra.begin(), extra.end(), [&](const char* k) { return p.first == k; })) {
      a.extra[p.first] = p.second;
      continue;
    }
    if (std::none_of(std::begin(known), std::end(known), [&](const char* k) { return p.first == k; }))
      throw Failure{kUsage, "unknown option " + p.first};
  }
  return a;
}

inline bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

inline bool make_dirs(const std::string& path) {  // mkdir -p
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
  }
  return true;
}

inline std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// {"inputs": ["a", "b"], "outputs": ["c"]} -> the string list under `key` (enough JSON for the io spec).
inline std::vector<std::string> json_string_list(const std::string& text, const std::string& key) {
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

inline std::string sanitize(const std::string& name) {  // same rule as host_runner.sanitize_name
  std::string s = name.empty() ? "unnamed" : name;
  for (auto& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  if (s[0] == '.') s[0] = '_';
  return s;
}

inline std::string json_escape(const std::string& s) {
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

inline std::string numpy_name(const std::string& descr) {
  static const std::map<std::string, std::string> n = {{"<f4", "float32"}, {"<f2", "float16"}, {"<f8", "float64"},
                                                       {"|u1", "uint8"},   {"|i1", "int8"},    {"<i2", "int16"},
                                                       {"<i4", "int32"},   {"<i8", "int64"},   {"|b1", "bool"}};
  auto it = n.find(descr);
  return it == n.end() ? descr : it->second;
}

inline long peak_rss_bytes() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss * 1024L;  // KiB on Linux and Android
}

inline long current_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  if (!(f >> pages >> resident)) return -1;
  return resident * sysconf(_SC_PAGESIZE);
}

inline std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

inline std::string ms_list(const std::vector<double>& v) {
  std::ostringstream o;
  o.precision(6);
  o << "[";
  for (size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << v[i];
  o << "]";
  return o.str();
}

// {"mean_ms", "median_ms", ...} of the timed iterations, or {} when there are none.
inline std::string summary_json(std::vector<double> s) {
  std::sort(s.begin(), s.end());
  std::ostringstream o;
  o.precision(6);
  if (s.empty()) return "{}";
  const double mean = std::accumulate(s.begin(), s.end(), 0.0) / s.size();
  double var = 0;
  for (double v : s) var += (v - mean) * (v - mean);
  const double median = s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
  const size_t p90 = std::min(s.size() - 1, static_cast<size_t>(std::lround(0.9 * (s.size() - 1))));
  o << "{\"mean_ms\": " << mean << ", \"median_ms\": " << median << ", \"min_ms\": " << s.front()
    << ", \"max_ms\": " << s.back() << ", \"p90_ms\": " << s[p90]
    << ", \"stdev_ms\": " << (s.size() > 1 ? std::sqrt(var / (s.size() - 1)) : 0.0) << "}";
  return o.str();
}

inline double median_of(std::vector<double> s) {
  if (s.empty()) return NAN;
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

// {"name", "file", "shape", "dtype"} of one tensor file, for the timings record.
inline std::string tensor_json(const std::string& name, const std::vector<int64_t>& shape, const std::string& descr) {
  return "{\"name\": \"" + json_escape(name) + "\", \"file\": \"" + json_escape(sanitize(name)) +
         ".npy\", \"shape\": " + shape_json(shape) + ", \"dtype\": \"" + numpy_name(descr) + "\"}";
}

// The timings record: written to <path>.tmp and renamed, so its presence means the run completed.
inline void write_timings(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    f << text;
    if (!f) throw Failure{kWrite, "cannot write timings to " + tmp};
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Failure{kWrite, "cannot rename " + tmp};
}

// Reads <dir>/<sanitized name>.npy into `out` and checks it against the model's shape and dtype; returns the
// problems found ("" when it matches), so a runner can list every mismatch at once.
inline std::string read_input(const std::string& dir, const std::string& name, const std::vector<int64_t>& want,
                              const std::string& want_descr, isp_npy::Array& out) {
  const std::string stem = sanitize(name);
  const std::string file = dir + "/" + stem + ".npy";
  if (!file_exists(file))
    return "missing " + stem + ".npy (input '" + name + "', shape " + shape_json(want) + ", " +
           numpy_name(want_descr) + "); ";
  try {
    out = isp_npy::read(file);
  } catch (const std::exception& e) {
    return std::string(e.what()) + "; ";
  }
  std::string problems;
  if (out.descr != want_descr)
    problems += stem + ".npy: dtype " + numpy_name(out.descr) + ", the model wants " + numpy_name(want_descr) + "; ";
  if (out.shape != want)
    problems += stem + ".npy: shape " + shape_json(out.shape) + ", the model wants " + shape_json(want) + "; ";
  return problems;
}

// main(): run(parse_args(...)) with the protocol's error line and exit code.
template <class Fn>
int protocol_main(Fn&& body) {
  try {
    return body();
  } catch (const Failure& f) {
    std::cerr << "runner: error: " << f.message << "\n";
    if (f.code == kUsage) std::cerr << kUsageText;
    return f.code;
  } catch (const std::exception& e) {
    std::cerr << "runner: error: unexpected: " << e.what() << "\n";
    return kInternal;
  }
}

}  // namespace isp_runner
