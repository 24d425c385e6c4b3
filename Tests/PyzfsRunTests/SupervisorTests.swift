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
