// Minimal .npy reader / writer for the runner protocol (runner_protocol.md): little-endian, C order, the numeric
// dtypes the runtimes use. No dependency beyond the C++17 standard library.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace isp_npy {

struct Array {
  std::string descr;            // numpy dtype string: "<f4", "|u1", ...
  std::vector<int64_t> shape;   // C order
  std::vector<uint8_t> data;    // raw bytes, little endian
};

inline size_t itemsize(const std::string& descr) {
  if (descr.size() < 3) throw std::runtime_error("bad dtype descr '" + descr + "'");
  return static_cast<size_t>(std::stoul(descr.substr(2)));
}

inline std::string header_value(const std::string& header, const std::string& key) {
  const auto k = header.find("'" + key + "'");
  if (k == std::string::npos) throw std::runtime_error("npy header has no '" + key + "'");
  auto v = header.find(':', k) + 1;
  while (v < header.size() && header[v] == ' ') ++v;
  if (header[v] == '\'') return header.substr(v + 1, header.find('\'', v + 1) - v - 1);
  if (header[v] == '(') return header.substr(v + 1, header.find(')', v) - v - 1);
  return header.substr(v, header.find_first_of(",}", v) - v);
}

inline Array read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::string(magic, 6) != "\x93NUMPY") throw std::runtime_error(path + " is not a .npy file");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t hlen = 0;
  if (major == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string header(hlen, '\0');
  f.read(&header[0], hlen);
  Array a;
  a.descr = header_value(header, "descr");
  if (a.descr[0] == '>') throw std::runtime_error(path + ": big-endian arrays are not supported");
  if (header_value(header, "fortran_order").find("True") != std::string::npos)
    throw std::runtime_error(path + ": Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  std::stringstream dims(header_value(header, "shape"));
  std::string tok;
  size_t count = 1;
  while (std::getline(dims, tok, ',')) {
    if (tok.find_first_not_of(' ') == std::string::npos) continue;
    a.shape.push_back(std::stoll(tok));
    count *= static_cast<size_t>(a.shape.back());
  }
  a.data.resize(count * itemsize(a.descr));
  f.read(reinterpret_cast<char*>(a.data.data()), static_cast<std::streamsize>(a.data.size()));
  if (!f) throw std::runtime_error(path + ": truncated data");
  return a;
}

// Writes to path + ".tmp" then renames, so a reader sees a complete file or none.
inline void write(const std::string& path, const std::string& descr, const std::vector<int64_t>& shape,
                  const void* data, size_t nbytes) {
  std::string dims;  // numpy's tuple syntax: "", "5,", "1, 3, 16, 16"
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw std::runtime_error("cannot write " + tmp);
    const uint16_t hlen = static_cast<uint16_t>(header.size());
    f.write("\x93NUMPY\x01\x00", 8);
    const char hl[2] = {static_cast<char>(hlen & 0xff), static_cast<char>(hlen >> 8)};
    f.write(hl, 2);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
    if (!f) throw std::runtime_error("short write to " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
}

}  // namespace isp_npy
