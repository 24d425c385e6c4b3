import Glibc
import PyzfsCore
import Testing

// Serialized: TZ is one variable of the whole process, so zones cannot be tried side by side.
@Suite("DOS times", .serialized)
struct TimeTests {
    @Test("agree with mktime in several zones", arguments: ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
    func agreesWithMktime(zone: String) {
        setenv("TZ", zone, 1)
        defer { unsetenv("TZ"); tzset() }
        var converter = LocalTimeConverter()
        for (y, mo, d, h, mi, s) in [(1980, 1, 1, 0, 0, 0), (2024, 5, 17, 13, 37, 42), (2023, 7, 1, 12, 0, 58),
                                     (2021, 12, 31, 23, 59, 58), (2107, 12, 31, 23, 59, 58), (2024, 3, 31, 12, 0, 0)] {
            let date = UInt16((y - 1980) << 9 | mo << 5 | d)
            let time = UInt16(h << 11 | mi << 5 | s / 2)
            var tm = Glibc.tm()
            tm.tm_year = Int32(y - 1900); tm.tm_mon = Int32(mo - 1); tm.tm_mday = Int32(d)
            tm.tm_hour = Int32(h); tm.tm_min = Int32(mi); tm.tm_sec = Int32(s); tm.tm_isdst = -1
            let expected = Int64(mktime(&tm))
            #expect(converter.unixTime(dosDate: date, dosTime: time) == expected, "\(zone) \(y)-\(mo)-\(d)")
        }
    }
}
