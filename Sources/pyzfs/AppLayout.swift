import PyzfsCore

/// How an app in an archive is started from its mount: plain zipapps run `__main__.py`; shiv and
/// pex archives (whose own start-up code would extract them into ~/.shiv or ~/.cache/pex) are
/// started in place from their metadata.
enum AppLayout {
    /// The command that runs the app mounted on (or extracted to) `root`.
    static func command(for opened: OpenedArchive, interpreter: Interpreter, root: String, arguments: [String]) -> [String] {
        interpreter.command(appDirectory: root, arguments: arguments)
    }
}
