import Foundation
import PyzfsCore
import Testing

@Suite("ELF dependencies")
struct ELFTests {
    /// A shared library of this machine (every Linux has libc's siblings).
    static let library: String? = ["/usr/lib/x86_64-linux-gnu/libzip.so.4", "/lib/x86_64-linux-gnu/libzip.so.4",
                                   "/usr/lib/aarch64-linux-gnu/libzip.so.4"].first { FileManager.default.fileExists(atPath: $0) }

    @Test("DT_NEEDED of a real shared library", .enabled(if: library != nil, "libzip.so.4 is not installed"))
    func realLibrary() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.library!))
        let deps = try #require(data.withUnsafeBytes { ELFDependencies.parse($0) })
        #expect(deps.needed.contains("libc.so.6"))
        #expect(deps.needed.contains { $0.hasPrefix("libz.so") })
        #expect(deps.machineName == "x86_64" || deps.machineName == "aarch64")
        #expect(deps.glibcRequired != nil, "libzip requires versioned glibc symbols: \(deps.requiredVersions)")
    }

    @Test("truncated or garbled files give nil, never a crash")
    func hostile() throws {
        var bytes: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1] + [UInt8](repeating: 0xFF, count: 200)
        #expect(bytes.withUnsafeBytes { ELFDependencies.parse($0) } == nil)
        bytes = [0x7F, 0x45, 0x4C]
        #expect(bytes.withUnsafeBytes { ELFDependencies.parse($0) } == nil)
    }

    @Test("a real library truncated or mutated never crashes the parser", .enabled(if: library != nil, "libzip.so.4 is not installed"))
    func hostileReal() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.library!))
        var rng = SystemRandomNumberGenerator()
        for cut in [64, 100, 4096, data.count / 2] {
            _ = data.prefix(cut).withUnsafeBytes { ELFDependencies.parse($0) }
        }
        for _ in 0..<200 {
            var mutated = Array(data.prefix(16384))
            for _ in 0..<8 { mutated[Int.random(in: 0..<mutated.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            _ = mutated.withUnsafeBytes { ELFDependencies.parse($0) }
        }
    }
}
