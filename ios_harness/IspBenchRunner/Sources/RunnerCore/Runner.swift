// The runner protocol (android_harness/runner_protocol.md, schema isp_bench.timings/1) for Core ML models, shared by
// the iOS app (App/IspBenchRunnerApp.swift) and the macOS command line (Sources/isp-coreml-runner/main.swift).
// NOT compiled here (no Swift toolchain on the Linux machines of this repository); see ios_harness/README.md.
//
//   --model M.mlmodelc|M.mlpackage --inputs DIR --outputs DIR --warmup N --iterations N --timings OUT.json
//   [--compute-units all|cpu_only|cpu_and_gpu|cpu_and_ne] [--debug-sleep-s S]
//
// Relative paths are resolved against `base` (the app's Documents folder on iOS, the working folder on macOS).
// `--inputs` holding sub-folders instead of .npy files is a batch: one set per sub-folder, `--warmup` on the first
// set only, `--iterations` timed inferences per set, outputs in OUTPUTS/<set>/, and "sets" in the timings (the same
// extension as runtime_py/batch_runner.py). One timed iteration = build the feature provider, predict, read every
// output array (what an app does per frame), timed with DispatchTime (monotonic, ns).
import CoreML
import Foundation
#if canImport(Darwin)
import Darwin
#endif

public let schema = "isp_bench.timings/1"

public struct RunnerFailure: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public init(_ code: Int32, _ message: String) { self.code = code; self.message = message }
    public var description: String { "runner: error: \(message)" }
}

public struct RunnerArgs {
    public var model = "", inputs = "", outputs = "", timings = ""
    public var warmup = 3, iterations = 10
    public var computeUnits = "all"
    public var debugSleepS = 0.0
}

public func parseArgs(_ argv: [String]) throws -> RunnerArgs {
    var a = RunnerArgs()
    var i = 0
    var seen = Set<String>()
    while i < argv.count {
        let k = argv[i]
        guard k.hasPrefix("--") else {                      // launch arguments the OS may add (-Key value): skip
            i += (k.hasPrefix("-") && i + 1 < argv.count) ? 2 : 1
            continue
        }
        guard i + 1 < argv.count else { throw RunnerFailure(2, "\(k) needs a value") }
        let v = argv[i + 1]
        switch k {
        case "--model": a.model = v
        case "--inputs": a.inputs = v
        case "--outputs": a.outputs = v
        case "--timings": a.timings = v
        case "--warmup": guard let n = Int(v), n >= 0 else { throw RunnerFailure(2, "--warmup must be >= 0") }; a.warmup = n
        case "--iterations": guard let n = Int(v), n >= 0 else { throw RunnerFailure(2, "--iterations must be >= 0") }; a.iterations = n
        case "--compute-units": a.computeUnits = v
        case "--debug-sleep-s": a.debugSleepS = Double(v) ?? 0
        case "--threads", "--io-spec": break                // protocol flags without meaning for Core ML
        default: throw RunnerFailure(2, "unknown argument \(k)")
        }
        seen.insert(k)
        i += 2
    }
    for need in ["--model", "--inputs", "--outputs", "--timings"] where !seen.contains(need) {
        throw RunnerFailure(2, "missing \(need)")
    }
    return a
}

public func sanitize(_ name: String) -> String {
    var s = String(name.map { c -> Character in
        (c.isASCII && (c.isLetter || c.isNumber || c == "." || c == "_" || c == "-")) ? c : "_"
    })
    if s.isEmpty { s = "unnamed" }
    if s.hasPrefix(".") { s = "_" + s.dropFirst() }
    return s
}

private func resolve(_ path: String, _ base: URL) -> URL {
    path.hasPrefix("/") ? URL(fileURLWithPath: path) : base.appendingPathComponent(path)
}

private func nowMs() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }

/// (current, peak) physical footprint in bytes: what Xcode's memory gauge shows (task_vm_info).
public func footprint() -> (Int?, Int?) {
    #if canImport(Darwin)
    var info = task_vm_info_data_t()
    var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
    let kr = withUnsafeMutablePointer(to: &info) {
        $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
            task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
        }
    }
    if kr == KERN_SUCCESS { return (Int(info.phys_footprint), Int(info.ledger_phys_footprint_peak)) }
    #endif
    return (nil, nil)
}

