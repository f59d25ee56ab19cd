// macOS command line of the Core ML runner (same protocol as the iOS app): useful on a Mac as the host baseline of
// .mlpackage artifacts, which this repository's Linux tooling cannot predict. NOT compiled here.
import Foundation
import RunnerCore

let argv = Array(CommandLine.arguments.dropFirst())
if argv.contains("-h") || argv.contains("--help") {
    print("usage: isp-coreml-runner --model M.mlmodelc|M.mlpackage --inputs DIR --outputs DIR --warmup N " +
          "--iterations N --timings OUT.json [--compute-units all|cpu_only|cpu_and_gpu|cpu_and_ne]")
    exit(0)
}
do {
    let args = try parseArgs(argv)
    let record = try runProtocol(args, base: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
    let s = record["summary"] as? [String: Any] ?? [:]
    print("\(record["model"] ?? "?"): coreml [\(record["backend"] ?? "?")] median \(s["median_ms"] ?? "nan") ms")
    exit(0)
} catch let f as RunnerFailure {
    FileHandle.standardError.write((f.description + "\n").data(using: .utf8)!)
    exit(f.code)
} catch {
    FileHandle.standardError.write("runner: error: \(error)\n".data(using: .utf8)!)
    exit(1)
}
