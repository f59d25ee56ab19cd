// .npy files (NumPy format 1.0-3.0) <-> MLMultiArray, for the runner protocol (android_harness/runner_protocol.md).
// NOT compiled here (no Swift toolchain on the Linux machines of this repository); see ios_harness/README.md.
import CoreML
import Foundation

public struct NpyArray {
    public var descr: String          // "<f4", "<f2", "<f8", "<i4", "<i8", "|i1", "|u1", "|b1"
    public var shape: [Int]
    public var data: Data             // C order, little endian

    public var count: Int { shape.reduce(1, *) }
}

public enum NpyError: Error, CustomStringConvertible {
    case notNpy(String), unsupported(String), truncated(String)
    public var description: String {
        switch self {
        case .notNpy(let s): return "not a .npy file: \(s)"
        case .unsupported(let s): return "unsupported .npy: \(s)"
        case .truncated(let s): return "truncated .npy: \(s)"
        }
    }
}

private let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]   // \x93NUMPY

public func itemSize(_ descr: String) throws -> Int {
    switch descr {
    case "<f4", "<i4": return 4
    case "<f2": return 2
    case "<f8", "<i8": return 8
    case "|i1", "|u1", "|b1": return 1
    default: throw NpyError.unsupported("dtype \(descr)")
    }
}

public func readNpy(_ url: URL) throws -> NpyArray {
    let bytes = try Data(contentsOf: url, options: .alwaysMapped)
    guard bytes.count >= 10, Array(bytes.prefix(6)) == magic else { throw NpyError.notNpy(url.lastPathComponent) }
    let major = bytes[6]
    let headerLen: Int
    let headerStart: Int
    if major == 1 {
        headerLen = Int(bytes[8]) | (Int(bytes[9]) << 8)
        headerStart = 10
    } else if major == 2 || major == 3 {
        guard bytes.count >= 12 else { throw NpyError.truncated(url.lastPathComponent) }
        headerLen = Int(bytes[8]) | (Int(bytes[9]) << 8) | (Int(bytes[10]) << 16) | (Int(bytes[11]) << 24)
        headerStart = 12
    } else {
        throw NpyError.unsupported("format version \(major)")
    }
    guard bytes.count >= headerStart + headerLen else { throw NpyError.truncated(url.lastPathComponent) }
    let header = String(decoding: bytes[headerStart..<(headerStart + headerLen)], as: UTF8.self)
    guard let descr = captureQuoted(header, key: "descr") else { throw NpyError.notNpy("no descr in \(header)") }
    if header.contains("'fortran_order': True") { throw NpyError.unsupported("Fortran order") }
    guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
        throw NpyError.notNpy("no shape in \(header)")
    }
    let shape = header[open.upperBound..<close].split(separator: ",")
        .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    var arr = NpyArray(descr: descr, shape: shape, data: Data())
    let need = arr.count * (try itemSize(descr))
    let start = headerStart + headerLen
    guard bytes.count >= start + need else { throw NpyError.truncated("\(url.lastPathComponent): need \(need) bytes") }
    arr.data = bytes.subdata(in: start..<(start + need))
    return arr
}

private func captureQuoted(_ header: String, key: String) -> String? {
    guard let k = header.range(of: "'\(key)': '") else { return nil }
    guard let end = header[k.upperBound...].firstIndex(of: "'") else { return nil }
    return String(header[k.upperBound..<end])
}

/// Writes `<url>.tmp` then renames it onto `url`, as the protocol requires.
public func writeNpy(_ arr: NpyArray, to url: URL) throws {
    let shapeText = arr.shape.count == 1 ? "(\(arr.shape[0]),)" : "(" + arr.shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(arr.descr)', 'fortran_order': False, 'shape': \(shapeText), }"
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var out = Data(magic)
    out.append(contentsOf: [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
    out.append(header.data(using: .ascii)!)
    out.append(arr.data)
    let tmp = url.appendingPathExtension("tmp")
    try out.write(to: tmp)
    _ = try? FileManager.default.removeItem(at: url)
    try FileManager.default.moveItem(at: tmp, to: url)
}

// ----------------------------------------------------------------------------------------------- MLMultiArray

public func dataType(forDescr descr: String) throws -> MLMultiArrayDataType {
    switch descr {
    case "<f4": return .float32
    case "<f8": return .double
    case "<i4": return .int32
    case "<f2":
        if #available(iOS 16.0, macOS 13.0, *) { return .float16 }
        throw NpyError.unsupported("float16 needs iOS 16 / macOS 13")
    default: throw NpyError.unsupported("dtype \(descr) has no MLMultiArray type")
    }
}

public func descr(for type: MLMultiArrayDataType) -> String {
    switch type {
    case .double: return "<f8"
    case .int32: return "<i4"
    case .float32: return "<f4"
    default:
        if #available(iOS 16.0, macOS 13.0, *), type == .float16 { return "<f2" }
        return "<f4"
    }
}

/// A contiguous MLMultiArray holding a copy of the .npy data (dtype kept).
public func multiArray(from arr: NpyArray) throws -> MLMultiArray {
    let m = try MLMultiArray(shape: arr.shape.map { NSNumber(value: $0) }, dataType: try dataType(forDescr: arr.descr))
    let size = try itemSize(arr.descr)
    arr.data.withUnsafeBytes { src in
        m.withUnsafeMutableBytes { dst, strides in
            // a freshly created array is contiguous (strides are C order), so one copy does it
            _ = strides
            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[0..<(arr.count * size)]))
        }
    }
    return m
}

/// The array's values in C order (honouring its strides, which Core ML outputs may pad).
public func npy(from m: MLMultiArray) -> NpyArray {
    let shape = m.shape.map { $0.intValue }
    let d = descr(for: m.dataType)
    let size = (try? itemSize(d)) ?? 4
    let count = shape.reduce(1, *)
    var out = Data(count: count * size)
    m.withUnsafeBytes { src in
        let strides = m.strides.map { $0.intValue }
        out.withUnsafeMutableBytes { dst in
            var index = [Int](repeating: 0, count: shape.count)
            for flat in 0..<count {
                var offset = 0
                for (i, s) in strides.enumerated() { offset += index[i] * s }
                dst.baseAddress!.advanced(by: flat * size).copyMemory(from: src.baseAddress!.advanced(by: offset * size),
                                                                        byteCount: size)
                var axis = shape.count - 1                      // increment the C-order multi-index
                while axis >= 0 {
                    index[axis] += 1
                    if index[axis] < shape[axis] { break }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }
    return NpyArray(descr: d, shape: shape, data: out)
}
