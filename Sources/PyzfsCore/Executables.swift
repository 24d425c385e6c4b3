#if canImport(Glibc)
import Glibc
#endif

/// `program` itself if it contains a slash (and exists), else the first executable of that name
/// in the directories of `searchPath` (PATH; `/usr/local/bin:/usr/bin:/bin` when unset), as
/// execvp(3) searches.
public func findExecutable(_ program: String, searchPath: String? = nil) -> String? {
    if program.contains("/") { return access(program, F_OK) == 0 ? program : nil }
    let path = searchPath ?? getenv("PATH").map { string(fromCString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":") where !dir.isEmpty {
        let candidate = "\(dir)/\(program)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// fusermount3, which mounts and unmounts FUSE for users who may not do it themselves.
public enum Fusermount {
    /// Where libfuse looks first: the directory it was built with (Debian's libfuse3 says
    /// /usr/bin/fusermount3).
    public static let builtInPath = "/usr/bin/fusermount3"

    /// The fusermount3 libfuse runs (`exec_fusermount` in its lib/mount.c: the built-in path,
    /// then PATH), so that pyzfs checks for and spawns the same one (NixOS keeps it in
    /// /run/wrappers/bin); nil when there is none.
    public static func path(searchPath: String? = nil) -> String? {
        access(builtInPath, X_OK) == 0 ? builtInPath : findExecutable("fusermount3", searchPath: searchPath)
    }

    /// Detaches the mount on `path` (MNT_DETACH: it goes once nothing uses it): umount2(2) where
    /// this process may, else `fusermount3 -u -z`.
    public static func detach(_ path: String) {
        if umount2(path, Int32(MNT_DETACH)) != 0, let fusermount = Self.path() {
            _ = runProgram([fusermount, "-u", "-z", path])
        }
    }
}
