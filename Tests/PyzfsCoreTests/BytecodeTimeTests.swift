import PyzfsCore
import Testing

/// When a source may be served with its pyc's recorded mtime: only across DOS rounding and a
/// whole zone offset, or exactly when the zip time is exact.
@Suite("pyc mtimes explained by DOS times")
struct BytecodeTimeTests {
    @Test("every quarter-hour offset up to 14 h, within 2 s, is explained; nothing else is")
    func sweep() {
        let zip: Int64 = 1_700_000_000
        for quarters in -60...60 {
            for error in -4...4 {
                let difference = Int64(quarters) * 900 + Int64(error)
                let pyc = UInt32(truncatingIfNeeded: zip + difference)
                let want = abs(quarters) <= 56 && abs(error) <= 2
                #expect(BytecodeIndex.explains(pycMtime: pyc, zipTime: zip, exact: false) == want,
                        "difference \(difference) s")
            }
        }
        // Minutes that are no zone's, and days apart (an edited source of the same size).
        for difference: Int64 in [60, 7 * 60 + 30, 3 * 86400 + 7, -86400, 15 * 3600, Int64(Int32.max), Int64(Int32.min)] {
            #expect(!BytecodeIndex.explains(pycMtime: UInt32(truncatingIfNeeded: zip + difference), zipTime: zip, exact: false))
        }
    }

    @Test("an exact zip time (0x5455) explains only itself; times wrap at 2^32 as pycs keep them")
    func exactAndWrapping() {
        let t: Int64 = 5_000_000_000  // past 2^32: the pyc keeps t mod 2^32
        #expect(BytecodeIndex.explains(pycMtime: UInt32(truncatingIfNeeded: t), zipTime: t, exact: true))
        #expect(!BytecodeIndex.explains(pycMtime: UInt32(truncatingIfNeeded: t + 3600), zipTime: t, exact: true))
        #expect(!BytecodeIndex.explains(pycMtime: UInt32(truncatingIfNeeded: t + 1), zipTime: t, exact: true))
        #expect(BytecodeIndex.explains(pycMtime: UInt32(truncatingIfNeeded: t - 19800 + 1), zipTime: t, exact: false))
        #expect(BytecodeIndex.explains(pycMtime: 1, zipTime: Int64(UInt32.max), exact: false))  // 2 s across the wrap
    }
}
