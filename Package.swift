// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "pyzfs",
    products: [
        .executable(name: "pyzfs", targets: ["pyzfs"]),
        // For the fuzzing package in Tests/Fuzz; not a supported API.
        .library(name: "PyzfsCore", targets: ["PyzfsCore"]),
        .library(name: "PyzfsZip", targets: ["PyzfsZip"]),
        .library(name: "PyzfsInflate", targets: ["PyzfsInflate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C libraries, each reached from exactly one Swift module.
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CZip", pkgConfig: "libzip", providers: [.apt(["libzip-dev"])]),
        .systemLibrary(name: "CDeflate", pkgConfig: "libdeflate", providers: [.apt(["libdeflate-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // Linux calls Swift's Glibc module lacks (namespaces, SCM_RIGHTS, prctl), for the launcher.
        .target(name: "CLinux"),

        // The FUSE-free core: archive index, tree, cache, zipapp knowledge.
        .target(name: "PyzfsCore", dependencies: [.product(name: "Logging", package: "swift-log")]),
        // libzip: decompression of any method it supports, and the reference reader.
        .target(name: "PyzfsZip", dependencies: ["PyzfsCore", "CZip"]),
        // libdeflate: whole-buffer inflate and CRC-32; zlib: inflate resumable at checkpoints.
        .target(name: "PyzfsInflate", dependencies: ["PyzfsCore", "CDeflate", "CZlib"]),
        // libcrypto: SHA-256 (the sha256= pin, the extract cache's key); docs/decisions/0006.
        .target(name: "PyzfsDigest", dependencies: ["CCrypto"]),
        // libfuse3 low-level API.
        .target(name: "PyzfsFUSE", dependencies: [
            "PyzfsCore", "CFuse3", .product(name: "Logging", package: "swift-log"),
        ]),
        // zipapp, shiv and pex layouts, the bootstrap that starts them in place, inspect's wheel and
        // ABI checks: pure logic over the core's tree, tested against extracted trees without FUSE.
        .target(name: "PyzfsApps", dependencies: ["PyzfsCore"]),
        // Composing the layers into a server (mount), and pyzfs run: launcher, supervisor, extract
        // cache, scratch-space and namespace decisions.
        .target(name: "PyzfsRun", dependencies: [
            "PyzfsCore", "PyzfsApps", "PyzfsZip", "PyzfsInflate", "PyzfsFUSE", "PyzfsDigest", "CLinux",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The command line only: parse, call the libraries, map failures to exit codes.
        .executableTarget(name: "pyzfs", dependencies: [
            "PyzfsCore", "PyzfsApps", "PyzfsRun", "PyzfsFUSE", "PyzfsZip",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], plugins: ["PyzfsVersion"]),
        // BuildVersion for pyzfs --version: VERSION (the one place the version is defined) and the git commit.
        .plugin(name: "PyzfsVersion", capability: .buildTool()),

        // Helpers shared by the test targets: a reference zip writer, fixtures, real mounts.
        .target(name: "PyzfsTestSupport", dependencies: ["PyzfsCore"], path: "Tests/PyzfsTestSupport"),
        .testTarget(name: "PyzfsCoreTests", dependencies: ["PyzfsCore", "PyzfsTestSupport"]),
        // With the FUSE handlers too: the field-mutation sweep serves each mutant through them.
        .testTarget(name: "PyzfsZipTests", dependencies: [
            "PyzfsCore", "PyzfsZip", "PyzfsInflate", "PyzfsFUSE", "CFuse3", "PyzfsTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "PyzfsFUSETests", dependencies: ["PyzfsCore", "PyzfsFUSE", "CFuse3", "PyzfsTestSupport"]),
        .testTarget(name: "PyzfsAppsTests", dependencies: ["PyzfsCore", "PyzfsApps", "PyzfsTestSupport"]),
        .testTarget(name: "PyzfsDigestTests", dependencies: ["PyzfsCore", "PyzfsDigest", "PyzfsRun", "PyzfsTestSupport"]),
        .testTarget(name: "PyzfsRunTests", dependencies: ["PyzfsCore", "PyzfsRun", "PyzfsTestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: ["PyzfsCore", "PyzfsTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
