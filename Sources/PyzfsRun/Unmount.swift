import PyzfsApps
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// Unmounts a pyzfs mount; says what happened.
public func unmount(_ path: String, lazy: Bool, quiet: Bool = false) throws(Failure) {
    let absolute = resolveMountPoint(path)
    guard let record = MountTable.mount(at: absolute) else {
        throw Failure(Exit.badMountPoint, "\(absolute) is not a mount point; pyzfs list shows the pyzfs mounts")
    }
    guard record.isPyzfs else {
        throw Failure(Exit.badMountPoint, "\(absolute) is not a pyzfs mount (it is \(record.fsType)); use umount")
    }
    let dead = isDeadMount(absolute)
    if getuid() == 0 {
        if umount2(absolute, lazy || dead ? Int32(MNT_DETACH) : 0) != 0 {
            let e = errno
            if e == EBUSY {
                throw Failure(Exit.busy, "\(absolute) is busy: files on it are open or programs run from it (fuser -vm \(absolute) lists them); retry when they are done, or detach it now: pyzfs unmount -l \(absolute)")
            }
            throw Failure(Exit.failure, "cannot unmount \(absolute): \(errnoText(e)); try a lazy unmount: umount -l \(absolute)")
        }
    } else {
        guard let fusermount = Fusermount.path() else {
            throw Failure(Exit.failure, "cannot unmount \(absolute): a non-root user needs fusermount3, which is neither in /usr/bin nor on PATH; install it (apt-get install fuse3) or unmount as root")
        }
        var args = [fusermount, "-u"]
        if lazy || dead { args.append("-z") }
        args.append(absolute)
        let status = runProgram(args)
        if status != 0 {
            throw Failure(Exit.failure, "cannot unmount \(absolute): fusermount3 exited with status \(status); try: fusermount3 -uz \(absolute)")
        }
    }
    if quiet { return }
    if dead {
        writeAll(2, "pyzfs: cleared the dead mount on \(absolute) (its server had exited: Transport endpoint is not connected)\n")
    }
}

/// `path` absolute with its symbolic links resolved, as the mount table names mount points.
/// realpath fails on a dead mount (ENOTCONN): then the parent is resolved, and a link in the
/// last component followed by hand.
func resolveMountPoint(_ path: String) -> String {
    var current = normalizePath(path.hasPrefix("/") ? path : currentDirectory() + "/" + path)
    for _ in 0..<40 {  // SYMLOOP_MAX
        if let real = realpath(current, nil) {
            defer { free(real) }
            return string(fromCString: real)
        }
        let slash = current.lastIndex(of: "/")!
        let parent = slash == current.startIndex ? "" : absolutePath(String(current[..<slash]))
        let name = parent + "/" + current[current.index(after: slash)...]
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let length = readlink(name, &buffer, buffer.count)
        guard length > 0 else { return normalizePath(name) }
        let target = String(decoding: buffer[..<length], as: UTF8.self)
        current = normalizePath(target.hasPrefix("/") ? target : parent + "/" + target)
    }
    return current
}
