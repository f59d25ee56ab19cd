// swift-tools-version:5.9
// RunnerCore (the protocol over Core ML) and the macOS command line isp-coreml-runner. The iOS app (App/) is
// generated with XcodeGen from project.yml. NOT built here: no Swift toolchain or Apple SDK on this machine.
import PackageDescription

let package = Package(
    name: "IspBenchRunner",
    platforms: [.macOS(.v13), .iOS(.v16)],
    products: [
        .library(name: "RunnerCore", targets: ["RunnerCore"]),
        .executable(name: "isp-coreml-runner", targets: ["isp-coreml-runner"]),
    ],
    targets: [
        .target(name: "RunnerCore", path: "Sources/RunnerCore"),
        .executableTarget(name: "isp-coreml-runner", dependencies: ["RunnerCore"], path: "Sources/isp-coreml-runner"),
    ]
)
