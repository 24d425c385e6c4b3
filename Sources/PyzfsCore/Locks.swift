#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with a condition variable, for state that threads wait on.
/// (Synchronization.Mutex has no condition variable.)
public final class ConditionLock: @unchecked Sendable {
    // @unchecked: the pthread objects are only touched through the calls below.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
    /// Takes the lock only if that needs no wait (for the request loop, which must never wait).
    public func tryLock() -> Bool { pthread_mutex_trylock(mutex) == 0 }
    /// Waits for `broadcast`; the lock must be held.
    public func wait() { pthread_cond_wait(condition, mutex) }
    public func broadcast() { pthread_cond_broadcast(condition) }

    @inline(__always)
    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// Nanoseconds of a monotonic clock.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// `Array.withUnsafeBytes` with a typed-throwing body (the standard one rethrows `any Error`).
@inline(__always)
public func withBytes<R, E: Error>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    var result: Result<R, E>? = nil
    array.withUnsafeBytes { p in result = Result { () throws(E) -> R in try body(p) } }
    return try result!.get()
}

/// `Array.withUnsafeMutableBytes` with a typed-throwing body.
@inline(__always)
public func withMutableBytes<R, E: Error>(_ array: inout [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
    var result: Result<R, E>? = nil
    array.withUnsafeMutableBytes { p in result = Result { () throws(E) -> R in try body(p) } }
    return try result!.get()
}
