import Foundation
import PyzfsCore

/// Runs `body` on `count` threads of their own at once and waits for all.
public func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        Thread { body(i); group.leave() }.start()
    }
    group.wait()
}

/// A one-way latch: `waitUntilOpen` returns once `open` was called.
public final class Gate: @unchecked Sendable {
    // @unchecked: `isOpen` is guarded by `lock`.
    private let lock = ConditionLock()
    private var isOpen = false
    public init() {}
    public func open() { lock.withLock { isOpen = true; lock.broadcast() } }
    public func waitUntilOpen() {
        lock.lock()
        while !isOpen { lock.wait() }
        lock.unlock()
    }
}

/// A counter several threads change.
public final class Counter: @unchecked Sendable {
    // @unchecked: `n` is guarded by `lock`.
    private let lock = NSLock()
    private var n = 0
    public init() {}
    public var value: Int { lock.withLock { n } }
    public func increment() { lock.withLock { n += 1 } }
    public func decrement() { lock.withLock { n -= 1 } }
    /// Raises the value to `v` if it is lower.
    public func max(_ v: Int) { lock.withLock { n = Swift.max(n, v) } }
}
