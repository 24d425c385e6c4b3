import Glibc
import PyzfsCore
import PyzfsRun
import PyzfsTestSupport
import Testing

/// What the supervisor of `pyzfs run` decides from /proc, checked with /bin/sh children.
@Suite("Supervisor without FUSE")
struct SupervisorTests {
    @Test("a child is listed from /proc while it runs and not after it is reaped")
    func listedChildren() throws {
        guard let before = Supervisor.listedChildren() else {
            return  // no /proc/self/task/*/children (CONFIG_PROC_CHILDREN): nothing to check
        }
        let child = try #require(Subprocess.start(["/bin/sh", "-c", "exec sleep 600"]))
        #expect(Supervisor.listedChildren()?.contains(child.pid) == true)
        #expect(!before.contains(child.pid))
        kill(child.pid, SIGKILL)
        let status = child.finish().status
        #expect(status?.signal == SIGKILL)
        #expect(Supervisor.listedChildren()?.contains(child.pid) == false)
    }
}

@Suite("warm server keep times")
struct KeepTimeTests {
    @Test("seconds and s, m, h; anything else refused", arguments: [
        ("0", 0.0), ("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("0.25", 0.25), ("365d", nil), ("", nil), ("m", nil),
        ("-1", nil), ("1e3", nil), ("5x", nil), (" 5", nil), ("inf", nil), ("nan", nil), ("9999999h", nil), ("١٢", nil),
    ] as [(String, Double?)])
    func parse(text: String, seconds: Double?) {
        #expect(WarmServers.parseKeep(text) == seconds, "\(text)")
    }
}
