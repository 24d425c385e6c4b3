import Foundation
import PyzfsCore
import PyzfsTestSupport
import Testing

@Suite("Member cache")
struct MemberCacheTests {
    func fill(_ byte: UInt8) -> (UnsafeMutableRawBufferPointer) throws(MemberError) -> Int {
        { buffer in for i in 0..<buffer.count { buffer[i] = byte }; return buffer.count }
    }

    @Test("stays within its budget, evicting the least recently used")
    func budgetAndLRU() throws {
        let cache = MemberCache(budget: 300)
        _ = try cache.buffer(for: 1, size: 100, load: fill(1))
        _ = try cache.buffer(for: 2, size: 100, load: fill(2))
        _ = try cache.buffer(for: 3, size: 100, load: fill(3))
        _ = try cache.buffer(for: 1, size: 100, load: fill(9))  // a hit: 1 becomes most recent
        _ = try cache.buffer(for: 4, size: 150, load: fill(4))  // evicts 2 and 3
        #expect(cache.contains(1) && cache.contains(4))
        #expect(!cache.contains(2) && !cache.contains(3))
        let s = cache.statistics
        #expect(s.bytesHeld == 250 && s.bytesHeld <= s.budget)
        #expect(s.hits == 1 && s.misses == 4 && s.evictions == 2)
        let one = try #require(try cache.buffer(for: 1, size: 100, load: fill(7)))
        #expect(one.contents.allSatisfy { $0 == 1 })
    }

    @Test("a member is loaded once when many threads ask together")
    func singleLoad() {
        let cache = MemberCache(budget: 1 << 20)
        let loads = Counter()
        let good = Counter()
        onThreads(16) { _ in
            let b = try? cache.buffer(for: 7, size: 4096) { (buffer) throws(MemberError) in
                loads.increment()
                usleep(50_000)
                for i in 0..<buffer.count { buffer[i] = 0xAB }
                return buffer.count
            }
            if b?.contents.allSatisfy({ $0 == 0xAB }) == true { good.increment() }
        }
        #expect(loads.value == 1)
        #expect(good.value == 16)
        #expect(cache.statistics.waits + cache.statistics.hits == 15)
    }

    @Test("a failed load keeps nothing and gives its bytes back to the budget")
    func failures() {
        let cache = MemberCache(budget: 1000)
        #expect(throws: MemberError.crcMismatch(expected: 1, actual: 2)) {
            try cache.buffer(for: 5, size: 10) { (_) throws(MemberError) -> Int in throw .crcMismatch(expected: 1, actual: 2) }
        }
        #expect(cache.statistics.bytesHeld == 0 && !cache.isPresentOrLoading(5))
    }

    @Test("a load that produces less than its reservation returns the rest to the budget")
    func shortLoad() throws {
        let cache = MemberCache(budget: 1 << 20)
        let b = try #require(try cache.buffer(for: 1, size: 200_000, populate: 4096) { (_) throws(MemberError) -> Int in 70_000 })
        #expect(b.count == 70_000 && cache.statistics.bytesHeld == 70_000)
    }

    @Test("a caller that may not wait is told so instead of waiting for another load or for room")
    func mayNotWait() throws {
        let cache = MemberCache(budget: 150)
        let started = Gate(), release = Gate()
        let loader = Thread {
            _ = try? cache.buffer(for: 1, size: 100) { (_) throws(MemberError) -> Int in
                started.open()
                release.waitUntilOpen()
                return 100
            }
        }
        loader.start()
        started.waitUntilOpen()
        // The same key is being loaded; another key has no room while it loads.
        #expect(try cache.buffer(for: 1, size: 100, mayWait: false, load: fill(2)) == nil)
        #expect(try cache.buffer(for: 2, size: 100, mayWait: false, load: fill(2)) == nil)
        // Room that evicting nothing can make is still fine without waiting.
        #expect(try cache.buffer(for: 3, size: 50, mayWait: false, load: fill(3)) != nil)
        release.open()
        let one = try #require(try cache.buffer(for: 1, size: 100, load: fill(9)))
        #expect(one.count == 100 && cache.statistics.waits + cache.statistics.hits >= 1)
    }

    @Test("members being loaded count against the budget; others wait for room")
    func loadingCountsAgainstBudget() {
        let cache = MemberCache(budget: 200)
        let peak = Counter()
        let current = Counter()
        onThreads(8) { k in
            _ = try? cache.buffer(for: k, size: 100) { (buffer) throws(MemberError) in
                current.increment()
                peak.max(current.value)
                usleep(20_000)
                current.decrement()
                return buffer.count
            }
        }
        #expect(peak.value == 2)
        #expect(cache.statistics.bytesHeld <= 200)
        #expect(cache.statistics.misses == 8)
    }
}
