// The iOS app around RunnerCore: launched by ios_harness/driver.py with the runner-protocol flags as launch arguments
// (xcrun devicectl device process launch ... org.modularisp.IspBenchRunner -- --model ... ), it runs the protocol on
// a background thread against its Documents folder, writes the timings (or <timings>.error.json) and exits with the
// protocol's status. A bench tool: exit() is deliberate. NOT compiled here; see ios_harness/README.md.
import Foundation
import RunnerCore
import SwiftUI

@main
struct IspBenchRunnerApp: App {
    @State private var status = "idle"

    init() {
        let argv = Array(ProcessInfo.processInfo.arguments.dropFirst())
        guard argv.contains("--model") else { return }      // opened by hand: just show the UI
        let docs = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        DispatchQueue.global(qos: .userInitiated).async {
            var code: Int32 = 0
            do {
                let args = try parseArgs(argv)
                let record = try runProtocol(args, base: docs)
                print("\(record["model"] ?? "?"): done")
            } catch let f as RunnerFailure {
                let timings = argv.firstIndex(of: "--timings").map { argv[$0 + 1] } ?? "timings.json"
                writeFailure(f, timings: timings, base: docs)
                FileHandle.standardError.write((f.description + "\n").data(using: .utf8)!)
                code = f.code
            } catch {
                code = 1
            }
            exit(code)
        }
    }

    var body: some Scene {
        WindowGroup {
            Text("IspBenchRunner — started by ios_harness/driver.py")
                .padding()
        }
    }
}
