/// What a Python interpreter can load (the facts `pyzfs inspect` gathers from it).
public struct InterpreterFacts: Codable, Sendable, Equatable {
    public var version: String        // "3.11.7"
    public var implementation: String // "cpython"
    public var cacheTag: String?      // "cpython-311"
    public var soabi: String?         // "cpython-311-x86_64-linux-gnu"
    public var machine: String        // "x86_64"
    public var libc: String           // "glibc" or "musl" (or "" when unknown)
    public var libcVersion: String    // "2.36"

    public init(version: String, implementation: String, cacheTag: String?, soabi: String?,
                machine: String, libc: String, libcVersion: String) {
        self.version = version
        self.implementation = implementation
        self.cacheTag = cacheTag
        self.soabi = soabi
        self.machine = machine
        self.libc = libc
        self.libcVersion = libcVersion
    }

    var minor: (Int, Int)? {
        let p = version.split(separator: ".").compactMap { Int($0) }
        return p.count >= 2 ? (p[0], p[1]) : nil
    }

    var libcPair: (Int, Int)? {
        let p = libcVersion.split(separator: ".").compactMap { Int($0) }
        return p.count >= 2 ? (p[0], p[1]) : nil
    }

    /// "3.11 on x86_64 with glibc 2.36".
    public var summary: String {
        let v = minor.map { "\($0.0).\($0.1)" } ?? version
        return "\(v) on \(machine)\(libc.isEmpty ? "" : " with \(libc) \(libcVersion)")"
    }
}

/// The ABI an extension module's file name claims (PEP 3149, PEP 384).
public struct ExtensionTag: Equatable, Sendable {
    /// "cpython-311" style tag, "abi3", or nil for an untagged `.so`.
    public var abi: String?
    /// "x86_64-linux-gnu" style platform triplet, if the name has one.
    public var platform: String?

    /// Parses `mod.cpython-311-x86_64-linux-gnu.so`, `mod.abi3.so`, `mod.so`.
    public init?(fileName: String) {
        guard fileName.hasSuffix(".so") else { return nil }
        let parts = fileName.dropLast(3).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2 else { abi = nil; platform = nil; return }
        let tag = String(parts[parts.count - 1])
        if tag == "abi3" { abi = "abi3"; platform = nil; return }
        if tag.hasPrefix("cpython-") || tag.hasPrefix("pypy") {
            let fields = tag.split(separator: "-", maxSplits: 2)
            abi = fields.prefix(2).joined(separator: "-")
            platform = fields.count > 2 ? String(fields[2]) : nil
            return
        }
        abi = nil
        platform = nil
    }
}

/// A wheel tag such as `cp311-cp311-manylinux_2_17_x86_64` (PEP 425, PEP 600, PEP 656).
public struct WheelTag: Equatable, Sendable, CustomStringConvertible {
    public var python: String
    public var abi: String
    public var platform: String

    public init?(_ text: String) {
        let f = text.split(separator: "-")
        guard f.count == 3 else { return nil }
        python = String(f[0]); abi = String(f[1]); platform = String(f[2])
    }

    public var description: String { "\(python)-\(abi)-\(platform)" }

    /// The glibc a manylinux platform needs: `manylinux_2_28_x86_64` -> (2, 28); the legacy
    /// aliases manylinux1 (2.5), manylinux2010 (2.12), manylinux2014 (2.17).
    public var glibc: (Int, Int)? {
        if platform.hasPrefix("manylinux1_") { return (2, 5) }
        if platform.hasPrefix("manylinux2010_") { return (2, 12) }
        if platform.hasPrefix("manylinux2014_") { return (2, 17) }
        guard platform.hasPrefix("manylinux_") else { return nil }
        let f = platform.dropFirst("manylinux_".count).split(separator: "_")
        guard f.count >= 2, let a = Int(f[0]), let b = Int(f[1]) else { return nil }
        return (a, b)
    }

    public var isMusl: Bool { platform.hasPrefix("musllinux_") }

