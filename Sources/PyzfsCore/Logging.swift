import Logging
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// Where log lines go; switched once the server leaves the terminal.
public enum LogDestination {
    case standardError
    case syslog
    case file(Int32)
}

/// The process's log sink. A process-wide value because swift-log's bootstrap is process-wide.
public final class LogSink: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    public static let shared = LogSink()
    private let lock = ConditionLock()
    private var destination = LogDestination.standardError
    /// Where warnings and errors also go, as on a terminal (the caller's stderr for a server of
    /// `pyzfs run`: what `docker logs` and journald capture); -1 for nowhere.
    private var warningsAlso: Int32 = -1
    private(set) var level = Logger.Level.info

    public func set(_ d: LogDestination) {
        lock.withLock {
            destination = d
            if case .syslog = d { openlog("pyzfs", LOG_PID, LOG_DAEMON) }
        }
    }

    public func setLevel(_ l: Logger.Level) { lock.withLock { level = l } }

    public func copyWarnings(to fd: Int32) { lock.withLock { warningsAlso = fd } }

    public func write(level: Logger.Level, _ message: String) {
        lock.withLock {
            if warningsAlso >= 0 && level >= .warning {
                writeAll(warningsAlso, "pyzfs: \(level): \(message)\n")
            }
            switch destination {
            case .standardError:
                writeAll(2, "pyzfs: \(level == .info || level == .notice ? "" : "\(level): ")\(message)\n")
            case let .file(fd):
                writeAll(fd, "\(timestamp()) pyzfs[\(getpid())] \(level): \(message)\n")
            case .syslog:
                let priority: Int32
                switch level {
                case .trace, .debug: priority = LOG_DEBUG
                case .info: priority = LOG_INFO
                case .notice: priority = LOG_NOTICE
                case .warning: priority = LOG_WARNING
                case .error: priority = LOG_ERR
                case .critical: priority = LOG_CRIT
                }
                message.withCString { text in withVaList([text]) { vsyslog(priority, "%s", $0) } }
            }
        }
    }

    private func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tm = Glibc.tm()
        localtime_r(&t, &tm)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &tm)
        let millis = String(ts.tv_nsec / 1_000_000)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            + "." + String(repeating: "0", count: 3 - millis.count) + millis
    }
}

/// swift-log handler writing to `LogSink`.
public struct PyzfsLogHandler: LogHandler {
    public init() {}
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level {
        get { LogSink.shared.level }
        set { LogSink.shared.setLevel(newValue) }
    }
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    public func log(event: LogEvent) {
        LogSink.shared.write(level: event.level, event.message.description)
    }
}

public let log: Logger = {
    LoggingSystem.bootstrap { _ in PyzfsLogHandler() }
    return Logger(label: "pyzfs")
}()
