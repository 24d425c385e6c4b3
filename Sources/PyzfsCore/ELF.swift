/// The dynamic-linking facts of an ELF shared object that tell which other files it loads:
/// DT_NEEDED names and the DT_RUNPATH/DT_RPATH search path (System V gABI, "Dynamic Section").
public struct ELFDependencies: Equatable, Sendable {
    public var needed: [String] = []
    /// Directories of DT_RUNPATH, else DT_RPATH, split on ':' (may contain `$ORIGIN`).
    public var searchPath: [String] = []
    /// The ELF `e_machine` (62 x86-64, 183 AArch64, ...).
    public var machine: UInt16 = 0
    /// Symbol versions required from other objects (DT_VERNEED), such as `GLIBC_2.17`.
    public var requiredVersions: [String] = []

    public init() {}

    /// The machine as Python's `platform.machine()` names it.
    public var machineName: String {
        switch machine {
        case 62: return "x86_64"
        case 183: return "aarch64"
        case 3: return "i686"
        case 40: return "armv7l"
        case 21: return "ppc64le"
        case 22: return "s390x"
        case 243: return "riscv64"
        default: return "machine \(machine)"
        }
    }

    /// The highest `GLIBC_x.y` version required, as (x, y).
    public var glibcRequired: (Int, Int)? {
        var best: (Int, Int)? = nil
        for v in requiredVersions where v.hasPrefix("GLIBC_") {
            let parts = v.dropFirst(6).split(separator: ".").compactMap { Int($0) }
            guard parts.count >= 2 else { continue }
            if best == nil || (parts[0], parts[1]) > best! { best = (parts[0], parts[1]) }
        }
        return best
    }

    /// Whether `header` starts like an ELF file.
    public static func isELF(_ header: UnsafeRawBufferPointer) -> Bool {
        header.count >= 4 && header[0] == 0x7F && header[1] == 0x45 && header[2] == 0x4C && header[3] == 0x46
    }

    /// Parses a whole little-endian ELF64 or ELF32 file. Returns nil for anything else or for
    /// structures that point outside the file; never traps on hostile input.
    public static func parse(_ file: UnsafeRawBufferPointer) -> ELFDependencies? {
        guard isELF(file), file.count >= 52, file[5] == 1 else { return nil }  // ELFDATA2LSB
        let is64 = file[4] == 2
        guard is64 || file[4] == 1 else { return nil }
        func u16(_ o: Int) -> UInt64? { o >= 0 && o + 2 <= file.count ? UInt64(le16(file, o)) : nil }
        func u32(_ o: Int) -> UInt64? { o >= 0 && o + 4 <= file.count ? UInt64(le32(file, o)) : nil }
        func u64(_ o: Int) -> UInt64? { o >= 0 && o + 8 <= file.count ? le64(file, o) : nil }
        func word(_ o: Int) -> UInt64? { is64 ? u64(o) : u32(o) }

        guard let phoff = is64 ? u64(32) : u32(28),
              let phentsize = u16(is64 ? 54 : 42), let phnum = u16(is64 ? 56 : 44),
              phentsize >= (is64 ? 56 : 32), phnum <= 4096, phoff < UInt64(file.count) else { return nil }
        var loads: [(vaddr: UInt64, offset: UInt64, size: UInt64)] = []
        var dynamic: (offset: UInt64, size: UInt64)? = nil
        for i in 0..<Int(phnum) {
            let p = Int(phoff) + i * Int(phentsize)
            guard let type = u32(p) else { return nil }
            let offset = is64 ? u64(p + 8) : u32(p + 4)
            let vaddr = is64 ? u64(p + 16) : u32(p + 8)
            let filesz = is64 ? u64(p + 32) : u32(p + 16)
            guard let offset, let vaddr, let filesz else { return nil }
            if type == 1 { loads.append((vaddr, offset, filesz)) }          // PT_LOAD
            if type == 2 { dynamic = (offset, filesz) }                    // PT_DYNAMIC
        }
        guard let dynamic, dynamic.offset < UInt64(file.count) else { return nil }
        func fileOffset(ofAddress a: UInt64) -> Int? {
            for l in loads where a >= l.vaddr && a - l.vaddr < l.size {
                let o = l.offset &+ (a - l.vaddr)
                return o < UInt64(file.count) ? Int(o) : nil
            }
            return nil
        }
        let entrySize = is64 ? 16 : 8
        var needed: [UInt64] = [], runpath: UInt64? = nil, rpath: UInt64? = nil
        var strtab: UInt64? = nil, strsz: UInt64 = 0
        var verneed: UInt64? = nil, verneedCount: UInt64 = 0
        let count = Int(min(dynamic.size, UInt64(file.count))) / entrySize
        for i in 0..<count {
            let e = Int(dynamic.offset) + i * entrySize
            guard let tag = word(e), let value = word(e + entrySize / 2) else { break }
            switch tag {
            case 0: break                      // DT_NULL
            case 1: needed.append(value)       // DT_NEEDED
            case 5: strtab = value             // DT_STRTAB
            case 10: strsz = value             // DT_STRSZ
            case 15: rpath = value             // DT_RPATH
            case 29: runpath = value           // DT_RUNPATH
            case 0x6fff_fffe: verneed = value  // DT_VERNEED
            case 0x6fff_ffff: verneedCount = value  // DT_VERNEEDNUM
            default: continue
            }
            if tag == 0 { break }
        }
        guard let strtab, let table = fileOffset(ofAddress: strtab) else { return nil }
        let tableEnd = min(file.count, strsz > 0 ? table + Int(min(strsz, UInt64(file.count))) : file.count)
        func string(_ offset: UInt64) -> String? {
            guard offset < UInt64(tableEnd - table) else { return nil }
            var end = table + Int(offset)
            let start = end
            while end < tableEnd && file[end] != 0 { end += 1 }
            guard end < tableEnd || end == tableEnd, end - start <= 4096 else { return nil }
            return String(decoding: UnsafeRawBufferPointer(rebasing: file[start..<end]), as: UTF8.self)
        }
        var result = ELFDependencies()
        result.machine = UInt16(u16(18) ?? 0)
        result.needed = needed.compactMap(string)
        // Verneed entries and their aux entries, 16 bytes each in both classes; bounded loops.
        if let verneed, var entry = fileOffset(ofAddress: verneed) {
            for _ in 0..<min(verneedCount, 64) {
                guard let count = u16(entry + 2), let aux = u32(entry + 8), let next = u32(entry + 12) else { break }
                var a = entry + Int(aux)
                for _ in 0..<min(count, 256) {
                    guard let name = u32(a + 8), let nextAux = u32(a + 12) else { break }
                    if let s = string(name) { result.requiredVersions.append(s) }
                    if nextAux == 0 { break }
                    a += Int(nextAux)
                }
                if next == 0 { break }
                entry += Int(next)
            }
        }
        if let path = (runpath ?? rpath).flatMap(string) {
            result.searchPath = path.split(separator: ":").map(String.init)
        }
        return result
    }
}
