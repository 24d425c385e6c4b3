#if canImport(Glibc)
import Glibc
#endif

/// Converts MS-DOS date/time fields (local time, 2-second steps) to seconds since the epoch in
/// this process's time zone (`TZ`), as CPython's zipfile and libzip read them.
/// Caches one UTC offset per date and hour: calling `mktime` per member is too slow for
/// archives of 100,000 entries.
public struct LocalTimeConverter {
    private var offsets: [UInt32: Int64] = [:]

    public init() { tzset() }

    /// The member's modification time: the 0x5455 UTC field when present, else its DOS fields.
    public mutating func unixTime(of entry: ZipEntry) -> Int64 {
        if let t = entry.extendedMtime { return t }
        return unixTime(dosDate: entry.dosDate, dosTime: entry.dosTime)
    }

    public mutating func unixTime(dosDate: UInt16, dosTime: UInt16) -> Int64 {
        let year = Int64(dosDate >> 9) + 1980
        let month = max(1, min(12, Int64((dosDate >> 5) & 0xF)))
        let day = max(1, Int64(dosDate & 0x1F))
        let hour = min(23, Int64(dosTime >> 11))
        let minute = min(59, Int64((dosTime >> 5) & 0x3F))
        let second = min(59, Int64(dosTime & 0x1F) * 2)
        let asUTC = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
        let key = UInt32(dosDate) << 5 | UInt32(hour)
        if let offset = offsets[key] { return asUTC - offset }
        // The offset in force at the guessed instant; exact except within a DST change's hour.
        var t = time_t(asUTC)
        var tm = Glibc.tm()
        localtime_r(&t, &tm)
        var offset = Int64(tm.tm_gmtoff)
        t = time_t(asUTC - offset)
        localtime_r(&t, &tm)
        offset = Int64(tm.tm_gmtoff)
        offsets[key] = offset
        return asUTC - offset
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
    let y = m <= 2 ? y0 - 1 : y0
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146097 + doe - 719468
}
