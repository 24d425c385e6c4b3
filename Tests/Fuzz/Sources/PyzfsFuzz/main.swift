// The libFuzzer target. Build with -sanitize=fuzzer,address (see `make fuzz`, docs/testing.md):
// libFuzzer's driver runs, calling `fuzzOne` for each input; a violated invariant traps, and
// libFuzzer saves the input as a crash. Any libFuzzer flag works: PyzfsFuzz -help=1.
import CFuzzer
import FuzzChecks
#if canImport(Glibc)
import Glibc
#endif

/// One checker for the process: libFuzzer calls back from one thread.
nonisolated(unsafe) private var checker: Checker? = nil

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    if checker == nil {
        checker = Checker()
        atexit { checker?.removeScratchFile() }
    }
    let input = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    let violations = checker!.check(input)
    if !violations.isEmpty {
        checker!.removeScratchFile()
        fatalError("pyzfs fuzz invariant violated:\n" + violations.prefix(10).map { "  \($0)" }.joined(separator: "\n"))
    }
    return 0
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) })