private func computeUnits(_ name: String) throws -> MLComputeUnits {
    switch name {
    case "all": return .all
    case "cpu_only": return .cpuOnly
    case "cpu_and_gpu": return .cpuAndGPU
    case "cpu_and_ne":
        if #available(iOS 16.0, macOS 13.0, *) { return .cpuAndNeuralEngine }
        throw RunnerFailure(2, "cpu_and_ne needs iOS 16 / macOS 13")
    default: throw RunnerFailure(2, "--compute-units must be all, cpu_only, cpu_and_gpu or cpu_and_ne, got \(name)")
    }
}

private func atomicWrite(_ data: Data, _ url: URL) throws {
    let tmp = url.appendingPathExtension("tmp")
    try data.write(to: tmp)
    _ = try? FileManager.default.removeItem(at: url)
    try FileManager.default.moveItem(at: tmp, to: url)
}

/// Runs the whole protocol; returns the timings record (also written to --timings). Throws RunnerFailure.
public func runProtocol(_ a: RunnerArgs, base: URL) throws -> [String: Any] {
    let fm = FileManager.default
    if a.debugSleepS > 0 { Thread.sleep(forTimeInterval: a.debugSleepS) }
    let modelURL = resolve(a.model, base)
    guard fm.fileExists(atPath: modelURL.path) else { throw RunnerFailure(3, "model \(modelURL.path) does not exist") }
    let (rssStart, _) = footprint()
    let config = MLModelConfiguration()
    config.computeUnits = try computeUnits(a.computeUnits)
    var compileMs: Double? = nil
    let t0 = nowMs()
    let model: MLModel
    do {
        var compiled = modelURL
        if modelURL.pathExtension != "mlmodelc" {           // .mlpackage / .mlmodel: compile on the device
            let tc = nowMs()
            compiled = try MLModel.compileModel(at: modelURL)
            compileMs = nowMs() - tc
        }
        model = try MLModel(contentsOf: compiled, configuration: config)
    } catch {
        throw RunnerFailure(3, "Core ML could not load \(modelURL.lastPathComponent): \(error)")
    }
    let loadMs = nowMs() - t0 - (compileMs ?? 0)
    let (rssLoaded, _) = footprint()
    let desc = model.modelDescription
    let inputNames = desc.inputDescriptionsByName.keys.sorted()
    let outputNames = desc.outputDescriptionsByName.keys.sorted()

    let inDir = resolve(a.inputs, base)
    let outDir = resolve(a.outputs, base)
    let entries = (try? fm.contentsOfDirectory(at: inDir, includingPropertiesForKeys: [.isDirectoryKey])) ?? []
    let npys = entries.filter { $0.pathExtension == "npy" }
    let setDirs = entries.filter { (try? $0.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true }
        .sorted { $0.lastPathComponent < $1.lastPathComponent }
    let batch = npys.isEmpty && !setDirs.isEmpty
    let sets: [(String, URL)] = batch ? setDirs.map { ($0.lastPathComponent, $0) } : [("", inDir)]

    func provider(_ dir: URL) throws -> (MLFeatureProvider, [[String: Any]]) {
        var features: [String: MLFeatureValue] = [:]
        var problems: [String] = []
        var described: [[String: Any]] = []
        for name in inputNames {
            let file = dir.appendingPathComponent(sanitize(name) + ".npy")
            guard fm.fileExists(atPath: file.path) else { problems.append("missing \(file.lastPathComponent)"); continue }
            do {
                let arr = try readNpy(file)
                if let c = desc.inputDescriptionsByName[name]?.multiArrayConstraint {
                    let want = c.shape.map { $0.intValue }
                    if !want.isEmpty && want != arr.shape {
                        problems.append("\(file.lastPathComponent): shape \(arr.shape), the model wants \(want)")
                        continue
                    }
                    if try dataType(forDescr: arr.descr) != c.dataType {
                        problems.append("\(file.lastPathComponent): dtype \(arr.descr), the model wants \(descr(for: c.dataType))")
                        continue
                    }
                }
                features[name] = MLFeatureValue(multiArray: try multiArray(from: arr))
                described.append(["name": name, "file": file.lastPathComponent, "shape": arr.shape, "dtype": arr.descr])
            } catch {
                problems.append("\(file.lastPathComponent): \(error)")
            }
        }
        if !problems.isEmpty { throw RunnerFailure(4, "inputs do not match the model: " + problems.joined(separator: "; ")) }
        return (try MLDictionaryFeatureProvider(dictionary: features), described)
    }

    var warm: [Double] = [], timed: [Double] = [], perSet: [[String: Any]] = []
    var firstInputs: [[String: Any]] = [], firstOutputs: [[String: Any]] = []
    for (k, (setName, dir)) in sets.enumerated() {
        let (features, described) = try provider(dir)
        if k == 0 { firstInputs = described }
        var ms: [Double] = []
        var last: MLFeatureProvider? = nil
        let runs = (k == 0 ? a.warmup : 0) + a.iterations
        do {
            for i in 0..<max(runs, 1) {
                let t = nowMs()
                let out = try model.prediction(from: features)
                for n in outputNames { _ = out.featureValue(for: n)?.multiArrayValue?.count }
                let dt = nowMs() - t
                if runs == 0 { break }                      // --warmup 0 --iterations 0: one untimed run
                if k == 0 && i < a.warmup { warm.append(dt) } else { ms.append(dt) }
                last = out
            }
            if last == nil { last = try model.prediction(from: features) }
        } catch {
            throw RunnerFailure(5, "inference failed\(batch ? " on set \(setName)" : ""): \(error)")
        }
        let target = batch ? outDir.appendingPathComponent(setName) : outDir
        var written: [[String: Any]] = []
        do {
            try fm.createDirectory(at: target, withIntermediateDirectories: true)
            for n in outputNames {
                guard let m = last?.featureValue(for: n)?.multiArrayValue else { continue }
                let arr = npy(from: m)
                let file = sanitize(n) + ".npy"
                try writeNpy(arr, to: target.appendingPathComponent(file))
                written.append(["name": n, "file": file, "shape": arr.shape, "dtype": arr.descr])
            }
        } catch {
            throw RunnerFailure(6, "cannot write outputs to \(target.path): \(error)")
        }
        if k == 0 { firstOutputs = written }
        timed += ms
        if batch { perSet.append(["name": setName, "iteration_ms": ms, "outputs": written]) }
    }
    let (_, peak) = footprint()
    let sorted = timed.sorted()
    var summary: [String: Any] = [:]
    if !sorted.isEmpty {
        let mean = sorted.reduce(0, +) / Double(sorted.count)
        let mid = sorted.count / 2
        summary = ["mean_ms": mean, "median_ms": sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2,
                   "min_ms": sorted.first!, "max_ms": sorted.last!,
                   "p90_ms": sorted[min(sorted.count - 1, Int((0.9 * Double(sorted.count - 1)).rounded()))],
                   "stdev_ms": sorted.count > 1 ? (sorted.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(sorted.count - 1)).squareRoot() : 0.0]
    }
    let modelBytes = (fm.enumerator(at: modelURL, includingPropertiesForKeys: [.fileSizeKey])?.allObjects as? [URL] ?? [modelURL])
        .compactMap { try? $0.resourceValues(forKeys: [.fileSizeKey]).fileSize }.reduce(0, +)
    var record: [String: Any] = [
        "schema": schema, "runner": "IspBenchRunner", "model": modelURL.lastPathComponent, "model_bytes": modelBytes,
        "format": modelURL.pathExtension, "runtime": "coreml",
        "runtime_version": ProcessInfo.processInfo.operatingSystemVersionString,
        "backend": "MLComputeUnits.\(a.computeUnits)", "threads": NSNull(), "warmup": a.warmup,
        "iterations": a.iterations, "startup_ms": nowMs() - t0 - timed.reduce(0, +) - warm.reduce(0, +),
        "load_ms": loadMs, "compile_ms": compileMs.map { $0 as Any } ?? NSNull(), "warmup_ms": warm, "iteration_ms": timed,
        "summary": summary, "peak_rss_bytes": peak.map { $0 as Any } ?? NSNull(), "rss_start_bytes": rssStart.map { $0 as Any } ?? NSNull(),
        "rss_after_load_bytes": rssLoaded.map { $0 as Any } ?? NSNull(), "inputs": firstInputs, "outputs": firstOutputs,
        "notes": "peak_rss_bytes is the task's peak physical footprint (task_vm_info), as Xcode reports memory",
    ]
    if batch { record["sets"] = perSet }
    let timingsURL = resolve(a.timings, base)
    do {
        try fm.createDirectory(at: timingsURL.deletingLastPathComponent(), withIntermediateDirectories: true)
        let json = try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
        try atomicWrite(json, timingsURL)
    } catch {
        throw RunnerFailure(6, "cannot write timings to \(timingsURL.path): \(error)")
    }
    return record
}

/// `<timings>.error.json` = {"code", "message"}: how the iOS app reports a failure (an app's exit status does not
/// reliably reach the host). The driver reads it when the timings file is absent.
public func writeFailure(_ f: RunnerFailure, timings: String, base: URL) {
    let url = resolve(timings + ".error.json", base)
    try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    if let data = try? JSONSerialization.data(withJSONObject: ["code": Int(f.code), "message": f.message]) {
        try? atomicWrite(data, url)
    }
}
