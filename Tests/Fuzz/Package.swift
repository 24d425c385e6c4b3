// swift-tools-version:6.0
// The fuzzing package of pyzfs: a libFuzzer target over every parser of archive bytes, and a
// replay of the regression inputs and the seeds without libFuzzer. Not part of the main build.
//
//   make fuzz                      # builds the fuzzer, makes the seeds, fuzzes FUZZ_SECONDS (docs/testing.md)
//   swift build --package-path Tests/Fuzz --scratch-path Tests/Fuzz/.build/fuzzer -c release \
//       --product PyzfsFuzz -Xswiftc -sanitize=fuzzer,address
//   swift run --package-path Tests/Fuzz --scratch-path Tests/Fuzz/.build/replay PyzfsFuzzReplay
import PackageDescription

let package = Package(
    name: "PyzfsFuzz",
    dependencies: [
        .package(name: "pyzfs", path: "../.."),
    ],
    targets: [
        // The checks shared by the fuzzer and the replay: parse, assert invariants, cross-check with libzip.
        .target(name: "FuzzChecks", dependencies: [
            .product(name: "PyzfsCore", package: "pyzfs"),
            .product(name: "PyzfsZip", package: "pyzfs"),
            .product(name: "PyzfsInflate", package: "pyzfs"),
        ]),
        // The declaration of libFuzzer's driver, LLVMFuzzerRunDriver.
        .target(name: "CFuzzer"),
        // The libFuzzer target; links only with -sanitize=fuzzer (which brings libFuzzer).
        .executableTarget(name: "PyzfsFuzz", dependencies: ["FuzzChecks", "CFuzzer"]),
        // Runs files and directories through the same checks, without libFuzzer.
        .executableTarget(name: "PyzfsFuzzReplay", dependencies: ["FuzzChecks"]),
    ],
    swiftLanguageModes: [.v6]
)
