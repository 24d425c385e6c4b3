import Glibc
import PyzfsCore
import Testing

/// The one way pyzfs starts helpers, and the one decoder of wait statuses.
@Suite("Processes")
struct ProcessesTests {
    @Test("exit codes, signals and captured output, from real children")
    func realChildren() throws {
        let exited = try #require(Subprocess.run(["/bin/sh", "-c", "exit 3"])?.status)
        #expect(exited.exitCode == 3 && exited.signal == nil && exited.shellCode == 3 && "\(exited)" == "exited with 3")
        let killed = try #require(Subprocess.run(["sh", "-c", "kill -TERM $$"])?.status)  // found on PATH
        #expect(killed.exitCode == nil && killed.signal == SIGTERM && killed.shellCode == 128 + SIGTERM, "\(killed)")
        let echoed = try #require(Subprocess.run(["sh", "-c", "printf 'a b'; echo err >&2"], captureOutput: true, quiet: true))
        #expect(echoed.output == Array("a b".utf8) && echoed.status?.exitCode == 0)
        #expect(Subprocess.run(["/nonexistent/program"]) == nil)
        #expect(WaitStatus.wait(for: getpid()) == nil, "not a child")
    }
}