    /// The machine a platform tag names (`x86_64`, `aarch64`), or nil for `any`.
    public var machine: String? {
        guard platform != "any" else { return nil }
        for m in ["x86_64", "aarch64", "i686", "armv7l", "ppc64le", "s390x", "riscv64"] where platform.hasSuffix("_" + m) {
            return m
        }
        return nil
    }
}

/// Why a native extension or a wheel cannot load in an interpreter; nil when it can.
public enum Compatibility {
    /// Problems of one extension module, from its file name and ELF facts.
    public static func problems(extensionNamed name: String, elf: ELFDependencies?, for target: InterpreterFacts) -> [String] {
        var out: [String] = []
        if let tag = ExtensionTag(fileName: name), let abi = tag.abi, abi != "abi3" {
            if let soabi = target.soabi, !soabi.hasPrefix(abi) {
                out.append("built for \(abi), the interpreter is \(target.implementation) \(target.minor.map { "\($0.0).\($0.1)" } ?? target.version)")
            }
            if let platform = tag.platform, let soabi = target.soabi, soabi.split(separator: "-", maxSplits: 2).count == 3,
               !soabi.hasSuffix(platform) {
                out.append("built for \(platform), the interpreter's is \(soabi.split(separator: "-", maxSplits: 2)[2])")
            }
        }
        if let elf {
            if elf.machine != 0 && elf.machineName != target.machine {
                out.append("machine code for \(elf.machineName), the interpreter runs on \(target.machine)")
            }
            if let need = elf.glibcRequired, target.libc == "glibc", let have = target.libcPair, need > have {
                out.append("needs glibc \(need.0).\(need.1), the system has \(have.0).\(have.1)")
            }
            if target.libc == "musl" && !elf.requiredVersions.filter({ $0.hasPrefix("GLIBC_") }).isEmpty {
                out.append("linked against glibc, the system's libc is musl")
            }
        }
        return out
    }

    /// Problems of a wheel tag set: none when any tag fits.
    public static func problems(wheelTags tags: [WheelTag], for target: InterpreterFacts) -> [String] {
        guard !tags.isEmpty else { return [] }
        var reasons: [String] = []
        for tag in tags {
            var r: [String] = []
            if let m = tag.machine, m != target.machine { r.append("for \(m)") }
            if let g = tag.glibc {
                if target.libc == "musl" { r.append("for glibc") }
                else if let have = target.libcPair, g > have { r.append("needs glibc \(g.0).\(g.1)") }
            }
            if tag.isMusl && target.libc == "glibc" { r.append("for musl") }
            if tag.python.hasPrefix("cp"), tag.abi != "abi3", tag.abi != "none",
               let minor = target.minor, tag.python != "cp\(minor.0)\(minor.1)" {
                r.append("for \(tag.python)")
            }
            if tag.abi == "abi3", tag.python.hasPrefix("cp3"), let v = Int(tag.python.dropFirst(3)), let minor = target.minor,
               minor.0 == 3 && minor.1 < v {
                r.append("needs Python 3.\(v)+")
            }
            if r.isEmpty { return [] }
            reasons.append("\(tag): \(r.joined(separator: ", "))")
        }
        return reasons
    }
}

