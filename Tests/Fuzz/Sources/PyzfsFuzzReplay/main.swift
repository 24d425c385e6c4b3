// Runs files through the fuzzer's checks without libFuzzer: every regression input in
// Tests/fixtures/fuzz-regressions and the seed corpus by default, or the files and directories
// given as arguments. Prints each violated invariant; exits 1 if there was one. A crash inside
// pyzfs ends the process, naming the input on stderr; so does an input that takes longer than
// PYZFS_FUZZ_TIMEOUT seconds (default 30). PYZFS_FUZZ_RELAX skips checks, as in the fuzzer.
//
//   swift run --package-path Tests/Fuzz --scratch-path Tests/Fuzz/.build/replay PyzfsFuzzReplay [PATH...]
import FuzzChecks
import Foundation

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
var arguments = Array(CommandLine.arguments.dropFirst())
let verbose = arguments.contains("-v")
arguments.removeAll { $0 == "-v" }
let defaults = [root.appendingPathComponent("Tests/fixtures/fuzz-regressions").path,
                root.appendingPathComponent("Tests/Fuzz/.build/seeds").path]
let paths = arguments.isEmpty ? defaults.filter { FileManager.default.fileExists(atPath: $0) } : arguments

var files: [String] = []
for path in paths {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        FileHandle.standardError.write("PyzfsFuzzReplay: no such file or directory: \(path)\n".data(using: .utf8)!)
        exit(2)
    }
    if isDirectory.boolValue {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        files += names.filter { !$0.hasPrefix(".") && !$0.hasSuffix(".md") }.sorted().map { path + "/" + $0 }
    } else {
        files.append(path)
    }
}

// On a crash (a Swift trap is SIGILL or SIGTRAP), say which input it was.
nonisolated(unsafe) let current = UnsafeMutablePointer<CChar>.allocate(capacity: 4096)
current[0] = 0
for sig in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE] {
    signal(sig) { sig in
        let prefix = "PyzfsFuzzReplay: crashed on "
        _ = prefix.withCString { write(2, $0, strlen($0)) }
        _ = write(2, current, strlen(current))
        _ = write(2, "\n", 1)
        signal(sig, SIG_DFL)
        raise(sig)
    }
}

// A hang is a failure too: each input gets PYZFS_FUZZ_TIMEOUT seconds (default 30).
signal(SIGALRM) { _ in
    let prefix = "PyzfsFuzzReplay: timed out on "
    _ = prefix.withCString { write(2, $0, strlen($0)) }
    _ = write(2, current, strlen(current))
    _ = write(2, "\n", 1)
    _exit(1)
}
let timeout = UInt32(ProcessInfo.processInfo.environment["PYZFS_FUZZ_TIMEOUT"] ?? "") ?? 30

let checker = Checker()  // PYZFS_FUZZ_RELAX applies here too
var failed = 0
for file in files {
    guard let data = FileManager.default.contents(atPath: file) else { continue }
    if verbose { print("checking \(file)") }
    fflush(nil)
    _ = file.withCString { strncpy(current, $0, 4095) }
    alarm(timeout)
    let violations = checker.check(Array(data))
    alarm(0)
    if !violations.isEmpty {
        failed += 1
        print("FAIL \(file)")
        for v in violations.prefix(20) { print("  \(v)") }
    }
}
checker.removeScratchFile()
print("\(files.count - failed) passed, \(failed) failed")
print(checker.statistics.description)
exit(failed == 0 ? 0 : 1)
