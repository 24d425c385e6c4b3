#if canImport(Glibc)
import Glibc
#endif

/// How much memory this process may use: the cgroup limit when one is set, else the machine's RAM.
public enum MemoryLimits {
    /// The default decompression budget: an eighth of the usable memory, between 64 MiB and 1 GiB.
    public static func defaultCacheSize() -> UInt64 {
        let usable = usableMemory() ?? (4 << 30)
        return min(1 << 30, max(64 << 20, usable / 8))
    }

    /// The smaller of the cgroup v2 (or v1) memory limit and MemTotal.
    public static func usableMemory() -> UInt64? {
        var best = physicalMemory()
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = readSmallFile(path), let v = UInt64(text.trimmingCharacters(in: " \n")), v > 0 {
                best = min(best ?? v, v)
            }
        }
        return best
    }

    static func physicalMemory() -> UInt64? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, size > 0 else { return nil }
        return UInt64(pages) * UInt64(size)
    }
}

extension MemoryLimits {
    /// Makes glibc map every allocation of 128 KiB or more on its own, so freed scratch buffers go
    /// back to the system at once (its default threshold grows with use, and freed blocks then
    /// stay in the heap). Looked up at run time: Swift's Glibc module does not export mallopt.
    public static func returnLargeAllocationsToTheSystem() {
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(sym, to: Mallopt.self)
        _ = mallopt(-3, 128 << 10)  // M_MMAP_THRESHOLD (malloc.h)
    }
}

/// The contents of a small text file (procfs, sysfs), or nil.
public func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return String(decoding: readAll(fd, limit: limit), as: UTF8.self)
}

extension String {
    /// Trims characters in `set` from both ends.
    public func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