extension InterpreterFacts {
    /// The wheel tags this interpreter loads, best first, as `packaging.tags.sys_tags()` lists
    /// them for CPython on Linux (pip and pex choose among a project's wheels by this order):
    /// its own ABI, abi3, none, older abi3s; then pure `py` tags; platforms from the newest
    /// manylinux its glibc allows down to manylinux1 (or musllinux for musl, 1.2 when its
    /// version is unknown), then `linux_MACHINE`.
    public var supportedWheelTags: [String] {
        guard let (major, minor) = minor else { return [] }
        var platforms: [String] = []
        if libc == "glibc", let (_, glibcMinor) = libcPair {
            // packaging's floor: glibc 2.5 on x86, 2.17 elsewhere.
            let lowest = ["x86_64", "i686"].contains(machine) ? 5 : 17
            for m in stride(from: glibcMinor, through: lowest, by: -1) {
                platforms.append("manylinux_2_\(m)_\(machine)")
                if let legacy = [17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"][m] { platforms.append("\(legacy)_\(machine)") }
            }
        } else if libc == "musl" {
            let musl = libcPair ?? (1, 2)
            for m in stride(from: musl.1, through: 0, by: -1) { platforms.append("musllinux_\(musl.0)_\(m)_\(machine)") }
        }
        platforms.append("linux_\(machine)")

        var tags: [String] = []
        func add(_ python: String, _ abi: String, _ platforms: [String]) { tags += platforms.map { "\(python)-\(abi)-\($0)" } }
        let pythons = ["py\(major)\(minor)", "py\(major)"] + stride(from: minor - 1, through: 0, by: -1).map { "py\(major)\($0)" }
        if implementation == "cpython" {
            let own = "cp\(major)\(minor)"
            // The ABI with its flags: cpython-313t gives cp313t, cpython-311d cp311d.
            let abi = soabi?.split(separator: "-").dropFirst().first.map { "cp\($0)" } ?? own
            let abi3 = major == 3 && minor >= 2 && !abi.hasSuffix("t")
            add(own, abi, platforms)
            if abi3 { add(own, "abi3", platforms) }
            add(own, "none", platforms)
            if abi3 { for m in stride(from: minor - 1, through: 2, by: -1) { add("cp\(major)\(m)", "abi3", platforms) } }
            for python in pythons { add(python, "none", platforms) }
            tags.append("\(own)-none-any")
        } else {
            for python in pythons { add(python, "none", platforms) }
        }
        for python in pythons { tags.append("\(python)-none-any") }
        return tags
    }

    /// Which of a project's wheels this interpreter would use, as pex does at run time: the one
    /// with the best-ranked tag (`supportedWheelTags`); nil when none loads. Each wheel is given
    /// by its tags as in its file name, dotted sets allowed (`cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64`).
    public func preferredWheel(_ wheels: [String]) -> Int? {
        var rank: [String: Int] = [:]
        for (i, tag) in supportedWheelTags.enumerated() where rank[tag] == nil { rank[tag] = i }
        func best(_ tags: String) -> Int? {
            let parts = tags.split(separator: "-").map { $0.split(separator: ".") }
            guard parts.count == 3 else { return nil }
            var found: Int? = nil
            for p in parts[0] { for a in parts[1] { for f in parts[2] {
                if let r = rank["\(p)-\(a)-\(f)"], r < found ?? .max { found = r }
            } } }
            return found
        }
        let ranked = wheels.enumerated().compactMap { w in best(w.element).map { (w.offset, $0) } }
        return ranked.min { $0.1 < $1.1 }?.0
    }
}

extension Compatibility {
    /// The oldest CPython that an abi3 extension module of a wheel with these tags loads in: the
    /// lowest `cp3X` among its `abi3` tags (`cp37-abi3-manylinux_2_17_x86_64` gives 3.7); nil
    /// when no tag is abi3 (the file's own name then says its ABI).
    public static func abi3Minimum(wheelTags tags: [WheelTag]) -> (Int, Int)? {
        tags.filter { $0.abi == "abi3" }.flatMap { $0.python.split(separator: ".") }
            .compactMap { $0.hasPrefix("cp3") ? Int($0.dropFirst(3)).map { (3, $0) } : nil }
            .min { $0 < $1 }
    }

    /// Problems of an abi3 extension module (`_rust.abi3.so`) of a distribution whose wheel has
    /// `tags`: the stable ABI of the newest Python its tags allow is the one it was built for,
    /// so an interpreter older than `abi3Minimum` cannot load it. None for other interpreters
    /// or when the tags say nothing.
    public static func problems(abi3ExtensionOf tags: [WheelTag], for target: InterpreterFacts) -> [String] {
        guard target.implementation == "cpython", let have = target.minor, let need = abi3Minimum(wheelTags: tags), have < need else { return [] }
        let named = tags.filter { $0.abi == "abi3" }.map(\.description).joined(separator: ", ")
        return ["an abi3 extension of a wheel tagged \(named): needs Python \(need.0).\(need.1)+, the interpreter is \(have.0).\(have.1)"]
    }
}
