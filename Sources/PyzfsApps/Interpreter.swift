import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// The interpreter command line of an app.
public struct Interpreter {
    public let path: String
    let leadingArguments: [String]

    /// `--python`, else the archive's #! line (a name found on PATH, or a path).
    /// - Throws: 127 when none is found, 126 when it is not executable.
    public static func resolve(python: String?, opened: OpenedArchive) throws(Failure) -> Interpreter {
        var program: String
        var leading: [String] = []
        if let python {
            program = python
        } else if let words = Zipapp.interpreterLine(of: opened.file, index: opened.index),
                  let parsed = Zipapp.interpreter(fromLine: words) {
            program = parsed.program
            leading = parsed.arguments
        } else {
            program = "python3"
            log.info("\(opened.path) has no #! line; running it with python3")
        }
        guard let path = findExecutable(program) else {
            throw Failure(Exit.notFound, "no interpreter found: \(program) (from \(python == nil ? "the archive's #! line" : "--python")); install it or pass --python PATH")
        }
        guard access(path, X_OK) == 0 else {
            throw Failure(Exit.cannotExecute, "the interpreter \(path) cannot be executed: \(errnoText(errno))")
        }
        return Interpreter(path: path, leadingArguments: leading)
    }
}
