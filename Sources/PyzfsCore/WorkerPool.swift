#if canImport(Glibc)
import Glibc
#endif

/// A fixed set of threads running jobs in order of submission. Jobs must not throw; they may
/// block (on the archive, on a decompression another job runs).
public final class WorkerPool: @unchecked Sendable {
    // @unchecked: `jobs` and `stopping` are guarded by `lock`.
    public typealias Job = @Sendable () -> Void
    private let lock = ConditionLock()
    private var jobs: [Job] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    public let name: String

    /// Niceness added to the pool's threads (background work yields to the app and the request loop).
    let niceness: Int32

    /// Starts `count` threads.
    public init(name: String, count: Int, niceness: Int32 = 0) {
        self.name = name
        self.niceness = niceness
        for _ in 0..<max(1, count) {
            let box = Unmanaged.passRetained(self).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { arg in
                let pool = Unmanaged<WorkerPool>.fromOpaque(arg!).takeRetainedValue()
                pool.work()
                return nil
            }, box)
            if rc == 0 { threads.append(thread) } else { Unmanaged<WorkerPool>.fromOpaque(box).release() }
        }
    }

    /// Queues a job.
    public func submit(_ job: @escaping Job) {
        lock.withLock {
            jobs.append(job)
            lock.broadcast()
        }
    }

    /// Lets the threads finish the queued jobs and waits for them.
    public func shutdown() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        for t in threads { pthread_join(t, nil) }
        threads = []
    }

    private func work() {
        if niceness != 0 {
            // Linux applies a nice value to one thread when given its thread id.
            if let gettid = ThreadID.function {
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(gettid()), niceness)
            }
        }
        while true {
            lock.lock()
            while head == jobs.count && !stopping { lock.wait() }
            if head == jobs.count {
                lock.unlock()
                return
            }
            let job = jobs[head]
            head += 1
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            lock.unlock()
            job()
        }
    }

    /// The number of online CPUs.
    public static var processors: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// glibc's `gettid` (a GNU extension Swift's Glibc module does not export).
enum ThreadID {
    typealias Function = @convention(c) () -> pid_t
    static let function: Function? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gettid").map {
        unsafeBitCast($0, to: Function.self)
    }
}
